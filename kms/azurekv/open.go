package azurekv

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/phicrypt/phicrypt/kms"
)

// Opener returns the kms.Opener of Azure Key Vault keys, which
// authenticates with cred; opts, which may be nil, are the SDK client's
// options. The URI is the key's address in its vault:
//
//	azure-kv://phi-vault.vault.azure.net/keys/kek
//	azure-kv://phi-hsm.managedhsm.azure.net/keys/kek?alg=A256KW
//	azure-kv://phi-vault.vault.azure.net/keys/kek?version=0123456789abcdef0123456789abcdef
//
// Query parameters, all optional: version (Config.Version), alg
// ("RSA-OAEP-256" or "A256KW", Config.Algorithm) and key-id
// (Config.KeyID). Unknown parameters are refused. Credentials never come
// from the URI.
//
// The kms/kmsopen package cannot import this module (it is a module of its
// own, which imports the core that kmsopen is in), and a URI cannot carry
// a credential, so an application adds the opener to kmsopen's itself:
//
//	openers := kmsopen.Openers()
//	openers[azurekv.Scheme] = azurekv.Opener(cred, nil)
//	kek, err := kms.Open(ctx, "azure-kv://phi-vault.vault.azure.net/keys/kek", openers)
//	// then, as kmsopen.Open does:
//	kek = kms.Resilient(kek, kms.ResilientConfig{})
func Opener(cred azcore.TokenCredential, opts *azkeys.ClientOptions) kms.Opener {
	return func(ctx context.Context, u *url.URL) (kms.KEK, error) {
		cfg, err := configFromURI(u)
		if err != nil {
			return nil, kms.NewError(ctx, "open", "", kms.ErrInvalidInput, err)
		}
		cfg.Credential, cfg.ClientOptions = cred, opts
		return New(ctx, cfg)
	}
}

func configFromURI(u *url.URL) (Config, error) {
	var cfg Config
	q, err := kms.URIQuery(u, "version", "alg", "key-id")
	if err != nil {
		return cfg, fmt.Errorf("azurekv: %w", err)
	}
	if !strings.EqualFold(u.Scheme, Scheme) {
		return cfg, fmt.Errorf("azurekv: scheme must be %s", Scheme)
	}
	name, ok := strings.CutPrefix(u.Path, "/keys/")
	if u.Opaque != "" || u.Host == "" || !ok || !validName(name) {
		return cfg, fmt.Errorf("azurekv: want azure-kv://VAULT.vault.azure.net/keys/NAME, got %s", u.Redacted())
	}
	cfg.VaultURL, cfg.Key = "https://"+u.Host, name
	cfg.Version, cfg.KeyID = q.Get("version"), q.Get("key-id")
	switch alg := azkeys.EncryptionAlgorithm(q.Get("alg")); alg {
	case "", RSAOAEP256, A256KW:
		cfg.Algorithm = alg
	default:
		return cfg, fmt.Errorf("azurekv: alg must be %s or %s", RSAOAEP256, A256KW)
	}
	return cfg, nil
}
