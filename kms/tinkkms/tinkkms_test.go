package tinkkms_test

import (
	"context"
	"crypto/fips140"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/testing/fakekms"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
	"github.com/phicrypt/phicrypt/kms/tinkkms"
)

// skipIfFIPSOnly skips tests of Tink's own AES-GCM, which generates its
// nonces itself and so is refused by Go's FIPS 140-3 only mode.
func skipIfFIPSOnly(t *testing.T) {
	t.Helper()
	if fips140.Enforced() {
		t.Skip("GODEBUG=fips140=only: Tink's keyset AES-GCM (caller-generated nonces through crypto/cipher.NewGCM) is not an approved use; a third-party limitation, not this adapter's")
	}
}

func keysetAEAD(t *testing.T) tink.AEAD {
	t.Helper()
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	require.NoError(t, err)
	a, err := aead.New(h)
	require.NoError(t, err)
	return a
}

func fakeKeyURI(t *testing.T) string {
	t.Helper()
	uri, err := fakekms.NewKeyURI()
	require.NoError(t, err)
	return uri
}

func TestConformanceKeysetAEAD(t *testing.T) {
	skipIfFIPSOnly(t)
	a, err := tinkkms.New(keysetAEAD(t), "tink:keyset-a")
	require.NoError(t, err)
	b, err := tinkkms.New(keysetAEAD(t), "tink:keyset-b")
	require.NoError(t, err)
	kmstest.Run(t, kmstest.Config{KEK: a, Other: b})
}

func TestConformanceFakeKMSClient(t *testing.T) {
	skipIfFIPSOnly(t)
	client, err := fakekms.NewClient("fake-kms://")
	require.NoError(t, err)
	a, err := tinkkms.FromClient(client, fakeKeyURI(t))
	require.NoError(t, err)
	b, err := tinkkms.FromClient(client, fakeKeyURI(t))
	require.NoError(t, err)
	assert.NotEqual(t, a.KeyID(), b.KeyID())
	kmstest.Run(t, kmstest.Config{KEK: a, Other: b})
}

func TestConformanceAEADWithContext(t *testing.T) {
	skipIfFIPSOnly(t)
	newKEK := func() *tinkkms.KEK {
		uri := fakeKeyURI(t)
		a, err := fakekms.NewAEADWithContext(uri)
		require.NoError(t, err)
		id, err := tinkkms.KeyID(uri)
		require.NoError(t, err)
		k, err := tinkkms.NewWithContext(a, id)
		require.NoError(t, err)
		return k
	}
	kmstest.Run(t, kmstest.Config{KEK: newKEK(), Other: newKEK()})
}

func TestKeyID(t *testing.T) {
	for uri, want := range map[string]string{
		"gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k":       "tink:gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k",
		"aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab": "tink:aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab",
		"hcvault://vault.example.org/transit/keys/phi":                   "tink:hcvault://vault.example.org/transit/keys/phi",
	} {
		got, err := tinkkms.KeyID(uri)
		require.NoError(t, err, uri)
		assert.Equal(t, want, got)
		assert.NoError(t, kms.ValidateKeyID(got))
	}

	// Tink's fake KMS URIs hold their key, which must not reach the key id.
	uri := fakeKeyURI(t)
	id, err := tinkkms.KeyID(uri)
	require.NoError(t, err)
	assert.Regexp(t, `^tink:fake-kms:[0-9a-f]{32}$`, id)
	assert.NotContains(t, id, strings.TrimPrefix(uri, "fake-kms://")[:16])
	again, err := tinkkms.KeyID(uri)
	require.NoError(t, err)
	assert.Equal(t, id, again, "the key id is stable")

	for _, bad := range []string{"", "no-scheme", "hcvault://user:secret@vault/transit/keys/k", "gcp-kms://projects/a b", "gcp-kms://" + strings.Repeat("x", kms.MaxKeyIDSize)} {
		got, err := tinkkms.KeyID(bad)
		assert.Error(t, err, bad)
		assert.Empty(t, got)
		if err != nil {
			assert.NotContains(t, err.Error(), "secret")
		}
	}
}

func TestConstructorsRefuseBadInput(t *testing.T) {
	_, err := tinkkms.New(nil, "tink:x")
	assert.ErrorIs(t, err, kms.ErrInvalidInput)
	_, err = tinkkms.New(&scriptedAEAD{}, "no scheme")
	assert.ErrorIs(t, err, kms.ErrInvalidInput)
	_, err = tinkkms.NewWithContext(nil, "tink:x")
	assert.ErrorIs(t, err, kms.ErrInvalidInput)
	_, err = tinkkms.FromClient(nil, "fake-kms://x")
	assert.ErrorIs(t, err, kms.ErrInvalidInput)

	client, err := fakekms.NewClient("fake-kms://")
	require.NoError(t, err)
	_, err = tinkkms.FromClient(client, "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k")
	assert.ErrorIs(t, err, kms.ErrInvalidInput, "a URI the client does not support")
	_, err = tinkkms.FromClient(client, "fake-kms://bm90IGEga2V5c2V0LXNlY3JldA")
	assert.ErrorIs(t, err, kms.ErrInvalidInput, "a URI the client cannot use")
	assert.NotContains(t, err.Error(), "bm90IGEga2V5c2V0LXNlY3JldA", "errors must not quote a URI that may hold a key")
}

// scriptedAEAD returns its errors, or a fixed ciphertext and plaintext,
// and can run a function during each call.
type scriptedAEAD struct {
	encErr, decErr error
	during         func()
}

func (s *scriptedAEAD) Encrypt(pt, ad []byte) ([]byte, error) {
	if s.during != nil {
		s.during()
	}
	if s.encErr != nil {
		return nil, s.encErr
	}
	return append([]byte("ct:"), pt...), nil
}

func (s *scriptedAEAD) Decrypt(ct, ad []byte) ([]byte, error) {
	if s.during != nil {
		s.during()
	}
	if s.decErr != nil {
		return nil, s.decErr
	}
	return append([]byte(nil), ct[3:]...), nil
}

func TestErrorMapping(t *testing.T) {
	ctx := context.Background()
	netErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	for name, c := range map[string]struct {
		aead           *scriptedAEAD
		wrapKind       error
		unwrapKind     error
		unwrapCauseNet bool
	}{
		"tink failure": {&scriptedAEAD{encErr: errors.New("tink: boom"), decErr: errors.New("aead: decryption failed")}, kms.ErrUnavailable, kms.ErrUnwrapFailed, false},
		"network":      {&scriptedAEAD{encErr: netErr, decErr: netErr}, kms.ErrUnavailable, kms.ErrUnavailable, true},
		"deadline":     {&scriptedAEAD{encErr: context.DeadlineExceeded, decErr: fmt.Errorf("rpc: %w", context.DeadlineExceeded)}, context.DeadlineExceeded, context.DeadlineExceeded, false},
	} {
		t.Run(name, func(t *testing.T) {
			k, err := tinkkms.New(c.aead, "tink:scripted")
			require.NoError(t, err)
			_, err = k.Wrap(ctx, make([]byte, 32), nil)
			assert.ErrorIs(t, err, c.wrapKind)
			var kerr *kms.Error
			assert.ErrorAs(t, err, &kerr)
			_, err = k.Unwrap(ctx, kms.WrappedKey{KeyID: "tink:scripted", Ciphertext: []byte("ct:0123456789abcdef")}, nil)
			assert.ErrorIs(t, err, c.unwrapKind)
			if c.unwrapCauseNet {
				var ne net.Error
				assert.ErrorAs(t, err, &ne, "network errors stay inspectable")
				assert.True(t, kms.IsTransient(err))
			}
		})
	}
}

// TestUnwrapChecksTheDataKeySize: a ciphertext that decrypts to
// something no Wrap wraps (shorter than MinDataKeySize, longer than
// MaxDataKeySize) is refused, as every other backend refuses it.
func TestUnwrapChecksTheDataKeySize(t *testing.T) {
	ctx := context.Background()
	k, err := tinkkms.New(&scriptedAEAD{}, "tink:scripted")
	require.NoError(t, err)
	for _, n := range []int{1, kms.MinDataKeySize - 1, kms.MaxDataKeySize + 1} {
		wk := kms.WrappedKey{KeyID: "tink:scripted", Ciphertext: append([]byte("ct:"), make([]byte, n)...)}
		dek, err := k.Unwrap(ctx, wk, nil)
		assert.ErrorIs(t, err, kms.ErrUnwrapFailed, "%d bytes", n)
		assert.Nil(t, dek)
	}
	dek, err := k.Unwrap(ctx, kms.WrappedKey{KeyID: "tink:scripted", Ciphertext: append([]byte("ct:"), make([]byte, 32)...)}, nil)
	require.NoError(t, err)
	assert.Len(t, dek, 32)
}

func TestContextCheckedAfterCall(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &scriptedAEAD{}
	k, err := tinkkms.New(a, "tink:scripted")
	require.NoError(t, err)
	wk, err := k.Wrap(ctx, make([]byte, 32), nil)
	require.NoError(t, err)

	// The call cannot be interrupted; the context ends during it.
	a.during = cancel
	got, err := k.Unwrap(ctx, wk, nil)
	assert.Nil(t, got)
	assert.ErrorIs(t, err, context.Canceled)
	_, err = k.Wrap(ctx, make([]byte, 32), nil)
	assert.ErrorIs(t, err, context.Canceled)
}

// ctxAEAD records the contexts it is called with.
type ctxAEAD struct {
	scriptedAEAD
	seen []context.Context
}

func (c *ctxAEAD) EncryptWithContext(ctx context.Context, pt, ad []byte) ([]byte, error) {
	c.seen = append(c.seen, ctx)
	return c.Encrypt(pt, ad)
}

func (c *ctxAEAD) DecryptWithContext(ctx context.Context, ct, ad []byte) ([]byte, error) {
	c.seen = append(c.seen, ctx)
	return c.Decrypt(ct, ad)
}

func TestAEADWithContextReceivesContext(t *testing.T) {
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "request-42")
	a := &ctxAEAD{}
	k, err := tinkkms.New(a, "tink:ctx")
	require.NoError(t, err)
	wk, err := k.Wrap(ctx, make([]byte, 32), nil)
	require.NoError(t, err)
	_, err = k.Unwrap(ctx, wk, nil)
	require.NoError(t, err)
	require.Len(t, a.seen, 2, "an AEAD with contexts is called through them")
	for _, c := range a.seen {
		assert.Equal(t, "request-42", c.Value(key{}))
	}
}

func TestNoSecretsInOutput(t *testing.T) {
	skipIfFIPSOnly(t) // Tink's fake KMS makes a keyset AEAD
	uri := fakeKeyURI(t)
	client, err := fakekms.NewClient("fake-kms://")
	require.NoError(t, err)
	k, err := tinkkms.FromClient(client, uri)
	require.NoError(t, err)
	js, err := k.MarshalJSON()
	require.NoError(t, err)
	secret := strings.TrimPrefix(uri, "fake-kms://")[:20]
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k), string(js), k.KeyID()} {
		assert.NotContains(t, s, secret)
	}
}
