package keys_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
)

// faultyKEK fails its calls with the kind set by failWith, if any.
type faultyKEK struct {
	kms.KEK
	kind atomic.Pointer[error]
}

func (f *faultyKEK) failWith(kind error) {
	if kind == nil {
		f.kind.Store(nil)
		return
	}
	f.kind.Store(&kind)
}

func (f *faultyKEK) KeyID() string { return f.KEK.(kms.Identifier).KeyID() }

func (f *faultyKEK) fault(ctx context.Context, op string) error {
	if k := f.kind.Load(); k != nil {
		return kms.NewError(ctx, op, f.KeyID(), *k, nil)
	}
	return nil
}

func (f *faultyKEK) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	if err := f.fault(ctx, "wrap"); err != nil {
		return kms.WrappedKey{}, err
	}
	return f.KEK.Wrap(ctx, dek, aad)
}

func (f *faultyKEK) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	if err := f.fault(ctx, "unwrap"); err != nil {
		return nil, err
	}
	return f.KEK.Unwrap(ctx, wk, aad)
}

// assertKMSCounts checks that a keyring's KMS counters match the calls a
// counting KEK saw.
func assertKMSCounts(t *testing.T, kr *keys.Keyring, inst *kmstest.Instrumented) keys.Stats {
	t.Helper()
	st := kr.Stats()
	assert.Equal(t, uint64(inst.Wraps()), st.Wrap.Total(), "wraps")
	assert.Equal(t, uint64(inst.Unwraps()), st.Unwrap.Total(), "unwraps")
	return st
}

func TestStats(t *testing.T) {
	ctx := context.Background()
	base, _ := newKEK(t)
	faulty := &faultyKEK{KEK: base.KEK}
	store := keys.NewMemoryStore()
	inst := kmstest.Instrument(faulty)
	kr := newKeyring(t, keys.Config{KEK: inst, Store: store})
	assert.Equal(t, keys.Stats{}, kr.Stats(), "a new keyring has counted nothing")

	// The first key also creates the keyring's metadata MAC key (a key
	// set of its own).
	_, err := kr.EncryptionKey(ctx, "tenant:warm")
	require.NoError(t, err)
	warm := assertKMSCounts(t, kr, inst)
	assert.Equal(t, warm.CacheMisses, warm.CacheLoads)
	assert.Equal(t, uint64(0), warm.CacheHits)
	assert.Positive(t, warm.Wrap.Success)

	// A new scope's first encryption misses, loads and wraps a new key;
	// the next ones hit.
	_, err = kr.EncryptionKey(ctx, "tenant:a")
	require.NoError(t, err)
	st := assertKMSCounts(t, kr, inst)
	assert.Equal(t, warm.CacheMisses+1, st.CacheMisses)
	assert.Equal(t, warm.CacheLoads+1, st.CacheLoads)
	assert.Equal(t, warm.CacheHits, st.CacheHits)
	assert.Equal(t, warm.Created+1, st.Created)
	assert.Equal(t, warm.Wrap.Success+1, st.Wrap.Success)
	for range 10 {
		_, err := kr.EncryptionKey(ctx, "tenant:a")
		require.NoError(t, err)
	}
	_, err = kr.DecryptionKey(ctx, "tenant:a", 1)
	require.NoError(t, err)
	st2 := assertKMSCounts(t, kr, inst)
	assert.Equal(t, st.CacheHits+11, st2.CacheHits, "steady state: hits only")
	assert.Equal(t, st.CacheMisses, st2.CacheMisses)
	assert.Equal(t, st.CacheLoads, st2.CacheLoads)
	assert.Equal(t, uint64(inst.Calls()), st2.Wrap.Total()+st2.Unwrap.Total(), "no KMS call in steady state")

	// Another replica, cold: concurrent misses on one version make one
	// load and one unwrap.
	inst2 := kmstest.Instrument(faulty)
	inst2.SetDelay(50 * time.Millisecond)
	kr2 := newKeyring(t, keys.Config{KEK: inst2, Store: store})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_, err := kr2.DecryptionKey(ctx, "tenant:a", 1)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	st = assertKMSCounts(t, kr2, inst2)
	assert.Equal(t, uint64(8), st.CacheHits+st.CacheMisses)
	assert.Positive(t, st.CacheMisses)
	assert.Equal(t, uint64(1), st.CacheLoads, "one load for concurrent misses")
	assert.Equal(t, uint64(0), st.CacheLoadErrors)
	assert.Equal(t, st.Unwrap.Success, st.Unwrap.Total())
	assert.Equal(t, uint64(0), st.Wrap.Total())

	// Failures are counted by kind, for calls that reach the KEK through
	// any path.
	inst2.SetDelay(0)
	for _, kind := range []error{kms.ErrThrottled, kms.ErrUnavailable, kms.ErrPermissionDenied, kms.ErrKeyNotFound, kms.ErrUnwrapFailed} {
		inst3 := kmstest.Instrument(faulty)
		kr3 := newKeyring(t, keys.Config{KEK: inst3, Store: store})
		faulty.failWith(kind)
		_, err := kr3.DecryptionKey(ctx, "tenant:a", 1)
		faulty.failWith(nil)
		require.ErrorIs(t, err, kind)
		st := assertKMSCounts(t, kr3, inst3)
		assert.Equal(t, uint64(1), st.CacheLoadErrors, "%v", kind)
		assert.Equal(t, st.Unwrap.Total(), st.Unwrap.Failures(), "%v: every unwrap failed", kind)
		n := st.Unwrap.Failures()
		require.Positive(t, n)
		var got uint64
		switch kind {
		case kms.ErrThrottled:
			got = st.Unwrap.Throttled
		case kms.ErrUnavailable:
			got = st.Unwrap.Unavailable
		case kms.ErrPermissionDenied:
			got = st.Unwrap.PermissionDenied
		case kms.ErrKeyNotFound:
			got = st.Unwrap.KeyNotFound
		case kms.ErrUnwrapFailed:
			got = st.Unwrap.UnwrapFailed
		}
		assert.Equal(t, n, got, "%v counted under its kind", kind)
	}

	// A cancelled context.
	kr4 := newKeyring(t, keys.Config{KEK: inst2, Store: store})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = kr4.DecryptionKey(cctx, "tenant:a", 1)
	require.ErrorIs(t, err, context.Canceled)
	if st := kr4.Stats(); st.Unwrap.Total() > 0 {
		assert.Equal(t, st.Unwrap.Total(), st.Unwrap.Canceled)
	}
}

func TestStatsRotationsAndShreds(t *testing.T) {
	ctx := context.Background()
	inst, _ := newKEK(t)
	kr := newKeyring(t, keys.Config{KEK: inst, MaxMessages: 2, ReserveBlock: 1})

	// Five encryptions of two messages per version: versions 1, 2 and 3,
	// two of them automatic rotations.
	for range 5 {
		_, err := kr.EncryptionKey(ctx, "patient:1")
		require.NoError(t, err)
	}
	st := assertKMSCounts(t, kr, inst)
	assert.Equal(t, uint64(3), st.Created)
	assert.Equal(t, uint64(2), st.Rotations)

	v, err := kr.Rotate(ctx, keys.DataKey("patient:1"))
	require.NoError(t, err)
	require.Equal(t, uint32(4), v)
	st = assertKMSCounts(t, kr, inst)
	assert.Equal(t, uint64(4), st.Created)
	assert.Equal(t, uint64(3), st.Rotations)
	assert.Equal(t, uint64(0), st.Shreds)

	// A refused rotation is not one.
	_, err = kr.Rotate(ctx, keys.DataKey(""))
	require.ErrorIs(t, err, keys.ErrInvalidID)
	assert.Equal(t, uint64(3), kr.Stats().Rotations)

	// Shredding the patient destroys its four versions.
	_, err = kr.EncryptionKey(ctx, "patient:2")
	require.NoError(t, err)
	report, err := kr.Shred(ctx, "patient:1", keys.ShredOptions{})
	require.NoError(t, err)
	require.Equal(t, 4, report.Versions)
	st = assertKMSCounts(t, kr, inst)
	assert.Equal(t, uint64(1), st.Shreds)
	assert.Equal(t, uint64(4), st.VersionsDestroyed)
	assert.Equal(t, uint64(0), st.Denied)

	// A destroyed key is denied, and counted.
	_, err = kr.DecryptionKey(ctx, "patient:1", 2)
	require.ErrorIs(t, err, keys.ErrKeyDestroyed)
	assert.Equal(t, uint64(1), kr.Stats().Denied)

	_, err = kr.Destroy(ctx, "patient:2")
	require.NoError(t, err)
	st = kr.Stats()
	assert.Equal(t, uint64(2), st.Shreds)
	assert.Equal(t, uint64(5), st.VersionsDestroyed)

	// A refused shred is not one.
	_, err = kr.Destroy(ctx, "")
	require.ErrorIs(t, err, keys.ErrInvalidID)
	assert.Equal(t, uint64(2), kr.Stats().Shreds)
}

func TestKMSCounts(t *testing.T) {
	c := keys.KMSCounts{Success: 5, Throttled: 1, Unavailable: 2, PermissionDenied: 3, KeyNotFound: 4, UnwrapFailed: 6, InvalidInput: 7, Canceled: 8, DeadlineExceeded: 9}
	assert.Equal(t, uint64(40), c.Failures())
	assert.Equal(t, uint64(45), c.Total())
}
