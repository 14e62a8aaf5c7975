package keys_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/bubble"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
)

func patient(tenant string, i int) string { return fmt.Sprintf("tenant:%s/patient/%d", tenant, i) }

// sealAll encrypts one value for each of n patients of tenant and returns
// the ciphertexts, by scope.
func sealAll(t testing.TB, kr *keys.Keyring, tenant string, n int) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	c := compact(t, kr)
	out := make(map[string][]byte, n)
	for i := range n {
		scope := patient(tenant, i)
		ct, err := c.Encrypt(ctx, []byte("ssn of "+scope), binding(scope, "r"))
		require.NoError(t, err)
		out[scope] = ct
	}
	return out
}

// openAll decrypts every ciphertext of cts and checks the plaintexts.
func openAll(t testing.TB, kr *keys.Keyring, cts map[string][]byte) {
	t.Helper()
	c := compact(t, kr)
	for scope, ct := range cts {
		pt, err := c.Decrypt(context.Background(), ct, binding(scope, "r"))
		require.NoError(t, err, scope)
		require.Equal(t, "ssn of "+scope, string(pt))
	}
}

// wrappedBy returns the KeyID of the active data key of scope as stored.
func wrappedBy(t testing.TB, kr *keys.Keyring, scope string) string {
	t.Helper()
	sets, err := kr.Status(context.Background(), scope)
	require.NoError(t, err)
	for _, ks := range sets {
		if ks.ID.Name == keys.DataKeyName {
			return ks.Active().Wrapped.KeyID
		}
	}
	t.Fatalf("no data key for %s", scope)
	return ""
}

func TestTenantParent(t *testing.T) {
	for scope, want := range map[string]string{
		"tenant:a/patient/1":         "tenant:a",
		"tenant:st-mary/patient/x/y": "tenant:st-mary",
		"tenant:a":                   "",
		"tenant:/patient/1":          "",
		"tenant:a/patient/":          "",
		"tenant:a/b/patient/1":       "",
		"clinic:a/patient/1":         "",
		"tenant:a/patients/1":        "",
	} {
		got, ok := keys.TenantParent(scope)
		assert.Equal(t, want != "", ok, scope)
		assert.Equal(t, want, got, scope)
	}
}

// TestHierarchyKMSCalls: a tenant's patients cost one KMS Wrap when
// created and one Unwrap when read cold by a fresh keyring, however many
// there are, and children never evict their parent from the cache.
func TestHierarchyKMSCalls(t *testing.T) {
	for name, newStore := range stores() {
		t.Run(name, func(t *testing.T) {
			patients := 1000
			if name == "postgres" {
				patients = 300 // a round trip or four each, on a shared machine
			}
			kek, _ := newKEK(t)
			store := newStore(t)
			kr := newKeyring(t, keys.Config{KEK: kek, Store: store, Parent: keys.TenantParent})
			// The first 100 patients' keys are created by their first
			// encryption, the others in one batch (CreateKeys), which
			// saves a store transaction each.
			sealAll(t, kr, "a", 100)
			var scopes []string
			for i := 100; i < patients; i++ {
				scopes = append(scopes, patient("a", i))
			}
			_, err := kr.CreateKeys(context.Background(), scopes)
			require.NoError(t, err)
			cts := sealAll(t, kr, "a", patients)
			// The tenant's parent key and the store's metadata MAC key.
			assert.Equal(t, int64(2), kek.Wraps(), "creating %d patients wraps the parent key once", patients)
			assert.Equal(t, int64(0), kek.Unwraps())
			assert.True(t, strings.HasPrefix(wrappedBy(t, kr, patient("a", 7)), keys.ParentWrapPrefix+"1:tenant:a"))

			// A fresh keyring whose cache holds one child key at a time:
			// the parent stays cached apart.
			cold := kmstest.Instrument(kek.KEK)
			fresh := newKeyring(t, keys.Config{KEK: cold, Store: store, CacheMaxEntries: 1})
			openAll(t, fresh, cts)
			// One unwrap for the metadata MAC key, one for the tenant.
			assert.Equal(t, int64(2), cold.Unwraps(), "reading %d patients cold unwraps the parent key once", patients)
			assert.Equal(t, int64(0), cold.Wraps())
		})
	}
}

// TestHierarchyDefaultIsFlat: without Config.Parent, keys are wrapped by
// the KEK as before, one KMS call each.
func TestHierarchyDefaultIsFlat(t *testing.T) {
	kek, _ := newKEK(t)
	kr := newKeyring(t, keys.Config{KEK: kek})
	sealAll(t, kr, "a", 5)
	assert.Equal(t, int64(5+1), kek.Wraps())
	assert.False(t, strings.HasPrefix(wrappedBy(t, kr, patient("a", 1)), keys.ParentWrapPrefix))
}

// TestHierarchyReadsFlatStores: keys wrapped by the KEK before the
// hierarchy stay readable by a keyring that uses it, and Rewrap with
// ToParents moves them under their parent, resumably; afterwards a cold
// read makes one KMS call per tenant.
func TestHierarchyReadsFlatStores(t *testing.T) {
	for name, newStore := range stores() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			kek, _ := newKEK(t)
			store := newStore(t)
			old := newKeyring(t, keys.Config{KEK: kek, Store: store})
			cts := sealAll(t, old, "a", 30)
			for k, v := range sealAll(t, old, "b", 10) {
				cts[k] = v
			}

			kr := newKeyring(t, keys.Config{KEK: kek, Store: store, Parent: keys.TenantParent})
			openAll(t, kr, cts)
			newCts := sealAll(t, kr, "c", 3) // new patients go under their parent
			assert.True(t, strings.HasPrefix(wrappedBy(t, kr, patient("c", 0)), keys.ParentWrapPrefix))
			assert.False(t, strings.HasPrefix(wrappedBy(t, kr, patient("a", 0)), keys.ParentWrapPrefix))

			// The migration fails part way (the KMS goes down), then
			// resumes.
			kek.FailAfter(kek.Calls() + 10)
			r, err := kr.Rewrap(ctx, keys.RewrapOptions{ToParents: true, BatchSize: 7})
			require.ErrorIs(t, err, kms.ErrUnavailable)
			assert.Less(t, r.Migrated, 40)
			kek.FailAfter(-1)
			r2, err := kr.Rewrap(ctx, keys.RewrapOptions{ToParents: true, WrappedBefore: r.Started})
			require.NoError(t, err)
			assert.Equal(t, 40, r.Migrated+r2.Migrated, "every KEK-wrapped patient key moves once")
			assert.Zero(t, r2.Failed)
			r3, err := kr.Rewrap(ctx, keys.RewrapOptions{ToParents: true, WrappedBefore: r.Started})
			require.NoError(t, err)
			assert.Zero(t, r3.Migrated, "a finished migration has nothing left")
			for scope := range cts {
				assert.True(t, strings.HasPrefix(wrappedBy(t, kr, scope), keys.ParentWrapPrefix), scope)
			}

			cold := kmstest.Instrument(kek.KEK)
			fresh := newKeyring(t, keys.Config{KEK: cold, Store: store})
			openAll(t, fresh, cts)
			openAll(t, fresh, newCts)
			// The MAC key, and the parent keys of tenants a, b and c.
			assert.Equal(t, int64(1+3), cold.Unwraps())
		})
	}
}

// TestHierarchyRewrapTouchesOnlyParents: after a KEK rotation, Rewrap
// sends the parent keys to the KMS and no child key.
func TestHierarchyRewrapTouchesOnlyParents(t *testing.T) {
	for name, newStore := range stores() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			kek, _ := newKEK(t)
			store := newStore(t)
			kr := newKeyring(t, keys.Config{KEK: kek, Store: store, Parent: keys.TenantParent})
			cts := sealAll(t, kr, "a", 40)
			for k, v := range sealAll(t, kr, "b", 20) {
				cts[k] = v
			}
			before := kek.Calls()
			r, err := kr.Rewrap(ctx, keys.RewrapOptions{WrappedBefore: time.Now().Add(time.Hour)})
			require.NoError(t, err)
			// Two parent keys and the metadata MAC key; the 60 patients'
			// keys stay under their parents.
			assert.Equal(t, 3, r.Rewrapped)
			assert.Equal(t, int64(2*3), kek.Calls()-before, "one unwrap and one wrap per parent key")
			assert.Zero(t, r.Local+r.Migrated+r.Failed)

			cold := kmstest.Instrument(kek.KEK)
			openAll(t, newKeyring(t, keys.Config{KEK: cold, Store: store}), cts)
			assert.Equal(t, int64(1+2), cold.Unwraps())
		})
	}
}

// failingStore fails every Update after the first n.
type failingStore struct {
	keys.Store
	left atomic.Int64
}

var errStoreDown = errors.New("store down")

func (f *failingStore) Update(ctx context.Context, id keys.ID, fn func(ks *keys.KeySet) error) (*keys.KeySet, error) {
	if f.left.Add(-1) < 0 {
		return nil, errStoreDown
	}
	return f.Store.Update(ctx, id, fn)
}

// TestHierarchyParentRotation: rotating a parent key rewraps its children
// locally (no KMS call but the new parent version's wrap), resumably.
func TestHierarchyParentRotation(t *testing.T) {
	for name, newStore := range stores() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			kek, _ := newKEK(t)
			store := newStore(t)
			kr := newKeyring(t, keys.Config{KEK: kek, Store: store, Parent: keys.TenantParent})
			cts := sealAll(t, kr, "a", 25)
			other := sealAll(t, kr, "b", 5)

			v, err := kr.Rotate(ctx, keys.ParentKey("tenant:a"))
			require.NoError(t, err)
			require.Equal(t, uint32(2), v)

			// Interrupted after 10 store writes, then resumed by a
			// keyring on the same store.
			before := kek.Calls()
			flaky := &failingStore{Store: store}
			flaky.left.Store(10)
			// Nothing was wrapped by the KEK before 1970: no KMS rewrap.
			epoch := time.Unix(1, 0)
			r, err := newKeyring(t, keys.Config{KEK: kek, Store: flaky}).Rewrap(ctx, keys.RewrapOptions{BatchSize: 4, WrappedBefore: epoch})
			require.ErrorIs(t, err, errStoreDown)
			// It unwrapped the MAC key and both versions of tenant:a's
			// parent key, nothing per child.
			assert.Equal(t, int64(3), kek.Calls()-before)
			before = kek.Calls()
			r2, err := kr.Rewrap(ctx, keys.RewrapOptions{WrappedBefore: epoch})
			require.NoError(t, err)
			assert.Equal(t, 25, r.Local+r2.Local, "each child of tenant:a is rewrapped once")
			assert.Zero(t, r2.Rewrapped+r2.Failed)
			// The resumed keyring unwrapped version 1 of tenant:a's
			// parent key again (Rotate dropped it from its cache).
			assert.Equal(t, int64(1), kek.Calls()-before)
			for scope := range cts {
				assert.Equal(t, keys.ParentWrapPrefix+"2:tenant:a", wrappedBy(t, kr, scope))
			}
			assert.Equal(t, keys.ParentWrapPrefix+"1:tenant:b", wrappedBy(t, kr, patient("b", 0)))

			// The old parent version can go: nothing needs it.
			require.NoError(t, kr.SetState(ctx, keys.ParentKey("tenant:a"), 1, keys.Destroyed))
			fresh := newKeyring(t, keys.Config{KEK: kek, Store: store})
			openAll(t, fresh, cts)
			openAll(t, fresh, other)
		})
	}
}

// TestHierarchyTenantShred: destroying a tenant's parent key, in one
// store write, makes every patient's data fail with ErrKeyDestroyed;
// Destroy then erases the patients' key sets.
func TestHierarchyTenantShred(t *testing.T) {
	for name, newStore := range stores() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			kek, _ := newKEK(t)
			store := newStore(t)
			flat := newKeyring(t, keys.Config{KEK: kek, Store: store})
			legacy := sealAll(t, flat, "legacy", 1) // wrapped by the KEK, before the hierarchy
			kr := newKeyring(t, keys.Config{KEK: kek, Store: store, Parent: keys.TenantParent})
			cts := sealAll(t, kr, "a", 20)
			ctsL := sealAll(t, kr, "legacy", 3)
			other := sealAll(t, kr, "b", 5)
			// The tenant's own data and index keys, which list before its
			// parent key.
			_, err := kr.EncryptionKey(ctx, "tenant:a")
			require.NoError(t, err)
			_, err = kr.IndexKey(ctx, "tenant:a", "patients", "ssn")
			require.NoError(t, err)

			// Destroy stops after its first store write: the parent key.
			flaky := &failingStore{Store: store}
			flaky.left.Store(1)
			_, err = newKeyring(t, keys.Config{KEK: kek, Store: flaky, Parent: keys.TenantParent}).Destroy(ctx, "tenant:a")
			require.ErrorIs(t, err, errStoreDown)
			c := compact(t, newKeyring(t, keys.Config{KEK: kek, Store: store}))
			for scope, ct := range cts {
				_, err := c.Decrypt(ctx, ct, binding(scope, "r"))
				require.ErrorIs(t, err, keys.ErrKeyDestroyed, "%s is unrecoverable once its parent key is destroyed", scope)
			}

			// Run again, it finishes: every child key set is destroyed.
			report, err := kr.Destroy(ctx, "tenant:a")
			require.NoError(t, err)
			assert.Equal(t, keys.DestroyReport{KeySets: 3, ChildKeySets: 20, Versions: 22}, report)
			for _, k := range []*keys.Keyring{kr, newKeyring(t, keys.Config{KEK: kek, Store: store})} {
				c := compact(t, k)
				for scope, ct := range cts {
					_, err := c.Decrypt(ctx, ct, binding(scope, "r"))
					require.ErrorIs(t, err, keys.ErrKeyDestroyed, scope)
				}
				openAll(t, k, other)
			}
			sets, err := kr.Status(ctx, patient("a", 3))
			require.NoError(t, err)
			require.Len(t, sets, 1)
			assert.Equal(t, keys.Destroyed, sets[0].Versions[0].State)
			assert.Empty(t, sets[0].Versions[0].Wrapped.Ciphertext)
			// No new patient key under a shredded tenant.
			_, err = kr.EncryptionKey(ctx, patient("a", 999))
			assert.ErrorIs(t, err, keys.ErrKeyDestroyed)

			// A tenant whose patients were partly wrapped by the KEK:
			// those are destroyed too, found by Config.Parent.
			report, err = kr.Destroy(ctx, "tenant:legacy")
			require.NoError(t, err)
			assert.Equal(t, 3, report.ChildKeySets)
			for scope, ct := range merge(legacy, ctsL) {
				_, err := c.Decrypt(ctx, ct, binding(scope, "r"))
				require.ErrorIs(t, err, keys.ErrKeyDestroyed, scope)
			}
		})
	}
}

func merge(a, b map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// TestHierarchyPatientShred: destroying one patient leaves its tenant and
// the other patients alone.
func TestHierarchyPatientShred(t *testing.T) {
	ctx := context.Background()
	kek, _ := newKEK(t)
	kr := newKeyring(t, keys.Config{KEK: kek, Parent: keys.TenantParent})
	cts := sealAll(t, kr, "a", 3)
	report, err := kr.Destroy(ctx, patient("a", 1))
	require.NoError(t, err)
	assert.Equal(t, keys.DestroyReport{KeySets: 1, Versions: 1}, report)
	_, err = compact(t, kr).Decrypt(ctx, cts[patient("a", 1)], binding(patient("a", 1), "r"))
	require.ErrorIs(t, err, keys.ErrKeyDestroyed)
	delete(cts, patient("a", 1))
	openAll(t, kr, cts)
}

// TestHierarchyInvalidParentRule: a rule that names a reserved or empty
// parent fails closed instead of wrapping with the KEK.
func TestHierarchyInvalidParentRule(t *testing.T) {
	ctx := context.Background()
	for _, parent := range []string{"", "phicrypt:audit", "tenant:a/patient/1"} {
		kr := newKeyring(t, keys.Config{Parent: func(string) (string, bool) { return parent, true }})
		_, err := kr.EncryptionKey(ctx, "tenant:a/patient/1")
		assert.ErrorIs(t, err, keys.ErrInvalidID, parent)
	}
}

// TestHierarchyDestroyKeepsMetadataHead: a tenant's destruction, children
// included, leaves a store whose metadata verifies.
func TestHierarchyDestroyKeepsMetadataHead(t *testing.T) {
	for name, newStore := range stores() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			kr := newKeyring(t, keys.Config{Store: newStore(t), Parent: keys.TenantParent})
			sealAll(t, kr, "a", 5)
			other := sealAll(t, kr, "b", 2)
			report, err := kr.Destroy(ctx, "tenant:a")
			require.NoError(t, err)
			assert.Equal(t, keys.DestroyReport{KeySets: 1, ChildKeySets: 5, Versions: 6}, report)
			_, err = kr.VerifyMetadata(ctx, keys.MetadataVerifyOptions{})
			require.NoError(t, err)
			openAll(t, kr, other)
		})
	}
}

// TestCreateKeys: keys created in one batch are stored sealed, wrapped
// under their parents, and cached, so that the first encryption of each
// makes no store call; existing and destroyed scopes are left alone.
func TestCreateKeys(t *testing.T) {
	for name, newStore := range stores() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			kek, _ := newKEK(t)
			store := newStore(t)
			kr := newKeyring(t, keys.Config{KEK: kek, Store: store, Parent: keys.TenantParent})
			existing := sealAll(t, kr, "a", 2)
			_, err := kr.Destroy(ctx, patient("a", 1))
			require.NoError(t, err)

			var scopes []string
			for i := range 300 {
				scopes = append(scopes, patient("a", i), patient("b", i))
			}
			scopes = append(scopes, patient("b", 0)) // a duplicate
			before := kek.Calls()
			n, err := kr.CreateKeys(ctx, scopes)
			require.NoError(t, err)
			assert.Equal(t, 600-2, n, "every scope without a key gets one")
			assert.Equal(t, int64(1), kek.Calls()-before, "tenant:b's parent key is the only KMS call")
			assert.Equal(t, keys.ParentWrapPrefix+"1:tenant:b", wrappedBy(t, kr, patient("b", 5)))

			n, err = kr.CreateKeys(ctx, scopes[:10])
			require.NoError(t, err)
			assert.Zero(t, n)
			_, err = kr.EncryptionKey(ctx, patient("a", 1))
			assert.ErrorIs(t, err, keys.ErrKeyDestroyed, "a shredded patient gets no new key")
			_, err = kr.CreateKeys(ctx, []string{patient("a", 1), ""})
			assert.ErrorIs(t, err, keys.ErrInvalidID)

			// The batch kept the store's metadata head.
			_, err = kr.VerifyMetadata(ctx, keys.MetadataVerifyOptions{})
			require.NoError(t, err)
			delete(existing, patient("a", 1))
			cts := merge(existing, sealAll(t, kr, "b", 300))
			openAll(t, newKeyring(t, keys.Config{KEK: kek, Store: store}), cts)
		})
	}
}

// TestCreateKeysCachesForEncryption: the first encryption under a key
// CreateKeys made needs no store at all.
func TestCreateKeysCachesForEncryption(t *testing.T) {
	ctx := context.Background()
	db := sqliteDB(t)
	store, err := keys.NewSQLStore(ctx, db, keys.SQLite)
	require.NoError(t, err)
	kr := newKeyring(t, keys.Config{Store: store, Parent: keys.TenantParent})
	scopes := []string{patient("a", 1), patient("a", 2), patient("b", 1)}
	n, err := kr.CreateKeys(ctx, scopes)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.NoError(t, db.Close())
	for _, scope := range scopes {
		_, err := kr.EncryptionKey(ctx, scope)
		require.NoError(t, err, "served from the cache")
	}
	_, err = kr.EncryptionKey(ctx, patient("a", 3))
	require.Error(t, err, "an uncached scope needs the store, which is closed")
}

// TestDestroyParentVersionInUse: a parent key version that children's
// keys are still wrapped under cannot be destroyed through
// DestroyVersion; after Rewrap moved them, it can.
func TestDestroyParentVersionInUse(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := keys.NewMemoryStore()
		kek, _ := newKEK(t)
		kr := newKeyring(t, keys.Config{KEK: kek, Store: store, Parent: keys.TenantParent})
		cts := sealAll(t, kr, "a", 4)
		id := keys.ParentKey("tenant:a")
		_, err := kr.Rotate(ctx, id)
		require.NoError(t, err)
		advance(keys.DefaultCacheMaxAge + time.Second)

		err = kr.DestroyVersion(ctx, id, 1, nil)
		var inUse *keys.InUseError
		require.ErrorAs(t, err, &inUse)
		assert.ErrorIs(t, err, keys.ErrStillInUse)
		assert.Equal(t, int64(4), inUse.Rows, "the four patients' keys")

		r, err := kr.Rewrap(ctx, keys.RewrapOptions{WrappedBefore: time.Unix(1, 0)})
		require.NoError(t, err)
		require.Equal(t, 4, r.Local)
		require.NoError(t, kr.DestroyVersion(ctx, id, 1, nil))
		openAll(t, newKeyring(t, keys.Config{KEK: kek, Store: store}), cts)
	})
}
