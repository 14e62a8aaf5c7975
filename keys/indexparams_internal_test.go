package keys

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/kdf"
	"github.com/phicrypt/phicrypt/kms/local"
)

// TestIndexKeyParamsBinding: a blind index key version written by an
// earlier release (Suite 0) keeps computing as it did, HMAC-SHA-256 under
// HKDF(raw, "phicrypt/v1/blind-index-key") whatever the index's parameters,
// so the values it stored still match; a version created now
// (IndexParamsBound) computes each index definition under its own key,
// HKDF-Expand(K, "phicrypt/v1/blind-index-params/" || params).
func TestIndexKeyParamsBinding(t *testing.T) {
	ctx := context.Background()
	data, err := local.Generate(local.Options{KeyID: "local:params"})
	require.NoError(t, err)
	kek, err := local.New(local.Config{Data: data})
	require.NoError(t, err)
	store := NewMemoryStore()
	id, err := IndexKeyID("tenant:a", "patients", "ssn_index")
	require.NoError(t, err)

	// Version 1, as an earlier release stored it: Suite 0.
	raw := bytes.Repeat([]byte{7}, 32)
	wk, err := kek.Wrap(ctx, raw, wrapAAD(id, 1, 0))
	require.NoError(t, err)
	now := time.Now()
	_, err = store.Update(ctx, id, func(ks *KeySet) error {
		ks.Versions = append(ks.Versions, Record{Version: 1, State: Active, Wrapped: wk, Created: now, Changed: now, WrappedAt: now})
		return nil
	})
	require.NoError(t, err)
	kr, err := New(Config{KEK: kek, Store: store})
	require.NoError(t, err)
	_, err = kr.SealMetadata(ctx)
	require.NoError(t, err)

	v1, err := kr.IndexKey(ctx, "tenant:a", "patients", "ssn_index")
	require.NoError(t, err)
	require.Equal(t, uint32(1), v1.Version())
	assert.False(t, v1.BindsParams())
	assert.Same(t, v1, v1.For("bits=16;normalize=digits"), "a legacy version ignores the parameters")
	legacyKey, err := kdf.Key(raw, kdf.LabelBlindIndex, 32)
	require.NoError(t, err)
	msg := []byte("\x00\x00\x00\x09999123456")
	m := hmac.New(sha256.New, legacyKey)
	m.Write(msg)
	assert.Equal(t, m.Sum(nil), v1.For("bits=16;normalize=digits").Sum(nil, msg), "the values stored under version 1 still match")

	// Version 2, created by this release, binds the parameters.
	v, err := kr.Rotate(ctx, id)
	require.NoError(t, err)
	require.Equal(t, uint32(2), v)
	ks, err := store.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, IndexParamsBound, ks.Version(2).Suite)
	v2, err := kr.IndexKey(ctx, "tenant:a", "patients", "ssn_index")
	require.NoError(t, err)
	require.Equal(t, uint32(2), v2.Version())
	assert.True(t, v2.BindsParams())
	a, b := v2.For("bits=16;normalize=digits"), v2.For("bits=16;normalize=trim+digits")
	assert.NotEqual(t, a.Sum(nil, msg), b.Sum(nil, msg), "two chains, two keys")
	assert.NotEqual(t, a.Sum(nil, msg), v2.For("bits=24;normalize=digits").Sum(nil, msg), "two lengths, two keys")
	assert.Equal(t, uint32(2), a.Version())
	assert.Same(t, a, v2.For("bits=16;normalize=digits"), "cached")
	assert.Zero(t, testing.AllocsPerRun(100, func() { v2.For("bits=16;normalize=digits") }))
	// The derivation is HKDF-Expand's first block under the version's key.
	sub := v2.Sum(nil, append([]byte(kdf.LabelBlindIndexParams+"bits=16;normalize=digits"), 1))
	m = hmac.New(sha256.New, sub)
	m.Write(msg)
	assert.Equal(t, m.Sum(nil), a.Sum(nil, msg))
	// A search tries both versions: each computes its own way.
	terms, err := kr.IndexKeys(ctx, "tenant:a", "patients", "ssn_index")
	require.NoError(t, err)
	require.Len(t, terms, 2)
	assert.True(t, terms[0].BindsParams())
	assert.False(t, terms[1].BindsParams())
	// More definitions than the cache holds still derive, uncached.
	for i := range maxBoundKeys + 2 {
		k := v2.For(string(rune('a' + i)))
		assert.Equal(t, k.Sum(nil, msg), v2.For(string(rune('a'+i))).Sum(nil, msg))
	}
}
