package gcpkms

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/phicrypt/phicrypt/kms"
)

// Scheme is the URI scheme of Cloud KMS keys.
const Scheme = "gcp-kms"

var _ kms.Opener = Open

// Open is the kms.Opener of Cloud KMS keys. The URI is the scheme and the
// CryptoKey's resource name:
//
//	gcp-kms://projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k
//	gcp-kms:projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k?endpoint=europe-west1-cloudkms.googleapis.com:443
//
// Query parameters, all optional: endpoint ("host:port", Config.Endpoint),
// timeout (a duration such as "10s", Config.Timeout) and key-id
// (Config.KeyID). Unknown parameters are refused. Credentials never come
// from the URI: Application Default Credentials
// (GOOGLE_APPLICATION_CREDENTIALS, gcloud's credentials, the metadata
// server) authenticate the client. Open returns a *KEK; close it when
// done.
func Open(ctx context.Context, u *url.URL) (kms.KEK, error) {
	cfg, err := configFromURI(u)
	if err != nil {
		return nil, kms.NewError(ctx, "open", "", kms.ErrInvalidInput, err)
	}
	return New(ctx, cfg)
}

func configFromURI(u *url.URL) (Config, error) {
	var cfg Config
	q, err := kms.URIQuery(u, "endpoint", "timeout", "key-id")
	if err != nil {
		return cfg, fmt.Errorf("gcpkms: %w", err)
	}
	if !strings.EqualFold(u.Scheme, Scheme) {
		return cfg, fmt.Errorf("gcpkms: scheme must be %s", Scheme)
	}
	switch {
	case u.Opaque != "":
		cfg.Key = u.Opaque
	default:
		cfg.Key = strings.TrimPrefix(u.Host+u.Path, "/")
	}
	if !keyNameRE.MatchString(cfg.Key) {
		return cfg, fmt.Errorf("gcpkms: want gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K, got %s", u.Redacted())
	}
	cfg.Endpoint, cfg.KeyID = q.Get("endpoint"), q.Get("key-id")
	if t := q.Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("gcpkms: timeout %q is not a positive duration", t)
		}
		cfg.Timeout = d
	}
	return cfg, nil
}
