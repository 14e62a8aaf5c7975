//go:build cgo

package pkcs11

import (
	"context"
	"errors"
	"fmt"
	"testing"

	p11 "github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/testsvc"
	"github.com/phicrypt/phicrypt/kms"
)

func newTestKEK(t *testing.T, cfg func(*Config)) (*KEK, *testsvc.SoftHSM) {
	t.Helper()
	h := testsvc.StartSoftHSM(t)
	c := Config{ModulePath: h.ModulePath, TokenLabel: h.TokenLabel, PIN: h.PIN, KeyLabel: "kek"}
	if cfg != nil {
		cfg(&c)
	}
	_, err := GenerateKey(context.Background(), c)
	require.NoError(t, err)
	k, err := New(context.Background(), c)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, k.Close()) })
	return k, h
}

// session runs fn on a session of k's pool.
func session(t *testing.T, k *KEK, fn func(c *p11.Ctx, s p11.SessionHandle)) {
	t.Helper()
	s, err := k.pool.get(context.Background())
	require.NoError(t, err)
	defer k.pool.put(s, false)
	fn(k.mod.ctx, s)
}

func TestKeyIsNotExtractable(t *testing.T) {
	for _, mech := range []Mechanism{MechanismGCM, MechanismKWP} {
		t.Run(mech.String(), func(t *testing.T) {
			k, _ := newTestKEK(t, func(c *Config) { c.Mechanism = mech })
			kv := k.versions[1]
			assert.True(t, kv.sensitive)
			assert.False(t, kv.extractable)
			assert.Equal(t, mech == MechanismGCM, kv.encrypt && kv.decrypt)
			assert.Equal(t, mech == MechanismKWP, kv.wrap && kv.unwrap)
			session(t, k, func(c *p11.Ctx, s p11.SessionHandle) {
				_, err := c.GetAttributeValue(s, kv.handle, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
				assert.ErrorIs(t, err, p11.Error(p11.CKR_ATTRIBUTE_SENSITIVE), "the key's value must not be readable")

				// Nor can it leave wrapped under another key, nor be made
				// extractable again.
				other, err := c.GenerateKey(s, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, aesKeys(
					p11.NewAttribute(p11.CKA_VALUE_LEN, 32), p11.NewAttribute(p11.CKA_TOKEN, false),
					p11.NewAttribute(p11.CKA_WRAP, true), p11.NewAttribute(p11.CKA_EXTRACTABLE, true)))
				require.NoError(t, err)
				_, err = c.WrapKey(s, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_WRAP_PAD, nil)}, other, kv.handle)
				assert.ErrorIs(t, err, p11.Error(p11.CKR_KEY_UNEXTRACTABLE))
				rw, err := c.OpenSession(k.pool.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
				require.NoError(t, err)
				defer c.CloseSession(rw)
				err = c.SetAttributeValue(rw, kv.handle, []*p11.Attribute{p11.NewAttribute(p11.CKA_EXTRACTABLE, true)})
				assert.Error(t, err)
				assert.Contains(t, []error{p11.Error(p11.CKR_ATTRIBUTE_READ_ONLY), p11.Error(p11.CKR_ACTION_PROHIBITED)}, err)
			})
		})
	}
}

func TestExtractableKeyRefused(t *testing.T) {
	ctx := context.Background()
	k, h := newTestKEK(t, nil)
	session(t, k, func(c *p11.Ctx, s p11.SessionHandle) {
		// A token object needs a read-write session.
		rw, err := c.OpenSession(k.pool.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
		require.NoError(t, err)
		defer c.CloseSession(rw)
		_, err = c.GenerateKey(rw, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, aesKeys(
			p11.NewAttribute(p11.CKA_VALUE_LEN, 32), p11.NewAttribute(p11.CKA_TOKEN, true), p11.NewAttribute(p11.CKA_PRIVATE, true),
			p11.NewAttribute(p11.CKA_LABEL, "exportable"), p11.NewAttribute(p11.CKA_EXTRACTABLE, true),
			p11.NewAttribute(p11.CKA_ENCRYPT, true), p11.NewAttribute(p11.CKA_DECRYPT, true)))
		require.NoError(t, err)
		_, err = c.GenerateKey(rw, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, aesKeys(
			p11.NewAttribute(p11.CKA_VALUE_LEN, 16), p11.NewAttribute(p11.CKA_TOKEN, true), p11.NewAttribute(p11.CKA_PRIVATE, true),
			p11.NewAttribute(p11.CKA_LABEL, "aes128"), p11.NewAttribute(p11.CKA_SENSITIVE, true), p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
			p11.NewAttribute(p11.CKA_ENCRYPT, true), p11.NewAttribute(p11.CKA_DECRYPT, true)))
		require.NoError(t, err)
	})
	cfg := Config{ModulePath: h.ModulePath, TokenLabel: h.TokenLabel, PIN: h.PIN, KeyLabel: "exportable"}
	_, err := New(ctx, cfg)
	assert.ErrorIs(t, err, kms.ErrInvalidInput)
	cfg.AllowExtractable = true
	allowed, err := New(ctx, cfg)
	require.NoError(t, err)
	require.NoError(t, allowed.Close())
	cfg.KeyLabel = "aes128"
	_, err = New(ctx, cfg)
	assert.ErrorIs(t, err, kms.ErrInvalidInput, "only AES-256 keys are accepted")
}

func TestBrokenSessionsAreReplaced(t *testing.T) {
	ctx := context.Background()
	k, _ := newTestKEK(t, func(c *Config) { c.MaxSessions = 1 })
	wk, err := k.Wrap(ctx, make([]byte, 32), nil)
	require.NoError(t, err)

	// The pool's only session is closed behind its back.
	s, err := k.pool.get(ctx)
	require.NoError(t, err)
	require.NoError(t, k.mod.ctx.CloseSession(s))
	k.pool.put(s, true)
	_, err = k.Unwrap(ctx, wk, nil)
	assert.NoError(t, err, "a closed session is replaced")

	// The token is logged out behind the pool's back: the next session
	// logs in again.
	s, err = k.pool.get(ctx)
	require.NoError(t, err)
	require.NoError(t, k.mod.ctx.Logout(s))
	k.pool.put(s, true)
	_, err = k.Wrap(ctx, make([]byte, 32), nil)
	assert.NoError(t, err, "a logged-out session is replaced and the token logged in again")
	assert.Equal(t, 1, len(k.pool.slots))

	// A tampered key leaves its session in the pool.
	bad := kms.WrappedKey{KeyID: wk.KeyID, Ciphertext: append([]byte(nil), wk.Ciphertext...)}
	bad.Ciphertext[len(bad.Ciphertext)-1] ^= 1
	s, err = k.pool.get(ctx)
	require.NoError(t, err)
	k.pool.put(s, true)
	_, err = k.Unwrap(ctx, bad, nil)
	require.ErrorIs(t, err, kms.ErrUnwrapFailed)
	s2, err := k.pool.get(ctx)
	require.NoError(t, err)
	assert.Equal(t, s, s2, "an authentication failure does not discard the session")
	k.pool.put(s2, true)
}

func TestHealthProbe(t *testing.T) {
	k, _ := newTestKEK(t, nil)
	kv := k.versions[1]
	session(t, k, func(c *p11.Ctx, s p11.SessionHandle) {
		assert.True(t, k.healthy(s, kv, MechanismGCM))
	})
	// On a dead session the probe fails, so an ambiguous error is
	// reported as an unavailable token, not as a bad wrapped key.
	s, err := k.pool.get(context.Background())
	require.NoError(t, err)
	require.NoError(t, k.mod.ctx.CloseSession(s))
	assert.False(t, k.healthy(s, kv, MechanismGCM))
	_, err = k.unwrap(s, kv, MechanismGCM, header(formatGCM, 1), make([]byte, 60), nil, true)
	assert.ErrorIs(t, kms.NewError(context.Background(), "unwrap", k.id, kindOf(err), err), kms.ErrUnavailable)
	k.pool.put(s, false)
}

func TestKindOf(t *testing.T) {
	for code, kind := range map[uint]error{
		p11.CKR_PIN_INCORRECT:            kms.ErrPermissionDenied,
		p11.CKR_PIN_LOCKED:               kms.ErrPermissionDenied,
		p11.CKR_USER_NOT_LOGGED_IN:       kms.ErrPermissionDenied,
		p11.CKR_ENCRYPTED_DATA_INVALID:   kms.ErrUnwrapFailed,
		p11.CKR_ENCRYPTED_DATA_LEN_RANGE: kms.ErrUnwrapFailed,
		p11.CKR_WRAPPED_KEY_INVALID:      kms.ErrUnwrapFailed,
		0x35:                             kms.ErrUnwrapFailed, // CKR_AEAD_DECRYPT_FAILED
		p11.CKR_KEY_HANDLE_INVALID:       kms.ErrKeyNotFound,
		p11.CKR_DEVICE_ERROR:             kms.ErrUnavailable,
		p11.CKR_DEVICE_REMOVED:           kms.ErrUnavailable,
		p11.CKR_SESSION_CLOSED:           kms.ErrUnavailable,
		p11.CKR_SESSION_HANDLE_INVALID:   kms.ErrUnavailable,
		p11.CKR_TOKEN_NOT_PRESENT:        kms.ErrUnavailable,
		p11.CKR_GENERAL_ERROR:            kms.ErrUnavailable,
		p11.CKR_MECHANISM_INVALID:        kms.ErrInvalidInput,
	} {
		err := fmt.Errorf("call: %w", p11.Error(code))
		assert.ErrorIs(t, kindOf(err), kind, "%v", err)
	}
	assert.ErrorIs(t, kindOf(errAuthFailed), kms.ErrUnwrapFailed)
	assert.ErrorIs(t, kindOf(errClosed), kms.ErrUnavailable)
	assert.ErrorIs(t, kindOf(context.Canceled), context.Canceled)
	assert.ErrorIs(t, kindOf(errors.New("other")), kms.ErrUnavailable)
}

func TestVersionLabels(t *testing.T) {
	for label, want := range map[string]uint32{"kek": 1, "kek.v2": 2, "kek.v10": 10, "kek.v4294967295": 4294967295} {
		v, ok := versionOf(label, "kek")
		assert.True(t, ok, label)
		assert.Equal(t, want, v, label)
		assert.Equal(t, label, labelFor("kek", v))
	}
	for _, label := range []string{"kek.v1", "kek.v0", "kek.v02", "kek.v", "kek.v4294967296", "kek.vx", "kek2", "other", "kek.v2.v3"} {
		_, ok := versionOf(label, "kek")
		assert.False(t, ok, label)
	}
}

func TestKWPFormat(t *testing.T) {
	hdr := header(formatKWP, 7)
	for _, n := range []int{kms.MinDataKeySize, 17, 31, 32, 33, kms.MaxDataKeySize} {
		dek := make([]byte, n)
		for i := range dek {
			dek[i] = byte(i)
		}
		pt := kwpPlaintext(hdr, dek, []byte("aad"))
		assert.Zero(t, len(pt)%8, "no KWP padding is needed")
		got, err := kwpOpen(hdr, pt, []byte("aad"))
		require.NoError(t, err)
		assert.Equal(t, dek, got)
		_, err = kwpOpen(hdr, pt, []byte("aaX"))
		assert.ErrorIs(t, err, errAuthFailed)
		_, err = kwpOpen(header(formatKWP, 8), pt, []byte("aad"))
		assert.ErrorIs(t, err, errAuthFailed, "the version is bound")
		padded := append(append([]byte(nil), pt...), make([]byte, 8)...)
		_, err = kwpOpen(hdr, padded, []byte("aad"))
		assert.ErrorIs(t, err, errAuthFailed)
		if len(pt) > kwpRandomSize+1+n+kwpHashSize {
			pt[len(pt)-1] = 1
			_, err = kwpOpen(hdr, pt, []byte("aad"))
			assert.ErrorIs(t, err, errAuthFailed, "padding must be zero")
		}
	}
}
