package vault_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/vault"
)

var openers = map[string]kms.Opener{vault.Scheme: vault.Open}

// openURI opens uri and closes the KEK when the test ends.
func openURI(t *testing.T, uri string) (*vault.KEK, error) {
	t.Helper()
	kek, err := kms.Open(context.Background(), uri, openers)
	if err != nil {
		return nil, err
	}
	k := kek.(*vault.KEK)
	t.Cleanup(func() { k.Close() })
	return k, nil
}

func TestOpen(t *testing.T) {
	s := sharedServer(t)
	ctx := context.Background()
	key := s.createKey(t, derived)
	u, err := url.Parse(s.Addr)
	require.NoError(t, err)
	base := "vault://" + u.Host + "/transit/keys/" + key

	t.Setenv(vault.EnvToken, s.Token)
	k, err := openURI(t, base+"?tls=false")
	require.NoError(t, err)
	assert.Equal(t, "vault:transit/"+key, k.KeyID())
	assert.Equal(t, vault.BindContext, k.Binding())
	wk, err := k.Wrap(ctx, newDEK(t), []byte("aad"))
	require.NoError(t, err)

	k, err = openURI(t, base+"?tls=false&key-id=vault:main&timeout=5s")
	require.NoError(t, err)
	assert.Equal(t, "vault:main", k.KeyID())

	// The token from another variable.
	t.Setenv(vault.EnvToken, "")
	t.Setenv("PHI_VAULT_TOKEN", s.Token)
	k, err = openURI(t, base+"?tls=false&token-env=PHI_VAULT_TOKEN")
	require.NoError(t, err)
	_, err = k.Unwrap(ctx, wk, []byte("aad"))
	require.NoError(t, err)

	// AppRole from the environment, the secret id from a file.
	mount, roleID, secretID := s.appRole(t, key, map[string]any{})
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	require.NoError(t, os.WriteFile(secretFile, []byte(secretID), 0o600))
	t.Setenv(vault.EnvRoleID, roleID)
	t.Setenv(vault.EnvSecretIDFile, secretFile)
	k, err = openURI(t, base+"?tls=false&auth=approle&approle-mount="+mount)
	require.NoError(t, err)
	_, err = k.Unwrap(ctx, wk, []byte("aad"))
	require.NoError(t, err)

	// https is the default: a plain HTTP server fails the handshake.
	t.Setenv(vault.EnvToken, s.Token)
	_, err = openURI(t, base)
	assert.ErrorIs(t, err, kms.ErrUnavailable)

	t.Setenv(vault.EnvToken, "")
	_, err = openURI(t, base+"?tls=false")
	assert.ErrorIs(t, err, kms.ErrInvalidInput, "no token")
}

func TestOpenInvalidURIs(t *testing.T) {
	t.Setenv(vault.EnvToken, "hvs.some-token")
	t.Setenv(vault.EnvRoleID, "")
	t.Setenv(vault.EnvRoleIDFile, "")
	for _, uri := range []string{
		"vault:transit/keys/phi",
		"vault:///transit/keys/phi",
		"vault://host:8200",
		"vault://host:8200/transit/phi",
		"vault://host:8200/keys/phi",
		"vault://host:8200/transit/keys/",
		"vault://host:8200/transit/keys/a/b",
		"vault://host:8200/transit/keys/phi?tls=maybe",
		"vault://host:8200/transit/keys/phi?unknown=1",
		"vault://host:8200/transit/keys/phi?namespace=a&namespace=b",
		"vault://host:8200/transit/keys/phi?auth=kerberos",
		"vault://host:8200/transit/keys/phi?auth=approle",
		"vault://host:8200/transit/keys/phi?auth=approle&token-env=X",
		"vault://host:8200/transit/keys/phi?approle-mount=x",
		"vault://host:8200/transit/keys/phi?timeout=soon",
		"vault://host:8200/transit/keys/phi?key-id=bad",
	} {
		_, err := kms.Open(context.Background(), uri, openers)
		assert.ErrorIs(t, err, kms.ErrInvalidInput, uri)
	}

	// Credentials in the URI are refused, and not repeated in the error.
	for _, uri := range []string{"vault://hvs.leaked@host:8200/transit/keys/phi", "vault://user:hvs.leaked@host:8200/transit/keys/phi"} {
		_, err := kms.Open(context.Background(), uri, openers)
		assert.ErrorIs(t, err, kms.ErrInvalidInput)
		assert.False(t, strings.Contains(err.Error(), "hvs.leaked"), err.Error())
	}
}
