package local

import (
	"context"
	"fmt"
	"net/url"
	"os"

	"github.com/phicrypt/phicrypt/kms"
)

// Scheme is the URI scheme of local key files.
const Scheme = "local"

// DefaultPassphraseEnv is the environment variable Open reads a passphrase
// from unless the URI names another.
const DefaultPassphraseEnv = "PHICRYPT_KEK_PASSPHRASE"

var _ kms.Opener = Open

// Open is the kms.Opener of local key files:
//
//	local:///etc/phicrypt/kek.json      a key file (permissions checked)
//	local:?env=PHICRYPT_KEK             a key file in an environment variable
//
// A sealed file's passphrase comes from the environment variable named by
// the passphrase-env query parameter, PHICRYPT_KEK_PASSPHRASE by default.
func Open(ctx context.Context, u *url.URL) (kms.KEK, error) {
	if err := ctx.Err(); err != nil {
		return nil, kms.NewError(ctx, "open", "", err, nil)
	}
	q, err := kms.URIQuery(u, "env", "passphrase-env")
	if err != nil {
		return nil, kms.NewError(ctx, "open", "", kms.ErrInvalidInput, fmt.Errorf("local: %w", err))
	}
	cfg := Config{Path: u.Path, Env: q.Get("env")}
	if u.Opaque != "" || u.Host != "" || (cfg.Path == "") == (cfg.Env == "") {
		return nil, kms.NewError(ctx, "open", "", kms.ErrInvalidInput,
			fmt.Errorf("want local:///path/to/kek.json or local:?env=NAME, got %s", u.Redacted()))
	}
	passEnv := q.Get("passphrase-env")
	if passEnv == "" {
		passEnv = DefaultPassphraseEnv
	}
	if p := os.Getenv(passEnv); p != "" {
		cfg.Passphrase = []byte(p)
	}
	return New(cfg)
}
