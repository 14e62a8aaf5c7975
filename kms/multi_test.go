package kms_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
	"github.com/phicrypt/phicrypt/kms/local"
)

func TestMultiConformance(t *testing.T) {
	newSH := shapes(t, "local:new")["both"]
	m, err := kms.NewMulti(newSH.kek, newLocal(t, "local:old"))
	require.NoError(t, err)
	kmstest.Run(t, kmstest.Config{KEK: m, Other: newLocal(t, "local:unrelated")})

	// Without a Rewrapper on the primary, Rewrap unwraps and wraps.
	m, err = kms.NewMulti(newLocal(t, "local:new2"), newLocal(t, "local:old2"))
	require.NoError(t, err)
	kmstest.Run(t, kmstest.Config{KEK: m, Other: newLocal(t, "local:unrelated")})
}

func TestMultiRoutes(t *testing.T) {
	ctx := context.Background()
	oldKEK, newKEK := newLocal(t, "local:old"), newLocal(t, "local:new")
	dek := bytes.Repeat([]byte{7}, 32)
	old, err := oldKEK.Wrap(ctx, dek, []byte("aad"))
	require.NoError(t, err)

	m, err := kms.NewMulti(newKEK, oldKEK)
	require.NoError(t, err)
	assert.Equal(t, "local:new", m.KeyID())
	wk, err := m.Wrap(ctx, dek, []byte("aad"))
	require.NoError(t, err)
	assert.Equal(t, "local:new", wk.KeyID, "Multi wraps with the primary")
	got, err := newKEK.Unwrap(ctx, wk, []byte("aad"))
	require.NoError(t, err)
	assert.Equal(t, dek, got)

	got, err = m.Unwrap(ctx, old, []byte("aad"))
	require.NoError(t, err, "Multi unwraps with the member the key names")
	assert.Equal(t, dek, got)
	_, err = m.Unwrap(ctx, old, []byte("other"))
	assert.ErrorIs(t, err, kms.ErrUnwrapFailed)

	_, err = m.Unwrap(ctx, kms.WrappedKey{KeyID: "local:gone", Ciphertext: old.Ciphertext}, []byte("aad"))
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = m.Unwrap(cctx, kms.WrappedKey{KeyID: "local:gone", Ciphertext: old.Ciphertext}, nil)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestMultiNeedsDistinctIdentifiers(t *testing.T) {
	a := newLocal(t, "local:a")
	for name, members := range map[string][]kms.KEK{
		"nil primary":       {nil},
		"nil member":        {a, nil},
		"typed nil member":  {a, (*local.KEK)(nil)},
		"typed nil primary": {(*local.KEK)(nil), a},
		"typed nil wrapper": {a, (*kmstest.Instrumented)(nil)},
		"no identifier":     {a, struct{ kms.KEK }{newLocal(t, "local:b")}},
		"same key id":       {a, newLocal(t, "local:a")},
		"same KEK twice":    {a, a},
		"invalid id":        {a, kmstest.Instrument(struct{ kms.KEK }{newLocal(t, "local:c")})}, // KeyID() is ""
	} {
		var err error
		require.NotPanics(t, func() { _, err = kms.NewMulti(members[0], members[1:]...) }, name)
		assert.ErrorIs(t, err, kms.ErrInvalidInput, name)
	}
}

func TestMultiRewrapMovesKeysToPrimary(t *testing.T) {
	ctx := context.Background()
	primary := shapes(t, "local:primary")["both"]
	oldKEK := kmstest.Instrument(newLocal(t, "local:old"))
	m, err := kms.NewMulti(primary.kek, oldKEK)
	require.NoError(t, err)

	var wks []kms.WrappedKey
	var aads, deks [][]byte
	add := func(k kms.KEK) {
		dek := bytes.Repeat([]byte{byte(len(wks))}, 32)
		aad := fmt.Appendf(nil, "row %d", len(wks))
		wk, err := k.Wrap(ctx, dek, aad)
		require.NoError(t, err)
		wks, aads, deks = append(wks, wk), append(aads, aad), append(deks, dek)
	}
	add(oldKEK)      // 0: moves from the old KMS
	add(primary.kek) // 1: rewrapped on the primary
	add(oldKEK)      // 2: moves
	add(primary.kek) // 3: rewrapped on the primary
	add(oldKEK)      // 4: tampered
	wks[4].Ciphertext = bytes.Clone(wks[4].Ciphertext)
	wks[4].Ciphertext[10] ^= 1
	wks = append(wks, kms.WrappedKey{KeyID: "local:gone", Ciphertext: []byte{1, 2, 3}}) // 5: no member
	aads, deks = append(aads, nil), append(deks, nil)

	batches := len(primary.rw.Batches())
	res, err := m.Rewrap(ctx, wks, aads)
	require.NoError(t, err)
	require.Len(t, res, len(wks))
	for _, i := range []int{0, 1, 2, 3} {
		require.NoError(t, res[i].Err, "item %d", i)
		assert.Equal(t, "local:primary-both", res[i].Key.KeyID, "item %d is on the primary", i)
		got, err := primary.kek.Unwrap(ctx, res[i].Key, aads[i])
		require.NoError(t, err, "item %d", i)
		assert.Equal(t, deks[i], got, "item %d", i)
	}
	assert.ErrorIs(t, res[4].Err, kms.ErrUnwrapFailed)
	assert.ErrorIs(t, res[5].Err, kms.ErrKeyNotFound)
	require.Len(t, primary.rw.Batches(), batches+1, "the primary's keys go in one batch")
	assert.Equal(t, []kms.WrappedKey{wks[1], wks[3]}, primary.rw.Batches()[batches])
	assert.Equal(t, int64(3), oldKEK.Unwraps())

	_, err = m.Rewrap(ctx, wks, aads[:1])
	assert.ErrorIs(t, err, kms.ErrInvalidInput)

	// A failed batch fails the whole call.
	failing, err := kms.NewMulti(struct {
		kms.KEK
		kms.Identifier
		kms.Rewrapper
	}{primary.kek, primary.kek.(kms.Identifier), &flakyRewrapper{KEK: primary.kek, fails: 1}}, oldKEK)
	require.NoError(t, err)
	_, err = failing.Rewrap(ctx, wks[:2], aads[:2])
	assert.ErrorIs(t, err, kms.ErrUnavailable)
}

func TestMultiString(t *testing.T) {
	m, err := kms.NewMulti(newLocal(t, "local:a"), newLocal(t, "local:b"))
	require.NoError(t, err)
	assert.Equal(t, `kms.Multi{Primary: "local:a", Members: 2}`, m.String())
}
