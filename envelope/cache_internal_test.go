package envelope

import (
	"bytes"
	"context"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/bubble"
	"github.com/phicrypt/phicrypt/internal/format"
	"github.com/phicrypt/phicrypt/internal/keycache"
	"github.com/phicrypt/phicrypt/kms/kmstest"
	"github.com/phicrypt/phicrypt/kms/local"
)

func newCacheTestKEK(t *testing.T) *kmstest.Instrumented {
	t.Helper()
	data, err := local.Generate(local.Options{KeyID: "local:cache"})
	require.NoError(t, err)
	kek, err := local.New(local.Config{Data: data})
	require.NoError(t, err)
	return kmstest.Instrument(kek)
}

func isZero(b []byte) bool { return len(b) > 0 && bytes.Count(b, []byte{0}) == len(b) }

// rawBytes returns the array behind a cached key's bytes, which eviction
// must zero.
func rawBytes(t *testing.T, r *rawKey) []byte {
	t.Helper()
	r.mu.RLock()
	defer r.mu.RUnlock()
	require.NotNil(t, r.b)
	require.False(t, isZero(r.b))
	return r.b
}

// cachedOpening returns the unwrapped data key that s caches for ct's
// header and scope.
func cachedOpening(t *testing.T, s *SelfContained, ct []byte, scope string) (*openingKey, bool) {
	t.Helper()
	h, err := format.Parse(ct)
	require.NoError(t, err)
	return s.opening.Lookup(string(appendOpeningCacheKey(nil, &h, scope)))
}

// TestEvictedDataKeysAreZeroed checks that the data key bytes that the
// SelfContained caches keep are zeroed when their entry is evicted for
// room, expires, or is dropped for its message budget.
func TestEvictedDataKeysAreZeroed(t *testing.T) {
	ctx := context.Background()
	a, b := Binding{Scope: "tenant:a"}, Binding{Scope: "tenant:b"}

	t.Run("opening, evicted when full", func(t *testing.T) {
		s, err := NewSelfContained(SelfContainedConfig{KEK: newCacheTestKEK(t), CacheMaxEntries: 1})
		require.NoError(t, err)
		ctA, err := s.Encrypt(ctx, []byte("a"), a)
		require.NoError(t, err)
		ctB, err := s.Encrypt(ctx, []byte("b"), b)
		require.NoError(t, err)
		_, err = s.Decrypt(ctx, ctA, a)
		require.NoError(t, err)
		k, ok := cachedOpening(t, s, ctA, a.Scope)
		require.True(t, ok)
		raw := rawBytes(t, k.dek)
		_, err = s.Decrypt(ctx, ctB, b) // evicts a's key
		require.NoError(t, err)
		assert.True(t, isZero(raw), "evicted key zeroed")
		// The evicted key's value still decrypts (unwrapped again).
		got, err := s.Decrypt(ctx, ctA, a)
		require.NoError(t, err)
		assert.Equal(t, "a", string(got))
	})

	t.Run("opening, expired", func(t *testing.T) {
		s, err := NewSelfContained(SelfContainedConfig{KEK: newCacheTestKEK(t), CacheMaxAge: 20 * time.Millisecond})
		require.NoError(t, err)
		ct, err := s.Encrypt(ctx, []byte("a"), a)
		require.NoError(t, err)
		_, err = s.Decrypt(ctx, ct, a)
		require.NoError(t, err)
		k, ok := cachedOpening(t, s, ct, a.Scope)
		require.True(t, ok)
		raw := rawBytes(t, k.dek)
		assert.Eventually(t, func() bool {
			k.dek.mu.RLock()
			defer k.dek.mu.RUnlock()
			return isZero(raw)
		}, 5*time.Second, 5*time.Millisecond, "expired key zeroed")
	})

	t.Run("sealing, message budget and eviction", func(t *testing.T) {
		s, err := NewSelfContained(SelfContainedConfig{KEK: newCacheTestKEK(t), DataKeyMaxMessages: 1, CacheMaxEntries: 1})
		require.NoError(t, err)
		_, err = s.Encrypt(ctx, []byte("a"), a)
		require.NoError(t, err)
		k, ok := s.sealing.Lookup(a.Scope)
		require.True(t, ok)
		raw := rawBytes(t, k.dek)
		_, err = s.Encrypt(ctx, []byte("a"), a) // over budget: a new key
		require.NoError(t, err)
		assert.True(t, isZero(raw), "key past its budget zeroed")

		k, ok = s.sealing.Lookup(a.Scope)
		require.True(t, ok)
		raw = rawBytes(t, k.dek)
		_, err = s.Encrypt(ctx, []byte("b"), b) // evicts a's key
		require.NoError(t, err)
		assert.True(t, isZero(raw), "evicted key zeroed")
	})
}

// TestStreamAfterKeyZeroed checks that a stream whose data key is zeroed
// (evicted) between the cache lookup and the stream key's derivation gets
// a key of its own, and that streams work with caching off, where each
// key is zeroed after its one use.
func TestStreamAfterKeyZeroed(t *testing.T) {
	ctx := context.Background()
	b := Binding{Scope: "tenant:a"}
	kek := newCacheTestKEK(t)
	s, err := NewSelfContained(SelfContainedConfig{KEK: kek, StreamSegmentSize: MinStreamSegmentSize})
	require.NoError(t, err)
	encrypt := func(s *SelfContained) []byte {
		var buf bytes.Buffer
		w, err := s.EncryptStream(ctx, &buf, b)
		require.NoError(t, err)
		_, err = w.Write([]byte("attachment"))
		require.NoError(t, err)
		require.NoError(t, w.Close())
		return buf.Bytes()
	}
	decrypt := func(s *SelfContained, ct []byte) string {
		r, err := s.DecryptStream(ctx, bytes.NewReader(ct), b)
		require.NoError(t, err)
		pt, err := io.ReadAll(r)
		require.NoError(t, err)
		return string(pt)
	}
	ct := encrypt(s)
	assert.Equal(t, "attachment", decrypt(s, ct))
	wraps, unwraps := kek.Wraps(), kek.Unwraps()

	sk, ok := s.sealing.Lookup(b.Scope)
	require.True(t, ok)
	sk.dek.wipe() // as an eviction would, while the entry is still found
	ct2 := encrypt(s)
	assert.Equal(t, wraps+1, kek.Wraps(), "a data key of the stream's own")
	assert.Equal(t, "attachment", decrypt(s, ct2))

	h, err := format.ParseHeader(ct)
	require.NoError(t, err)
	okey, ok := s.opening.Lookup(string(appendOpeningCacheKey(nil, &h, b.Scope)))
	require.True(t, ok)
	okey.dek.wipe()
	before := kek.Unwraps()
	assert.Equal(t, "attachment", decrypt(s, ct))
	assert.Equal(t, before+1, kek.Unwraps(), "unwrapped again for this stream")
	assert.GreaterOrEqual(t, kek.Unwraps(), unwraps)

	off, err := NewSelfContained(SelfContainedConfig{KEK: kek, DataKeyMaxAge: -1, CacheMaxAge: -1, StreamSegmentSize: MinStreamSegmentSize})
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		assert.Equal(t, "attachment", decrypt(off, encrypt(off)))
		assert.Equal(t, "attachment", decrypt(off, ct))
	}
}

// TestFailedUnwrapMemoryBounds checks the age and count bounds of the
// memory of failed unwraps.
func TestFailedUnwrapMemoryBounds(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		kek := newCacheTestKEK(t)
		s, err := NewSelfContained(SelfContainedConfig{KEK: kek, FailedUnwrapMaxEntries: 2})
		require.NoError(t, err)
		b := Binding{Scope: "tenant:a"}
		ct, err := s.Encrypt(ctx, []byte("v"), b)
		require.NoError(t, err)
		forged := func(i int) []byte {
			c := bytes.Clone(ct)
			h, err := format.Parse(c)
			require.NoError(t, err)
			h.Wrapped[len(h.Wrapped)-1] ^= byte(1 + i)
			return c
		}

		// Count: at most FailedUnwrapMaxEntries are remembered.
		for i := 0; i < 5; i++ {
			_, err := s.Decrypt(ctx, forged(i), b)
			require.ErrorIs(t, err, ErrDecrypt)
		}
		assert.Equal(t, 2, s.failed.Len())
		assert.EqualValues(t, 5, kek.Unwraps())

		// Age: a remembered failure is forgotten after its max age (the
		// default, on the synctest bubble's clock).
		s.failed = keycache.New[struct{}](keycache.Config{MaxEntries: DefaultFailedUnwrapMaxEntries, MaxAge: DefaultFailedUnwrapMaxAge})
		start := kek.Unwraps()
		for i := 0; i < 3; i++ {
			_, err := s.Decrypt(ctx, forged(9), b)
			require.ErrorIs(t, err, ErrDecrypt)
		}
		assert.Equal(t, start+1, kek.Unwraps())
		time.Sleep(DefaultFailedUnwrapMaxAge - time.Nanosecond)
		synctest.Wait()
		_, err = s.Decrypt(ctx, forged(9), b)
		require.ErrorIs(t, err, ErrDecrypt)
		assert.Equal(t, start+1, kek.Unwraps(), "remembered until its max age")
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		_, err = s.Decrypt(ctx, forged(9), b)
		require.ErrorIs(t, err, ErrDecrypt)
		assert.Equal(t, start+2, kek.Unwraps(), "then asked again")
	})
}
