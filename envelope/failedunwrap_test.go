package envelope_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
)

// cacheEvents counts what a SelfContained reports to Observe.
type cacheEvents struct {
	mu     sync.Mutex
	counts map[string]int
	kekIDs map[string]bool
}

func (c *cacheEvents) observe(_ context.Context, e envelope.CacheEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts, c.kekIDs = map[string]int{}, map[string]bool{}
	}
	c.counts[e.Op]++
	c.kekIDs[e.KEKID] = true
}

func (c *cacheEvents) count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[op]
}

// wrappedKeyEnd returns the offset just past the wrapped data key of a
// binary self-contained ciphertext.
func wrappedKeyEnd(ct []byte) int {
	k := int(binary.BigEndian.Uint16(ct[4:6]))
	w := int(binary.BigEndian.Uint16(ct[6+k : 8+k]))
	return 8 + k + w
}

// tamperWrapped returns ct with one bit of its wrapped data key flipped.
func tamperWrapped(ct []byte, bit int) []byte {
	c := bytes.Clone(ct)
	c[wrappedKeyEnd(ct)-1-bit/8] ^= 1 << (bit % 8)
	return c
}

func newFailureFixture(t *testing.T, cfg envelope.SelfContainedConfig) (*envelope.SelfContained, *kmstest.Instrumented, *cacheEvents, []byte) {
	t.Helper()
	base, _ := newLocalKEK(t)
	kek := kmstest.Instrument(base)
	events := &cacheEvents{}
	cfg.KEK, cfg.Observe = kek, events.observe
	s, err := envelope.NewSelfContained(cfg)
	require.NoError(t, err)
	ct, err := s.Encrypt(context.Background(), []byte("123-45-6789"), patientBinding)
	require.NoError(t, err)
	return s, kek, events, ct
}

// TestFailedUnwrapCostsOneCall checks that copies of one tampered value
// cost one KMS call in all, and are counted as negative-cache hits, while
// each distinct forgery costs one call once.
func TestFailedUnwrapCostsOneCall(t *testing.T) {
	ctx := context.Background()
	s, kek, events, ct := newFailureFixture(t, envelope.SelfContainedConfig{})
	bad := tamperWrapped(ct, 0)

	const n = 1503
	for i := 0; i < n; i++ {
		_, err := s.Decrypt(ctx, bad, patientBinding)
		require.ErrorIs(t, err, envelope.ErrDecrypt)
	}
	assert.EqualValues(t, 1, kek.Unwraps(), "%d copies of one forgery, one KMS call", n)
	assert.Equal(t, 1, events.count(envelope.OpUnwrapFailed))
	assert.Equal(t, n-1, events.count(envelope.OpFailedUnwrapHit))
	assert.Equal(t, map[string]bool{"local:envelope-test": true}, events.kekIDs)

	// Concurrent copies of another forgery share one call too.
	bad2 := tamperWrapped(ct, 1)
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				_, err := s.Decrypt(ctx, bad2, patientBinding)
				assert.ErrorIs(t, err, envelope.ErrDecrypt)
			}
		}()
	}
	wg.Wait()
	assert.EqualValues(t, 2, kek.Unwraps())

	// Every bit of the wrapped key flipped: one call per distinct
	// forgery, none when they come again.
	bits := 8 * 16 // the tag of the local KEK's wrapping
	for round := 0; round < 3; round++ {
		for bit := 0; bit < bits; bit++ {
			_, err := s.Decrypt(ctx, tamperWrapped(ct, bit), patientBinding)
			require.ErrorIs(t, err, envelope.ErrDecrypt)
		}
		assert.EqualValues(t, bits, kek.Unwraps(), "round %d", round)
	}

	// The same value under a wrong scope fails the unwrap's AAD; that is
	// remembered for the wrong scope only.
	wrong := patientBinding
	wrong.Scope = "tenant:other"
	for i := 0; i < 10; i++ {
		_, err := s.Decrypt(ctx, ct, wrong)
		require.ErrorIs(t, err, envelope.ErrDecrypt)
	}
	assert.EqualValues(t, bits+1, kek.Unwraps())
	got, err := s.Decrypt(ctx, ct, patientBinding)
	require.NoError(t, err, "the authentic value is not poisoned")
	assert.Equal(t, "123-45-6789", string(got))
	assert.EqualValues(t, bits+2, kek.Unwraps(), "the authentic value's own unwrap")

	// Streams share the memory (their wrapped keys have the same AAD): a
	// stream whose header carries the forged wrapped key costs no call.
	for i := 0; i < 3; i++ {
		_, err = s.DecryptStream(ctx, bytes.NewReader(streamWithHeaderOf(bad)), patientBinding)
		assert.ErrorIs(t, err, envelope.ErrDecrypt)
	}
	assert.EqualValues(t, bits+2, kek.Unwraps())
}

// streamWithHeaderOf returns a stream header with the KEK id, wrapped key
// and commitment of the self-contained value ct, and a final segment.
func streamWithHeaderOf(ct []byte) []byte {
	end := wrappedKeyEnd(ct)
	hdr := append([]byte(nil), ct[:end+32]...)
	hdr[2] = 0x03 // form: stream
	hdr = binary.BigEndian.AppendUint32(hdr, envelope.MinStreamSegmentSize)
	hdr = append(hdr, make([]byte, 32)...)  // salt
	return append(hdr, make([]byte, 28)...) // an empty final segment
}

// TestFailedUnwrapTransientNotRemembered checks that outages, timeouts
// and unknown KEKs are never remembered: each attempt calls the KMS, and
// the value decrypts once the KMS is back.
func TestFailedUnwrapTransientNotRemembered(t *testing.T) {
	ctx := context.Background()
	_, kek, _, ct := newFailureFixture(t, envelope.SelfContainedConfig{})
	events := &cacheEvents{}
	s, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, Observe: events.observe})
	require.NoError(t, err)
	bad := tamperWrapped(ct, 0)

	// Unavailable.
	kek.SetDown(true)
	start := kek.Unwraps()
	for i := 0; i < 10; i++ {
		_, err := s.Decrypt(ctx, ct, patientBinding)
		require.ErrorIs(t, err, kms.ErrUnavailable)
		_, err = s.Decrypt(ctx, bad, patientBinding)
		require.ErrorIs(t, err, kms.ErrUnavailable)
	}
	assert.EqualValues(t, 20, kek.Unwraps()-start, "an outage is never remembered")
	kek.SetDown(false)
	got, err := s.Decrypt(ctx, ct, patientBinding)
	require.NoError(t, err)
	assert.Equal(t, "123-45-6789", string(got))

	// Timed out.
	fresh, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, Observe: events.observe})
	require.NoError(t, err)
	kek.SetDelay(time.Second)
	start = kek.Unwraps()
	for i := 0; i < 3; i++ {
		tctx, cancel := context.WithTimeout(ctx, time.Millisecond)
		_, err := fresh.Decrypt(tctx, ct, patientBinding)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
	assert.EqualValues(t, 3, kek.Unwraps()-start, "a timeout is never remembered")
	kek.SetDelay(0)
	_, err = fresh.Decrypt(ctx, ct, patientBinding)
	require.NoError(t, err)

	// A KEK id that is not this KEK's.
	other := bytes.Clone(bad)
	other[6+len("local:")] ^= 'x' ^ 'e' // local:envelope-test -> local:xnvelope-test
	start = kek.Unwraps()
	for i := 0; i < 3; i++ {
		_, err := s.Decrypt(ctx, other, patientBinding)
		require.ErrorIs(t, err, envelope.ErrKeyNotFound)
	}
	assert.EqualValues(t, 3, kek.Unwraps()-start, "a missing key is never remembered")
	assert.Zero(t, events.count(envelope.OpUnwrapFailed))
	assert.Zero(t, events.count(envelope.OpFailedUnwrapHit))

	// Once the KMS answers, the forgery is remembered.
	start = kek.Unwraps()
	for i := 0; i < 3; i++ {
		_, err := s.Decrypt(ctx, bad, patientBinding)
		require.ErrorIs(t, err, envelope.ErrDecrypt)
	}
	assert.EqualValues(t, 1, kek.Unwraps()-start)
}

// TestFailedUnwrapDisabled checks FailedUnwrapMaxAge < 0.
func TestFailedUnwrapDisabled(t *testing.T) {
	ctx := context.Background()
	s, kek, events, ct := newFailureFixture(t, envelope.SelfContainedConfig{FailedUnwrapMaxAge: -1})
	bad := tamperWrapped(ct, 0)
	for i := 0; i < 5; i++ {
		_, err := s.Decrypt(ctx, bad, patientBinding)
		require.ErrorIs(t, err, envelope.ErrDecrypt)
	}
	assert.EqualValues(t, 5, kek.Unwraps())
	assert.Zero(t, events.count(envelope.OpFailedUnwrapHit))
}
