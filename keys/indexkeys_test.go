package keys_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/bubble"
	"github.com/phicrypt/phicrypt/keys"
)

// TestIndexKeyUsesAreAudited: with AuditUses, every index key use is
// audited, cached or not, and a fail-closed sink fails IndexKey and
// IndexKeys as it fails EncryptionKey.
func TestIndexKeyUsesAreAudited(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	kr := newKeyring(t, keys.Config{Auditor: rec, AuditUses: true, AuditFailClosed: true})
	for i := 0; i < 5; i++ {
		_, err := kr.IndexKey(ctx, "tenant:a", "patients", "ssn")
		require.NoError(t, err)
	}
	assert.Equal(t, 5, rec.count(keys.OpUse), "5 IndexKey calls, 5 uses")
	for _, e := range rec.events {
		if e.Op == keys.OpUse {
			assert.Equal(t, "index", e.Use)
			assert.Equal(t, "index/patients/ssn", e.Key)
			assert.Equal(t, "tenant:a", e.Scope)
			assert.Equal(t, uint32(1), e.Version)
		}
	}

	// A search during an index rotation uses two versions: two events
	// per search, warm or not.
	id, err := keys.IndexKeyID("tenant:a", "patients", "ssn")
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, id)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		n := rec.count(keys.OpUse)
		live, err := kr.IndexKeys(ctx, "tenant:a", "patients", "ssn")
		require.NoError(t, err)
		require.Len(t, live, 2)
		assert.Equal(t, n+2, rec.count(keys.OpUse))
	}

	// Fail-closed: a cached index key fails exactly as a cached data key.
	_, err = kr.EncryptionKey(ctx, "tenant:a")
	require.NoError(t, err)
	rec.mu.Lock()
	rec.fail = errors.New("audit sink down")
	rec.mu.Unlock()
	_, err = kr.EncryptionKey(ctx, "tenant:a")
	assert.ErrorIs(t, err, keys.ErrAudit)
	_, err = kr.IndexKey(ctx, "tenant:a", "patients", "ssn")
	assert.ErrorIs(t, err, keys.ErrAudit)
	_, err = kr.IndexKeys(ctx, "tenant:a", "patients", "ssn")
	assert.ErrorIs(t, err, keys.ErrAudit)

	// Without AuditUses, cached uses are not audited.
	quiet := &recorder{}
	kr = newKeyring(t, keys.Config{Auditor: quiet})
	for i := 0; i < 5; i++ {
		_, err := kr.IndexKey(ctx, "tenant:a", "patients", "ssn")
		require.NoError(t, err)
	}
	assert.Zero(t, quiet.count(keys.OpUse))
}

// countingStore counts the calls that reach a Store.
type countingStore struct {
	keys.Store
	gets, updates, lists atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, id keys.ID) (*keys.KeySet, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, id)
}

func (s *countingStore) Update(ctx context.Context, id keys.ID, fn func(*keys.KeySet) error) (*keys.KeySet, error) {
	s.updates.Add(1)
	return s.Store.Update(ctx, id, fn)
}

func (s *countingStore) List(ctx context.Context, scope string, after keys.ID, limit int) ([]*keys.KeySet, error) {
	s.lists.Add(1)
	return s.Store.List(ctx, scope, after, limit)
}

func (s *countingStore) calls() int64 { return s.gets.Load() + s.updates.Load() + s.lists.Load() }

func versions(ks []*keys.IndexKey) []uint32 {
	var out []uint32
	for _, k := range ks {
		out = append(out, k.Version())
	}
	return out
}

// TestWarmIndexKeysMakeNoStoreCall: the versions a search tries are
// cached with the keys, expire with them after CacheMaxAge, and are
// forgotten at once on a local rotation, retirement or destruction.
func TestWarmIndexKeysMakeNoStoreCall(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		kek, _ := newKEK(t)
		store := &countingStore{Store: keys.NewMemoryStore()}
		kr := newKeyring(t, keys.Config{KEK: kek, Store: store, CacheMaxAge: time.Minute})
		live, err := kr.IndexKeys(ctx, "tenant:a", "patients", "ssn")
		require.NoError(t, err)
		assert.Equal(t, []uint32{1}, versions(live))

		before, kms := store.calls(), kek.Calls()
		for i := 0; i < 100; i++ {
			live, err = kr.IndexKeys(ctx, "tenant:a", "patients", "ssn")
			require.NoError(t, err)
		}
		assert.Equal(t, before, store.calls(), "a warm search reads no key store")
		assert.Equal(t, kms, kek.Calls())
		live[0] = nil // the caller's copy
		live, err = kr.IndexKeys(ctx, "tenant:a", "patients", "ssn")
		require.NoError(t, err)
		require.NotNil(t, live[0], "callers cannot change the cached list")

		// A local rotation is seen at once.
		id, err := keys.IndexKeyID("tenant:a", "patients", "ssn")
		require.NoError(t, err)
		_, err = kr.Rotate(ctx, id)
		require.NoError(t, err)
		live, err = kr.IndexKeys(ctx, "tenant:a", "patients", "ssn")
		require.NoError(t, err)
		assert.Equal(t, []uint32{2, 1}, versions(live))
		before = store.calls()
		_, err = kr.IndexKeys(ctx, "tenant:a", "patients", "ssn")
		require.NoError(t, err)
		assert.Equal(t, before, store.calls())

		// So is a retirement.
		require.NoError(t, kr.SetMinDecryptVersion(ctx, id, 2))
		live, err = kr.IndexKeys(ctx, "tenant:a", "patients", "ssn")
		require.NoError(t, err)
		assert.Equal(t, []uint32{2}, versions(live))

		// Another replica's change is seen once CacheMaxAge has passed.
		other := newKeyring(t, keys.Config{KEK: kek, Store: store.Store})
		require.NoError(t, other.SetMinDecryptVersion(ctx, id, 0))
		live, err = kr.IndexKeys(ctx, "tenant:a", "patients", "ssn")
		require.NoError(t, err)
		assert.Equal(t, []uint32{2}, versions(live), "cached until CacheMaxAge")
		advance(time.Minute)
		before = store.calls()
		live, err = kr.IndexKeys(ctx, "tenant:a", "patients", "ssn")
		require.NoError(t, err)
		assert.Equal(t, []uint32{2, 1}, versions(live))
		assert.Greater(t, store.calls(), before, "an expired list is read again")

		// And a destruction ends searches at once.
		_, err = kr.Destroy(ctx, "tenant:a")
		require.NoError(t, err)
		_, err = kr.IndexKeys(ctx, "tenant:a", "patients", "ssn")
		assert.ErrorIs(t, err, keys.ErrKeyDestroyed)
	})
}

// TestIndexKeysWithoutCache: a negative CacheMaxAge reads the store on
// every search.
func TestIndexKeysWithoutCache(t *testing.T) {
	ctx := context.Background()
	store := &countingStore{Store: keys.NewMemoryStore()}
	kr := newKeyring(t, keys.Config{Store: store, CacheMaxAge: -1})
	_, err := kr.IndexKeys(ctx, "tenant:a", "patients", "ssn")
	require.NoError(t, err)
	before := store.calls()
	_, err = kr.IndexKeys(ctx, "tenant:a", "patients", "ssn")
	require.NoError(t, err)
	assert.Greater(t, store.calls(), before)
}

// TestAppendIndexKeys: AppendIndexKeys appends the versions IndexKeys
// returns to dst, without allocating once warm, and leaves dst as it was
// on failure.
func TestAppendIndexKeys(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t, keys.Config{})
	id, err := keys.IndexKeyID("tenant:a", "patients", "ssn")
	require.NoError(t, err)
	_, err = kr.IndexKey(ctx, "tenant:a", "patients", "ssn")
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, id)
	require.NoError(t, err)
	want, err := kr.IndexKeys(ctx, "tenant:a", "patients", "ssn")
	require.NoError(t, err)
	require.Equal(t, []uint32{2, 1}, versions(want))

	first := want[1]
	got, err := kr.AppendIndexKeys(ctx, []*keys.IndexKey{first}, "tenant:a", "patients", "ssn")
	require.NoError(t, err)
	assert.Equal(t, []uint32{1, 2, 1}, versions(got), "appended after dst's elements")

	buf := make([]*keys.IndexKey, 0, 4)
	allocs := testing.AllocsPerRun(100, func() {
		buf, _ = kr.AppendIndexKeys(ctx, buf[:0], "tenant:a", "patients", "ssn")
	})
	assert.Zero(t, allocs, "a warm search with room in dst does not allocate")

	dst := []*keys.IndexKey{first}
	got, err = kr.AppendIndexKeys(ctx, dst, "", "patients", "ssn")
	assert.ErrorIs(t, err, keys.ErrInvalidID)
	assert.Equal(t, []uint32{1}, versions(got), "dst unchanged on failure")
}

// TestIndexKeySumIsStateless: each Sum is the MAC of its message alone,
// whatever was summed before with the same pooled hash, and appends to
// dst.
func TestIndexKeySumIsStateless(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t, keys.Config{})
	k, err := kr.IndexKey(ctx, "tenant:a", "patients", "ssn")
	require.NoError(t, err)
	a := k.Sum(nil, []byte("999123456"))
	long := make([]byte, 200) // more than a SHA-256 block
	b := k.Sum(nil, long)
	assert.Len(t, a, 32)
	assert.NotEqual(t, a, b)
	assert.Equal(t, a, k.Sum(nil, []byte("999123456")), "no state left by earlier messages")
	assert.Equal(t, b, k.Sum(nil, long))
	assert.Equal(t, append([]byte("x"), a...), k.Sum([]byte("x"), []byte("999123456")))
}
