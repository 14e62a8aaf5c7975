package azurekv_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/azurekv"
	"github.com/phicrypt/phicrypt/kms/kmstest"
)

const (
	vaultURL = "https://phi-vault.vault.azure.net"
	hsmURL   = "https://phi-hsm.managedhsm.azure.net"
)

func newDEK(t testing.TB) []byte {
	t.Helper()
	dek := make([]byte, 32)
	_, err := rand.Read(dek)
	require.NoError(t, err)
	return dek
}

func open(t *testing.T, f *fakeVault, cfg azurekv.Config) *azurekv.KEK {
	t.Helper()
	if cfg.VaultURL == "" {
		cfg.VaultURL = vaultURL
	}
	if cfg.Credential == nil {
		cfg.Credential = fakeCred{token: fakeToken}
	}
	cfg.ClientOptions = f.options()
	k, err := azurekv.New(context.Background(), cfg)
	require.NoError(t, err)
	return k
}

func TestConformance(t *testing.T) {
	f := startVault(t)
	f.createKey(t, "kek-a", azkeys.KeyTypeRSA)
	f.createKey(t, "kek-b", azkeys.KeyTypeRSAHSM)
	a := open(t, f, azurekv.Config{Key: "kek-a"})
	b := open(t, f, azurekv.Config{Key: "kek-b"})
	assert.Equal(t, azurekv.RSAOAEP256, a.Algorithm(), "chosen from the key's type")
	assert.Equal(t, "azure-kv:phi-vault.vault.azure.net/keys/kek-a", a.KeyID())
	kmstest.Run(t, kmstest.Config{KEK: a, Other: b, Concurrency: 8})
}

// A Managed HSM's AES key wraps with A256KW.
func TestConformanceManagedHSM(t *testing.T) {
	f := startVault(t)
	f.createKey(t, "kek-a", azkeys.KeyTypeOctHSM)
	f.createKey(t, "kek-b", azkeys.KeyTypeOctHSM)
	a := open(t, f, azurekv.Config{VaultURL: hsmURL, Key: "kek-a"})
	b := open(t, f, azurekv.Config{VaultURL: hsmURL, Key: "kek-b"})
	assert.Equal(t, azurekv.A256KW, a.Algorithm())
	kmstest.Run(t, kmstest.Config{KEK: a, Other: b, Concurrency: 8})
}

// The AAD is bound inside what the service wraps: the service never sees
// it, and a key unwrapped with another AAD fails here even though the
// service unwrapped it.
func TestAADBinding(t *testing.T) {
	ctx := context.Background()
	f := startVault(t)
	f.createKey(t, "kek", azkeys.KeyTypeRSA)
	k := open(t, f, azurekv.Config{Key: "kek"})
	aad := []byte("tenant=st-mary;patient=42")
	dek := newDEK(t)
	wk, err := k.Wrap(ctx, dek, aad)
	require.NoError(t, err)
	f.mu.Lock()
	sent := f.lastValue
	f.mu.Unlock()
	assert.False(t, bytes.Contains(sent, aad), "the AAD is not sent")
	assert.True(t, bytes.Contains(sent, dek), "the service wraps the data key")
	assert.Zero(t, len(sent)%8)

	before := f.count("POST unwrapkey")
	_, err = k.Unwrap(ctx, wk, []byte("tenant=st-mary;patient=43"))
	require.ErrorIs(t, err, kms.ErrUnwrapFailed)
	assert.Equal(t, before+1, f.count("POST unwrapkey"), "the service unwrapped; the binding failed here")
	got, err := k.Unwrap(ctx, wk, aad)
	require.NoError(t, err)
	assert.Equal(t, dek, got)

	// A wrapped key whose header names another algorithm or a malformed
	// version never reaches the service.
	before = f.count("POST unwrapkey")
	for _, mutate := range []func(b []byte){
		func(b []byte) { b[0] = 2 },
		func(b []byte) { b[1] = 2 },
		func(b []byte) { b[3] = '/' },
		func(b []byte) { b[2] = 200 },
	} {
		bad := bytes.Clone(wk.Ciphertext)
		mutate(bad)
		_, err := k.Unwrap(ctx, kms.WrappedKey{KeyID: wk.KeyID, Ciphertext: bad}, aad)
		assert.ErrorIs(t, err, kms.ErrUnwrapFailed)
	}
	assert.Equal(t, before, f.count("POST unwrapkey"))
}

// Wrap uses the current version and records it; older versions still
// unwrap; a pinned version wraps with it; a disabled version is refused.
func TestKeyVersions(t *testing.T) {
	ctx := context.Background()
	f := startVault(t)
	v1 := f.createKey(t, "kek", azkeys.KeyTypeRSA)
	k := open(t, f, azurekv.Config{Key: "kek"})
	dek := newDEK(t)
	wk1, err := k.Wrap(ctx, dek, nil)
	require.NoError(t, err)
	assert.Equal(t, v1, versionOf(wk1))

	v2 := f.createKey(t, "kek", azkeys.KeyTypeRSA) // rotated in Key Vault
	wk2, err := k.Wrap(ctx, dek, nil)
	require.NoError(t, err)
	assert.Equal(t, v2, versionOf(wk2), "the next Wrap uses the new version")
	for _, wk := range []kms.WrappedKey{wk1, wk2} {
		got, err := k.Unwrap(ctx, wk, nil)
		require.NoError(t, err)
		assert.Equal(t, dek, got)
	}

	pinned := open(t, f, azurekv.Config{Key: "kek", Version: v1, Algorithm: azurekv.RSAOAEP256})
	wk, err := pinned.Wrap(ctx, dek, nil)
	require.NoError(t, err)
	assert.Equal(t, v1, versionOf(wk))

	// A version swapped in the header fails: the other version's RSA key
	// cannot decrypt it.
	swapped := bytes.Replace(bytes.Clone(wk1.Ciphertext), []byte(v1), []byte(v2), 1)
	_, err = k.Unwrap(ctx, kms.WrappedKey{KeyID: wk1.KeyID, Ciphertext: swapped}, nil)
	assert.ErrorIs(t, err, kms.ErrUnwrapFailed)

	f.disable("kek", v1)
	_, err = k.Unwrap(ctx, wk1, nil)
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)
}

func versionOf(wk kms.WrappedKey) string {
	n := int(wk.Ciphertext[2])
	return string(wk.Ciphertext[3 : 3+n])
}

// Errors are classified by HTTP status, with the status and code as the
// cause, and the SDK makes one attempt: retries are kms.Resilient's.
func TestErrors(t *testing.T) {
	ctx := context.Background()
	f := startVault(t)
	f.createKey(t, "kek", azkeys.KeyTypeRSA)
	k := open(t, f, azurekv.Config{Key: "kek"})
	wk, err := k.Wrap(ctx, newDEK(t), nil)
	require.NoError(t, err)

	for _, tc := range []struct {
		fault fault
		kind  error
	}{
		{fault{429, "Throttled"}, kms.ErrThrottled},
		{fault{503, "ServiceUnavailable"}, kms.ErrUnavailable},
		{fault{500, "InternalServerError"}, kms.ErrUnavailable},
		{fault{403, "Forbidden"}, kms.ErrPermissionDenied},
		{fault{401, "Unauthorized"}, kms.ErrPermissionDenied},
		{fault{404, "KeyNotFound"}, kms.ErrKeyNotFound},
	} {
		t.Run(fmt.Sprint(tc.fault.status), func(t *testing.T) {
			for _, op := range []string{"wrap", "unwrap"} {
				before := f.count("POST " + op + "key")
				f.failNext(tc.fault)
				if tc.kind == kms.ErrKeyNotFound && op == "unwrap" {
					f.failNext(tc.fault) // the key itself is missing too
				}
				if op == "wrap" {
					_, err = k.Wrap(ctx, newDEK(t), nil)
				} else {
					_, err = k.Unwrap(ctx, wk, nil)
				}
				require.ErrorIs(t, err, tc.kind, op)
				assert.Equal(t, kms.KindOf(tc.kind), kms.KindOf(err))
				assert.Equal(t, errors.Is(tc.kind, kms.ErrUnavailable), kms.IsTransient(err), "transient: %v", err)
				var re *azurekv.ResponseError
				require.ErrorAs(t, err, &re)
				assert.Equal(t, tc.fault.status, re.StatusCode)
				assert.Equal(t, tc.fault.code, re.ErrorCode)
				var ke *kms.Error
				require.ErrorAs(t, err, &ke)
				assert.Equal(t, op, ke.Op)
				assert.Equal(t, before+1, f.count("POST "+op+"key"), "one attempt, no SDK retry")
			}
		})
	}

	// A version that the key never had: the wrapped key is bad, not the
	// key.
	f.failNext(fault{404, "KeyNotFound"})
	gets := f.count("GET get")
	_, err = k.Unwrap(ctx, wk, nil)
	assert.ErrorIs(t, err, kms.ErrUnwrapFailed)
	assert.NotErrorIs(t, err, kms.ErrKeyNotFound)
	assert.Equal(t, gets+1, f.count("GET get"), "the key was looked up")

	// A 400 is a failed unwrap on unwrap, invalid input on wrap.
	f.failNext(fault{400, "BadParameter"}, fault{400, "BadParameter"})
	_, err = k.Unwrap(ctx, wk, nil)
	assert.ErrorIs(t, err, kms.ErrUnwrapFailed)
	_, err = k.Wrap(ctx, newDEK(t), nil)
	assert.ErrorIs(t, err, kms.ErrInvalidInput)

	// A key that does not exist, at New and at each call.
	_, err = azurekv.New(ctx, azurekv.Config{VaultURL: vaultURL, Key: "missing", Credential: fakeCred{token: fakeToken}, ClientOptions: f.options()})
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)
	missing := open(t, f, azurekv.Config{Key: "missing", Algorithm: azurekv.RSAOAEP256})
	_, err = missing.Wrap(ctx, newDEK(t), nil)
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)

	// Credentials the vault refuses, or that cannot get a token.
	badToken := open(t, f, azurekv.Config{Key: "kek", Algorithm: azurekv.RSAOAEP256, Credential: fakeCred{token: "stolen"}})
	_, err = badToken.Wrap(ctx, newDEK(t), nil)
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)
	noToken := open(t, f, azurekv.Config{Key: "kek", Algorithm: azurekv.RSAOAEP256, Credential: fakeCred{err: nonRetriable{errors.New("no managed identity")}}})
	_, err = noToken.Wrap(ctx, newDEK(t), nil)
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)

	// A cancelled context is reported as such.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = k.Wrap(cctx, newDEK(t), nil)
	assert.ErrorIs(t, err, context.Canceled)
}

// nonRetriable is an error that azcore does not retry, as azidentity's
// credential-unavailable errors are.
type nonRetriable struct{ error }

func (nonRetriable) NonRetriable() {}

// Behind kms.Resilient, a burst of throttling is ridden out.
func TestResilientThrottling(t *testing.T) {
	ctx := context.Background()
	f := startVault(t)
	f.createKey(t, "kek", azkeys.KeyTypeRSA)
	k := kms.Resilient(open(t, f, azurekv.Config{Key: "kek"}), kms.ResilientConfig{
		Retry: kms.RetryConfig{Jitter: func(time.Duration) time.Duration { return 0 }},
	})
	f.failNext(fault{429, "Throttled"}, fault{429, "Throttled"}, fault{429, "Throttled"})
	dek := newDEK(t)
	wk, err := k.Wrap(ctx, dek, []byte("a"))
	require.NoError(t, err)
	got, err := k.Unwrap(ctx, wk, []byte("a"))
	require.NoError(t, err)
	assert.Equal(t, dek, got)
	assert.Equal(t, 4, f.count("POST wrapkey"))
}

func TestNewRefuses(t *testing.T) {
	ctx := context.Background()
	f := startVault(t)
	f.createKey(t, "ec", azkeys.KeyTypeEC)
	cred := fakeCred{token: fakeToken}
	for name, cfg := range map[string]azurekv.Config{
		"http":          {VaultURL: "http://phi-vault.vault.azure.net", Key: "kek", Credential: cred},
		"path":          {VaultURL: vaultURL + "/keys", Key: "kek", Credential: cred},
		"no key":        {VaultURL: vaultURL, Credential: cred},
		"bad key name":  {VaultURL: vaultURL, Key: "a/b", Credential: cred},
		"bad version":   {VaultURL: vaultURL, Key: "kek", Version: "../x", Credential: cred},
		"no credential": {VaultURL: vaultURL, Key: "kek"},
		"bad algorithm": {VaultURL: vaultURL, Key: "kek", Algorithm: azkeys.EncryptionAlgorithmRSA15, Credential: cred},
		"EC key":        {VaultURL: vaultURL, Key: "ec", Credential: cred},
		"bad key id":    {VaultURL: vaultURL, Key: "kek", KeyID: "no scheme", Credential: cred},
	} {
		cfg.ClientOptions = f.options()
		_, err := azurekv.New(ctx, cfg)
		assert.ErrorIs(t, err, kms.ErrInvalidInput, name)
	}
}

func TestOpener(t *testing.T) {
	ctx := context.Background()
	f := startVault(t)
	v1 := f.createKey(t, "kek", azkeys.KeyTypeRSA)
	f.createKey(t, "kek", azkeys.KeyTypeRSA)
	f.createKey(t, "aes", azkeys.KeyTypeOctHSM)
	openers := map[string]kms.Opener{azurekv.Scheme: azurekv.Opener(fakeCred{token: fakeToken}, f.options())}

	kek, err := kms.Open(ctx, "azure-kv://phi-vault.vault.azure.net/keys/kek", openers)
	require.NoError(t, err)
	assert.Equal(t, "azure-kv:phi-vault.vault.azure.net/keys/kek", kek.(kms.Identifier).KeyID())
	pinned, err := kms.Open(ctx, "azure-kv://phi-vault.vault.azure.net/keys/kek?version="+v1+"&key-id=azure-kv:main", openers)
	require.NoError(t, err)
	assert.Equal(t, "azure-kv:main", pinned.(kms.Identifier).KeyID())
	wk, err := pinned.Wrap(ctx, newDEK(t), nil)
	require.NoError(t, err)
	assert.Equal(t, v1, versionOf(wk))
	hsm, err := kms.Open(ctx, "azure-kv://phi-hsm.managedhsm.azure.net/keys/aes?alg=A256KW", openers)
	require.NoError(t, err)
	assert.Equal(t, azurekv.A256KW, hsm.(*azurekv.KEK).Algorithm())

	for _, uri := range []string{
		"azure-kv://phi-vault.vault.azure.net/kek",
		"azure-kv://phi-vault.vault.azure.net/keys/",
		"azure-kv://phi-vault.vault.azure.net/keys/a/b",
		"azure-kv:phi-vault.vault.azure.net/keys/kek",
		"azure-kv://user:secret@phi-vault.vault.azure.net/keys/kek",
		"azure-kv://phi-vault.vault.azure.net/keys/kek?colour=blue",
		"azure-kv://phi-vault.vault.azure.net/keys/kek?alg=RSA1_5",
		"azure-kv:///keys/kek",
	} {
		_, err := kms.Open(ctx, uri, openers)
		require.ErrorIs(t, err, kms.ErrInvalidInput, uri)
		assert.NotContains(t, err.Error(), "secret", uri)
	}
}

func TestConfigHidesCredentials(t *testing.T) {
	// A credential that holds its token in a field (a static token for a
	// workload, as fakeCred does) must not be printed, logged or marshalled
	// with the configuration, alone or inside a container.
	const token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.SECRET-ACCESS-TOKEN"
	cfg := azurekv.Config{VaultURL: vaultURL, Key: "kek", Credential: fakeCred{token: token}}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("open", "cfg", cfg, "cfgs", []azurekv.Config{cfg})
	outs := []string{logs.String()}
	for _, v := range []any{cfg, &cfg, []azurekv.Config{cfg}, map[string]azurekv.Config{"a": cfg}, struct{ C azurekv.Config }{cfg}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
		j, err := json.Marshal(v)
		require.NoError(t, err)
		outs = append(outs, string(j))
	}
	for _, out := range outs {
		require.NotContains(t, out, "SECRET-ACCESS-TOKEN")
		require.NotContains(t, out, fmt.Sprintf("%x", token)[:40])
	}
	assert.Contains(t, fmt.Sprint(cfg), "phi-vault.vault.azure.net")
	assert.Contains(t, fmt.Sprint(cfg), "azurekv_test.fakeCred", "the credential is shown by its type")
}
