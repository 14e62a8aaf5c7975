package vault_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/testsvc"
	"github.com/phicrypt/phicrypt/kms/vault"
)

func TestMain(m *testing.M) {
	// Under GODEBUG=fips140=only, this process stays in FIPS-only mode
	// (the setting is latched at start), but the Vault server, a separate
	// program outside our FIPS boundary, must not inherit it: its barrier
	// uses AES-GCM with nonces of its own, which fips140=only refuses, and
	// it would not start. testsvc passes our environment on, so drop the
	// setting from it.
	if v, ok := os.LookupEnv("GODEBUG"); ok {
		var keep []string
		for _, kv := range strings.Split(v, ",") {
			if !strings.HasPrefix(strings.TrimSpace(kv), "fips140=") {
				keep = append(keep, kv)
			}
		}
		os.Setenv("GODEBUG", strings.Join(keep, ","))
	}
	os.Exit(testsvc.RunMain(m))
}

// server is a Vault for one test and a root client to configure it.
type server struct {
	*testsvc.Vault
	admin *api.Client
}

// sharedServer returns the package's shared Vault dev server.
func sharedServer(t testing.TB) server {
	t.Helper()
	return newServer(t, testsvc.SharedVault(t))
}

// ownServer starts a Vault for this test alone (for tests that seal it).
func ownServer(t testing.TB) server {
	t.Helper()
	return newServer(t, testsvc.StartVault(t))
}

func newServer(t testing.TB, v *testsvc.Vault) server {
	t.Helper()
	cfg := &api.Config{Address: v.Addr}
	admin, err := api.NewClient(cfg)
	require.NoError(t, err)
	admin.SetToken(v.Token)
	return server{Vault: v, admin: admin}
}

// uniqueName returns a name no other test uses on a shared server.
func uniqueName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// createKey creates a transit key with the given options (e.g. "type",
// "derived") and returns its name.
func (s server) createKey(t testing.TB, opts map[string]any) string {
	t.Helper()
	name := uniqueName("phi")
	if opts == nil {
		opts = map[string]any{}
	}
	_, err := s.admin.Logical().WriteWithContext(context.Background(), "transit/keys/"+name, opts)
	require.NoError(t, err)
	return name
}

// derived and plain are the options of the two kinds of keys that a KEK
// accepts.
var (
	derived = map[string]any{"type": "aes256-gcm96", "derived": true}
	plain   = map[string]any{"type": "aes256-gcm96"}
)

// config returns a Config for key with the root token.
func (s server) config(key string) vault.Config {
	return vault.Config{Address: s.Addr, Key: key, Token: s.Token}
}

// open opens a KEK on key with the root token, closed when the test ends.
func (s server) open(t testing.TB, key string) *vault.KEK {
	t.Helper()
	return s.openConfig(t, s.config(key))
}

func (s server) openConfig(t testing.TB, cfg vault.Config) *vault.KEK {
	t.Helper()
	k, err := vault.New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { k.Close() })
	return k
}

// rotate rotates key on the server.
func (s server) rotate(t testing.TB, key string) {
	t.Helper()
	_, err := s.admin.Logical().WriteWithContext(context.Background(), "transit/keys/"+key+"/rotate", nil)
	require.NoError(t, err)
}

// policyFor returns a policy that allows a KEK on key everything it needs.
func policyFor(key string) string {
	return `
path "transit/keys/` + key + `"              { capabilities = ["read"] }
path "transit/encrypt/` + key + `"           { capabilities = ["update"] }
path "transit/decrypt/` + key + `"           { capabilities = ["update"] }
path "transit/rewrap/` + key + `"            { capabilities = ["update"] }
path "transit/datakey/plaintext/` + key + `" { capabilities = ["update"] }
`
}

// putPolicy writes an ACL policy and returns its name.
func (s server) putPolicy(t testing.TB, rules string) string {
	t.Helper()
	name := uniqueName("policy")
	_, err := s.admin.Logical().WriteWithContext(context.Background(), "sys/policies/acl/"+name, map[string]any{"policy": rules})
	require.NoError(t, err)
	return name
}

// createToken creates a token with the given options (policies, ttl, …).
func (s server) createToken(t testing.TB, opts map[string]any) string {
	t.Helper()
	sec, err := s.admin.Logical().WriteWithContext(context.Background(), "auth/token/create", opts)
	require.NoError(t, err)
	require.NotNil(t, sec.Auth)
	return sec.Auth.ClientToken
}
