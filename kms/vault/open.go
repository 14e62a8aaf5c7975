package vault

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/phicrypt/phicrypt/kms"
)

// Scheme is the URI scheme of Vault transit keys.
const Scheme = "vault"

// Environment variables that Open reads credentials from.
const (
	// EnvToken holds a Vault token (auth=token, the default), unless the
	// URI's token-env names another variable.
	EnvToken = "VAULT_TOKEN"
	// EnvRoleID and EnvRoleIDFile hold an AppRole role id, or the path of a
	// file holding it (auth=approle).
	EnvRoleID     = "VAULT_ROLE_ID"
	EnvRoleIDFile = "VAULT_ROLE_ID_FILE"
	// EnvSecretID and EnvSecretIDFile hold an AppRole secret id, or the
	// path of a file holding it, read again at every login.
	EnvSecretID     = "VAULT_SECRET_ID"
	EnvSecretIDFile = "VAULT_SECRET_ID_FILE"
)

var _ kms.Opener = Open

// Open is the kms.Opener of Vault transit keys. The URI names the server,
// the mount and the key:
//
//	vault://vault.example.org:8200/transit/keys/phi
//	vault://vault.example.org:8200/secret/transit/keys/phi?namespace=hospital&auth=approle
//	vault://127.0.0.1:8200/transit/keys/phi?tls=false
//
// The path is the mount (which may have several segments), "/keys/" and
// the key name. Query parameters, all optional:
//
//   - tls=false: plain HTTP (only for a Vault on the same host);
//     https by default.
//   - ca-cert, client-cert, client-key: PEM files (TLSConfig);
//     server-name: the name to verify the certificate against.
//   - namespace: the Vault Enterprise namespace.
//   - key-id: overrides the key id (Config.KeyID).
//   - timeout: a per-request timeout such as "10s" (Config.Timeout).
//   - auth=token (default) or auth=approle; token-env: the variable holding
//     the token, EnvToken by default; approle-mount: the AppRole mount.
//
// Credentials never come from the URI (a URI with a user or password is
// refused): a token from EnvToken (or token-env), or AppRole credentials
// from EnvRoleID or EnvRoleIDFile and EnvSecretID or EnvSecretIDFile.
// Unknown query parameters are refused, so that a misspelt one is not
// ignored. Open returns a *KEK; close it when done.
func Open(ctx context.Context, u *url.URL) (kms.KEK, error) {
	cfg, err := configFromURI(u)
	if err != nil {
		return nil, kms.NewError(ctx, "open", "", kms.ErrInvalidInput, err)
	}
	return New(ctx, cfg)
}

// configFromURI builds a Config from a vault:// URI and the environment.
func configFromURI(u *url.URL) (Config, error) {
	var cfg Config
	q, err := kms.URIQuery(u, "tls", "ca-cert", "client-cert", "client-key", "server-name",
		"namespace", "key-id", "timeout", "auth", "token-env", "approle-mount")
	if err != nil {
		return cfg, fmt.Errorf("vault: %w", err)
	}
	if !strings.EqualFold(u.Scheme, Scheme) || u.Opaque != "" || u.Host == "" {
		return cfg, fmt.Errorf("vault: want vault://host:port/<mount>/keys/<key>, got %s", u.Redacted())
	}
	i := strings.LastIndex(u.Path, "/keys/")
	if i <= 0 || strings.Contains(u.Path[i+len("/keys/"):], "/") {
		return cfg, fmt.Errorf("vault: key URI path must be /<mount>/keys/<key>, got %q", u.Path)
	}
	cfg.Mount, cfg.Key = strings.Trim(u.Path[:i], "/"), u.Path[i+len("/keys/"):]

	scheme := "https"
	switch q.Get("tls") {
	case "", "true":
	case "false":
		scheme = "http"
	default:
		return cfg, fmt.Errorf("vault: tls must be true or false")
	}
	cfg.Address = scheme + "://" + u.Host
	cfg.TLS = TLSConfig{CACert: q.Get("ca-cert"), ClientCert: q.Get("client-cert"), ClientKey: q.Get("client-key"), ServerName: q.Get("server-name")}
	cfg.Namespace = q.Get("namespace")
	cfg.KeyID = q.Get("key-id")
	if t := q.Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("vault: timeout %q is not a positive duration", t)
		}
		cfg.Timeout = d
	}
	switch q.Get("auth") {
	case "", "token":
		env := q.Get("token-env")
		if env == "" {
			env = EnvToken
		}
		if cfg.Token = os.Getenv(env); cfg.Token == "" {
			return cfg, fmt.Errorf("vault: environment variable %s holds no token", env)
		}
	case "approle":
		ar := &AppRole{Mount: q.Get("approle-mount"), RoleID: os.Getenv(EnvRoleID), RoleIDFile: os.Getenv(EnvRoleIDFile),
			SecretID: os.Getenv(EnvSecretID), SecretIDFile: os.Getenv(EnvSecretIDFile)}
		if (ar.RoleID == "") == (ar.RoleIDFile == "") {
			return cfg, fmt.Errorf("vault: set exactly one of %s and %s", EnvRoleID, EnvRoleIDFile)
		}
		if ar.SecretID != "" && ar.SecretIDFile != "" {
			return cfg, fmt.Errorf("vault: set at most one of %s and %s", EnvSecretID, EnvSecretIDFile)
		}
		cfg.AppRole = ar
	default:
		return cfg, fmt.Errorf("vault: auth must be token or approle")
	}
	if q.Has("token-env") && cfg.AppRole != nil {
		return cfg, fmt.Errorf("vault: token-env is for auth=token")
	}
	if q.Has("approle-mount") && cfg.AppRole == nil {
		return cfg, fmt.Errorf("vault: approle-mount is for auth=approle")
	}
	return cfg, nil
}
