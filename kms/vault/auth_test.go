package vault_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/vault"
)

// appRole enables AppRole at a new mount with a role whose tokens may use
// key, and returns the mount, role id and a secret id.
func (s server) appRole(t testing.TB, key string, role map[string]any) (mount, roleID, secretID string) {
	t.Helper()
	ctx := context.Background()
	mount = uniqueName("approle")
	require.NoError(t, s.admin.Sys().EnableAuthWithOptionsWithContext(ctx, mount, &api.EnableAuthOptions{Type: "approle"}))
	role["token_policies"] = []string{s.putPolicy(t, policyFor(key))}
	_, err := s.admin.Logical().WriteWithContext(ctx, "auth/"+mount+"/role/phi", role)
	require.NoError(t, err)
	sec, err := s.admin.Logical().ReadWithContext(ctx, "auth/"+mount+"/role/phi/role-id")
	require.NoError(t, err)
	roleID = sec.Data["role_id"].(string)
	sec, err = s.admin.Logical().WriteWithContext(ctx, "auth/"+mount+"/role/phi/secret-id", nil)
	require.NoError(t, err)
	return mount, roleID, sec.Data["secret_id"].(string)
}

// useFor wraps and unwraps with k every 100 ms for d, failing the test at
// the first error.
func useFor(t *testing.T, k *vault.KEK, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		dek := newDEK(t)
		wk, err := k.Wrap(ctx, dek, []byte("aad"))
		require.NoError(t, err)
		got, err := k.Unwrap(ctx, wk, []byte("aad"))
		require.NoError(t, err)
		require.Equal(t, dek, got)
	}
}

// AppRole tokens live 2 s at most 5 s: over 8 s of use, the KEK renews
// its token and logs in again before it expires.
func TestAppRoleLoginAndRenewal(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ctx := context.Background()
	key := s.createKey(t, derived)
	mount, roleID, secretID := s.appRole(t, key, map[string]any{"token_ttl": "2s", "token_max_ttl": "5s"})
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	require.NoError(t, os.WriteFile(secretFile, []byte(secretID+"\n"), 0o600))

	cfg := vault.Config{Address: s.Addr, Key: key, AppRole: &vault.AppRole{Mount: mount, RoleID: roleID, SecretIDFile: secretFile}}
	k, err := vault.New(ctx, cfg)
	require.NoError(t, err)
	assert.Equal(t, int64(1), k.Logins())
	first := k.Token()

	useFor(t, k, 8*time.Second)
	assert.GreaterOrEqual(t, k.Renewals(), int64(1), "the token was never renewed")
	assert.GreaterOrEqual(t, k.Logins(), int64(2), "the KEK never logged in again")
	assert.NotEqual(t, first, k.Token())

	// Close revokes the token it logged in for.
	last := k.Token()
	require.NoError(t, k.Close())
	_, err = s.admin.Auth().Token().LookupWithContext(ctx, last)
	assert.Error(t, err, "the KEK's token outlived Close")

	// Wrong or missing credentials are a permission error.
	for name, ar := range map[string]*vault.AppRole{
		"wrong secret id":     {Mount: mount, RoleID: roleID, SecretID: "wrong"},
		"wrong role id":       {Mount: mount, RoleID: "wrong", SecretIDFile: secretFile},
		"missing secret file": {Mount: mount, RoleID: roleID, SecretIDFile: filepath.Join(t.TempDir(), "none")},
		"empty role file":     {Mount: mount, RoleIDFile: emptyFile(t), SecretID: secretID},
	} {
		cfg.AppRole = ar
		_, err := vault.New(ctx, cfg)
		assert.ErrorIs(t, err, kms.ErrPermissionDenied, name)
		assert.NotContains(t, err.Error(), secretID, name)
	}
}

func emptyFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(p, nil, 0o600))
	return p
}

// A renewable token of 2 s, at most 5 s, is renewed while it may be, and
// then expires: calls fail with ErrPermissionDenied.
func TestTokenRenewal(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	key := s.createKey(t, derived)
	policy := s.putPolicy(t, policyFor(key))
	token := s.createToken(t, map[string]any{"policies": []string{policy}, "ttl": "2s", "explicit_max_ttl": "5s", "renewable": true})
	cfg := s.config(key)
	cfg.Token = token
	k := s.openConfig(t, cfg)
	start := time.Now()
	useFor(t, k, 4*time.Second)
	assert.GreaterOrEqual(t, k.Renewals(), int64(1), "the token was never renewed")

	time.Sleep(time.Until(start.Add(6 * time.Second)))
	_, err := k.Wrap(context.Background(), newDEK(t), nil)
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)
}

// appRoleMethod is an api.AuthMethod for AppRole, as
// github.com/hashicorp/vault/api/auth/approle provides one (and
// kubernetes, jwt, aws… theirs): the KEK only sees the interface.
type appRoleMethod struct {
	mount, roleID, secretID string
	logins                  atomic.Int32
}

func (m *appRoleMethod) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	m.logins.Add(1)
	return c.Logical().WriteWithContext(ctx, "auth/"+m.mount+"/login", map[string]any{"role_id": m.roleID, "secret_id": m.secretID})
}

// The application's client and an api.AuthMethod: tokens live 2 s at
// most 5 s, so over 8 s of use the KEK renews its token through the
// lifetime watcher and logs in again with the method before it expires,
// without touching the application's client; Close revokes its token.
func TestAuthMethodWithApplicationClient(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ctx := context.Background()
	key := s.createKey(t, derived)
	mount, roleID, secretID := s.appRole(t, key, map[string]any{"token_ttl": "2s", "token_max_ttl": "5s"})
	appCfg := api.DefaultConfig()
	appCfg.Address = s.Addr
	app, err := api.NewClient(appCfg)
	require.NoError(t, err)
	app.SetToken("")
	method := &appRoleMethod{mount: mount, roleID: roleID, secretID: secretID}
	printed := fmt.Sprintf("%v %+v %#v", vault.Config{Client: app, Key: key, AuthMethod: method}, vault.Config{Client: app, AuthMethod: method}, vault.Config{AuthMethod: method})
	assert.Contains(t, printed, "*vault_test.appRoleMethod", "the method's type is printed")
	assert.NotContains(t, printed, secretID, "an AuthMethod's fields are never printed")

	k, err := vault.New(ctx, vault.Config{Client: app, Key: key, AuthMethod: method})
	require.NoError(t, err)
	assert.Equal(t, int64(1), k.Logins())
	assert.Equal(t, int32(1), method.logins.Load())
	first := k.Token()
	assert.NotEmpty(t, first)

	useFor(t, k, 8*time.Second)
	assert.GreaterOrEqual(t, k.Renewals(), int64(1), "the token was never renewed")
	assert.GreaterOrEqual(t, method.logins.Load(), int32(2), "the KEK never logged in again with the method")
	assert.NotEqual(t, first, k.Token())
	assert.Empty(t, app.Token(), "the application's client keeps its own token")

	last := k.Token()
	require.NoError(t, k.Close())
	_, err = s.admin.Auth().Token().LookupWithContext(ctx, last)
	assert.Error(t, err, "the KEK's token outlived Close")

	// A refused login is a permission error, and names no secret.
	_, err = vault.New(ctx, vault.Config{Client: app, Key: key, AuthMethod: &appRoleMethod{mount: mount, roleID: roleID, secretID: "wrong"}})
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)
	assert.NotContains(t, err.Error(), secretID)
}

// The application's client with its own token, and the checks of Config.
func TestApplicationClient(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ctx := context.Background()
	key := s.createKey(t, derived)
	appCfg := api.DefaultConfig()
	appCfg.Address = s.Addr
	app, err := api.NewClient(appCfg)
	require.NoError(t, err)
	app.SetToken(s.Token)

	k := s.openConfig(t, vault.Config{Client: app, Key: key})
	wk, err := k.Wrap(ctx, newDEK(t), []byte("aad"))
	require.NoError(t, err)
	_, err = k.Unwrap(ctx, wk, []byte("aad"))
	require.NoError(t, err)
	require.NoError(t, k.Close())
	assert.Equal(t, s.Token, app.Token())
	_, err = app.Auth().Token().LookupSelfWithContext(ctx)
	assert.NoError(t, err, "Close leaves a token it did not log in for")

	bare, err := api.NewClient(appCfg)
	require.NoError(t, err)
	bare.SetToken("")
	for name, cfg := range map[string]vault.Config{
		"client and address":   {Client: app, Key: key, Address: s.Addr},
		"client and namespace": {Client: app, Key: key, Namespace: "ns"},
		"client and TLS":       {Client: app, Key: key, TLS: vault.TLSConfig{InsecureSkipVerify: true}},
		"no token":             {Client: bare, Key: key},
		"two auth methods":     {Client: app, Key: key, Token: s.Token, AuthMethod: &appRoleMethod{}},
		"no client, no auth":   {Address: s.Addr, Key: key},
	} {
		_, err := vault.New(ctx, cfg)
		assert.ErrorIs(t, err, kms.ErrInvalidInput, name)
	}
}
