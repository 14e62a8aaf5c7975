package awskms_test

import (
	"encoding/json"
	"io"
	"log/slog"

	"github.com/phicrypt/phicrypt/kms/awskms"
)

// logConfig logs c with slog's text and JSON handlers, and as JSON.
func logConfig(w io.Writer, c awskms.Config) {
	slog.New(slog.NewTextHandler(w, nil)).Info("config", "cfg", c)
	slog.New(slog.NewJSONHandler(w, nil)).Info("config", "cfg", c)
	b, _ := json.Marshal(c)
	w.Write(b)
}
