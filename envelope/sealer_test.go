package envelope_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
)

// batchKeyring is a testKeyring that also hands out keys for n values,
// counting the values it was asked for.
type batchKeyring struct {
	*testKeyring
	values int
}

func (k *batchKeyring) EncryptionKeys(ctx context.Context, scope string, n int) (*envelope.DEK, error) {
	k.values += n
	return k.EncryptionKey(ctx, scope)
}

// TestSealer: a Sealer over a BatchKeyring looks its scope's key up once
// for n values; values of another scope or beyond n, and every value over
// a plain Keyring, look their key up as AppendEncrypt does. Every
// ciphertext decrypts with Compact.Decrypt.
func TestSealer(t *testing.T) {
	ctx := context.Background()
	kr := &batchKeyring{testKeyring: newTestKeyring("sealer", envelope.AES256GCM)}
	c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr})
	require.NoError(t, err)
	other := patientBinding
	other.Scope = "tenant:other"

	s, err := c.Sealer(ctx, patientBinding.Scope, 3)
	require.NoError(t, err)
	assert.Equal(t, 3, kr.values)
	assert.Equal(t, int64(1), kr.lookups.Load())
	var cts [][]byte
	for range 3 {
		ct, err := s.Encrypt(ctx, field64, patientBinding)
		require.NoError(t, err)
		cts = append(cts, ct)
	}
	assert.Equal(t, int64(1), kr.lookups.Load(), "three values, one lookup")
	ct, err := s.Encrypt(ctx, field64, patientBinding)
	require.NoError(t, err)
	cts = append(cts, ct)
	assert.Equal(t, int64(2), kr.lookups.Load(), "a fourth value looks its key up")
	otherCT, err := s.Encrypt(ctx, field64, other)
	require.NoError(t, err)
	assert.Equal(t, int64(3), kr.lookups.Load(), "another scope looks its key up")
	for _, ct := range cts {
		pt, err := c.Decrypt(ctx, ct, patientBinding)
		require.NoError(t, err)
		assert.Equal(t, field64, pt)
	}
	pt, err := c.Decrypt(ctx, otherCT, other)
	require.NoError(t, err)
	assert.Equal(t, field64, pt)
	_, err = c.Decrypt(ctx, otherCT, patientBinding)
	assert.ErrorIs(t, err, envelope.ErrDecrypt)

	// The Sealer checks what AppendEncrypt checks.
	s, err = c.Sealer(ctx, patientBinding.Scope, 2)
	require.NoError(t, err)
	bad := patientBinding
	bad.Extra = []envelope.Attr{{Key: "", Value: "x"}}
	_, err = s.Encrypt(ctx, field64, bad)
	assert.ErrorIs(t, err, envelope.ErrInvalidBinding)
	_, err = c.Sealer(ctx, "", 2)
	assert.ErrorIs(t, err, envelope.ErrInvalidBinding)

	// Over a plain Keyring every value looks its key up.
	plain := newTestKeyring("sealer", envelope.AES256GCM)
	pc, err := envelope.NewCompact(envelope.CompactConfig{Keyring: plain})
	require.NoError(t, err)
	ps, err := pc.Sealer(ctx, patientBinding.Scope, 3)
	require.NoError(t, err)
	for range 3 {
		_, err := ps.Encrypt(ctx, field64, patientBinding)
		require.NoError(t, err)
	}
	assert.Equal(t, int64(3), plain.lookups.Load())
}

// auditingKeyring is a testKeyring that says it audits every use.
type auditingKeyring struct{ *testKeyring }

func (auditingKeyring) AuditsUses() bool { return true }

// TestOpener: an Opener asks the keyring once per key version of its
// scope; another version, another scope, or a keyring that audits every
// use, make it ask again, as AppendDecrypt would. Failures are
// AppendDecrypt's.
func TestOpener(t *testing.T) {
	ctx := context.Background()
	kr := newTestKeyring("opener", envelope.AES256GCM)
	c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr})
	require.NoError(t, err)
	v1, err := c.Encrypt(ctx, field64, patientBinding)
	require.NoError(t, err)
	kr.active = 2
	v2, err := c.Encrypt(ctx, field64, patientBinding)
	require.NoError(t, err)
	other := patientBinding
	other.Scope = "tenant:other"
	o3, err := c.Encrypt(ctx, field64, other)
	require.NoError(t, err)

	o := c.Opener(patientBinding.Scope)
	before := kr.lookups.Load()
	for _, ct := range [][]byte{v1, v1, v1} {
		pt, err := o.AppendDecrypt(ctx, nil, ct, patientBinding)
		require.NoError(t, err)
		assert.Equal(t, field64, pt)
	}
	assert.Equal(t, before+1, kr.lookups.Load(), "one lookup for three values of one version")
	_, err = o.AppendDecrypt(ctx, nil, v2, patientBinding)
	require.NoError(t, err)
	assert.Equal(t, before+2, kr.lookups.Load(), "another version is looked up")
	pt, err := o.AppendDecrypt(ctx, nil, o3, other)
	require.NoError(t, err)
	assert.Equal(t, field64, pt)
	assert.Equal(t, before+3, kr.lookups.Load(), "another scope is looked up")
	_, err = o.AppendDecrypt(ctx, nil, v2, other)
	assert.ErrorIs(t, err, envelope.ErrDecrypt, "the binding still counts")
	_, err = o.AppendDecrypt(ctx, nil, o3, patientBinding)
	assert.ErrorIs(t, err, envelope.ErrDecrypt, "a cached key opens nothing of another scope")

	ac, err := envelope.NewCompact(envelope.CompactConfig{Keyring: auditingKeyring{kr}})
	require.NoError(t, err)
	ao := ac.Opener(patientBinding.Scope)
	before = kr.lookups.Load()
	for range 3 {
		_, err := ao.AppendDecrypt(ctx, nil, v1, patientBinding)
		require.NoError(t, err)
	}
	assert.Equal(t, before+3, kr.lookups.Load(), "a keyring that audits uses is asked for every value")
}
