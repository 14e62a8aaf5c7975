//go:build cgo

package pkcs11

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/phicrypt/phicrypt/kms"
)

var _ kms.Opener = Open

// Open is the kms.Opener of PKCS#11 keys. It accepts RFC 7512 URIs with
// these attributes:
//
//	path:  token=<label> or slot-id=<n>, object=<key label>, type=secret-key
//	query: module-path=<absolute path> (required), pin-source=<source>
//
// pin-source is "file:/path", "file:///path" or "/path" for a PIN file
// (mode 0600 or stricter), or "env:NAME" for an environment variable (an
// extension of RFC 7512); without it the PIN comes from PHICRYPT_PKCS11_PIN.
// pin-value is refused, as is any other attribute (module-name, id,
// serial, …): an attribute this package ignored could select another key
// than the one meant. The KEK's key id is the default one (see [KeyID]).
// The caller closes the KEK when done (it is a *KEK).
func Open(ctx context.Context, u *url.URL) (kms.KEK, error) {
	if err := ctx.Err(); err != nil {
		return nil, kms.NewError(ctx, "open", "", err, nil)
	}
	cfg, err := parseURI(u)
	if err != nil {
		return nil, kms.NewError(ctx, "open", "", kms.ErrInvalidInput, err)
	}
	return New(ctx, cfg)
}

// parseURI turns an RFC 7512 URI into a Config.
func parseURI(u *url.URL) (Config, error) {
	var cfg Config
	// Errors show the path part only, since the query could hold a
	// pin-value, and of the path only the values of the attributes that
	// name the key: a PIN given by mistake in the path is left out too.
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("pkcs11: key URI %s:%s: %s", Scheme, safePath(u.Opaque), fmt.Sprintf(format, args...))
	}
	if !strings.EqualFold(u.Scheme, Scheme) || u.Opaque == "" || u.Host != "" || u.Path != "" || u.Fragment != "" {
		return bad("want pkcs11:token=…;object=…?module-path=…")
	}
	seen := map[string]bool{}
	for _, attr := range strings.Split(u.Opaque, ";") {
		name, raw, ok := strings.Cut(attr, "=")
		if !ok || name == "" {
			return bad("malformed path attribute")
		}
		value, err := url.PathUnescape(raw)
		if err != nil {
			return bad("attribute %s is not percent-encoded correctly", name)
		}
		if seen[name] {
			return bad("attribute %s appears twice", name)
		}
		seen[name] = true
		switch name {
		case "token":
			cfg.TokenLabel = value
		case "object":
			cfg.KeyLabel = value
		case "slot-id":
			n, err := strconv.ParseUint(value, 10, 0)
			if err != nil {
				return bad("slot-id is not a number")
			}
			slot := uint(n)
			cfg.Slot = &slot
		case "type":
			if value != "secret-key" {
				return bad("type must be secret-key")
			}
		default:
			return bad("unsupported attribute %s", name)
		}
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("query does not parse")
	}
	for name, values := range q {
		if len(values) != 1 {
			return bad("attribute %s appears twice", name)
		}
		switch name {
		case "module-path":
			cfg.ModulePath = values[0]
		case "pin-source":
			src := values[0]
			switch {
			case strings.HasPrefix(src, "env:"):
				cfg.PINEnv = strings.TrimPrefix(src, "env:")
			case strings.HasPrefix(src, "file:"):
				f, err := url.Parse(src)
				if err != nil || f.Host != "" || (f.Path == "" && f.Opaque == "") {
					return bad("pin-source file URI is malformed")
				}
				cfg.PINFile = f.Path
				if cfg.PINFile == "" {
					cfg.PINFile = f.Opaque
				}
			case strings.HasPrefix(src, "/"):
				cfg.PINFile = src
			default:
				return bad("pin-source must be file:/path, /path or env:NAME")
			}
			if cfg.PINEnv == "" && cfg.PINFile == "" {
				return bad("pin-source is empty")
			}
		case "pin-value":
			return bad("pin-value is refused: give the PIN through pin-source")
		default:
			return bad("unsupported query attribute %s", name)
		}
	}
	if cfg.ModulePath == "" || cfg.KeyLabel == "" || (cfg.TokenLabel == "") == (cfg.Slot == nil) {
		return bad("needs module-path, object, and token or slot-id")
	}
	if cfg.PINEnv == "" && cfg.PINFile == "" {
		cfg.PINEnv = DefaultPINEnv
	}
	return cfg, nil
}

// safePath returns the path part of a key URI with the value of each
// attribute other than token, object, slot-id and type replaced by "…",
// and an attribute without a name and value by "…".
func safePath(opaque string) string {
	attrs := strings.Split(opaque, ";")
	for i, attr := range attrs {
		name, _, ok := strings.Cut(attr, "=")
		switch {
		case !ok:
			attrs[i] = "…"
		case name == "token" || name == "object" || name == "slot-id" || name == "type":
		default:
			attrs[i] = name + "=…"
		}
	}
	return strings.Join(attrs, ";")
}
