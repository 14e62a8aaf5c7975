package vault_test

import (
	"encoding/json"
	"io"
	"log/slog"

	"github.com/phicrypt/phicrypt/kms/vault"
)

// logSecrets logs c with slog's text and JSON handlers, and as JSON.
func logSecrets(w io.Writer, c vault.Config) {
	slog.New(slog.NewTextHandler(w, nil)).Info("config", "cfg", c, "approle", c.AppRole)
	slog.New(slog.NewJSONHandler(w, nil)).Info("config", "cfg", c, "approle", c.AppRole)
	b, _ := json.Marshal(c)
	w.Write(b)
}
