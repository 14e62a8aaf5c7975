package keys_test

import (
	"context"
	"crypto/fips140"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
)

// plainStore is a Store implemented outside the package: it hides the
// transactional reads of the package's stores, so that the keyring checks
// destroyed scopes around the store's writes instead of inside them.
type plainStore struct{ keys.Store }

// storesAndPlain is stores() and a plain (outside) store.
func storesAndPlain() map[string]func(t testing.TB) keys.Store {
	out := stores()
	out["plain"] = func(testing.TB) keys.Store { return plainStore{keys.NewMemoryStore()} }
	return out
}

// hookKEK runs hook (once, if set) inside Wrap: between a keyring's read
// of a key set and its write of a new version.
type hookKEK struct {
	kms.KEK
	mu   sync.Mutex
	hook func()
}

func (h *hookKEK) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	h.mu.Lock()
	hook := h.hook
	h.hook = nil
	h.mu.Unlock()
	if hook != nil {
		hook()
	}
	return h.KEK.Wrap(ctx, dek, aad)
}

// requireShredded checks that every version of every key set of scope is
// destroyed.
func requireShredded(t testing.TB, kr *keys.Keyring, scope string) {
	t.Helper()
	sets, err := kr.Status(context.Background(), scope)
	require.NoError(t, err)
	for _, ks := range sets {
		for _, r := range ks.Versions {
			require.Equal(t, keys.Destroyed, r.State, "%s version %d", ks.ID.Name, r.Version)
		}
	}
}

// TestDestroyedScopeGetsNoNewKey: after Destroy, no key set of the scope
// gets a version, whether it existed or not, in this keyring or another,
// and a scope destroyed before it had any key gets none either.
func TestDestroyedScopeGetsNoNewKey(t *testing.T) {
	for name, newStore := range storesAndPlain() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			kek, _ := newKEK(t)
			store := newStore(t)
			kr := newKeyring(t, keys.Config{KEK: kek, Store: store})
			scope := "tenant:a/patient/1"
			_, err := kr.EncryptionKey(ctx, scope)
			require.NoError(t, err)
			_, err = kr.EncryptionKey(ctx, "tenant:a/patient/2")
			require.NoError(t, err)
			report, err := kr.Destroy(ctx, scope)
			require.NoError(t, err)
			assert.Equal(t, keys.DestroyReport{KeySets: 1, Versions: 1}, report, "the tombstone is no key set of the scope")
			_, err = kr.Destroy(ctx, "tenant:never-used")
			require.NoError(t, err)

			for _, k := range []*keys.Keyring{kr, newKeyring(t, keys.Config{KEK: kek, Store: store})} {
				for _, scope := range []string{scope, "tenant:never-used"} {
					_, err = k.EncryptionKey(ctx, scope)
					assert.ErrorIs(t, err, keys.ErrKeyDestroyed, "data key")
					if !fips140.Enabled() { // AES-SIV is not FIPS 140-3 approved
						_, err = k.Deterministic().EncryptionKey(ctx, scope)
						assert.ErrorIs(t, err, keys.ErrKeyDestroyed, "deterministic key")
					}
					_, err = k.IndexKey(ctx, scope, "patients", "ssn")
					assert.ErrorIs(t, err, keys.ErrKeyDestroyed, "index key")
					_, err = k.IndexKeys(ctx, scope, "patients", "mrn")
					assert.ErrorIs(t, err, keys.ErrKeyDestroyed, "index keys")
					_, err = k.Rotate(ctx, keys.ID{Scope: scope, Name: "index/notes/mrn"})
					assert.ErrorIs(t, err, keys.ErrKeyDestroyed, "Rotate")
					_, err = k.Rotate(ctx, keys.DataKey(scope))
					assert.ErrorIs(t, err, keys.ErrKeyDestroyed, "Rotate")
					n, err := k.CreateKeys(ctx, []string{scope})
					require.NoError(t, err)
					assert.Equal(t, 0, n, "CreateKeys leaves a destroyed scope alone")
					requireShredded(t, k, scope)
				}
			}
			sets, err := kr.Status(ctx, "tenant:never-used")
			require.NoError(t, err)
			assert.Empty(t, sets, "refusals store nothing in the scope")

			// Other scopes are unaffected; the tombstones are in their
			// reserved scope, sealed like any key set.
			_, err = kr.EncryptionKey(ctx, "tenant:a/patient/2")
			require.NoError(t, err)
			_, err = kr.IndexKey(ctx, "tenant:a/patient/2", "patients", "ssn")
			require.NoError(t, err)
			sets, err = kr.Status(ctx, keys.TombstoneScope)
			require.NoError(t, err)
			require.Len(t, sets, 2)
			assert.Equal(t, scope, sets[0].ID.Name)
			assert.Equal(t, "tenant:never-used", sets[1].ID.Name)
			for _, ks := range sets {
				require.Len(t, ks.Versions, 1)
				assert.Equal(t, keys.Destroyed, ks.Versions[0].State)
				assert.Empty(t, ks.Versions[0].Wrapped.Ciphertext)
				assert.NotEmpty(t, ks.MetaMAC)
			}
			if name != "plain" {
				_, err = kr.VerifyMetadata(ctx, keys.MetadataVerifyOptions{})
				require.NoError(t, err)
			}
			_, err = kr.Destroy(ctx, scope)
			require.NoError(t, err, "Destroy runs again")
			_, err = kr.Destroy(ctx, keys.TombstoneScope)
			assert.ErrorIs(t, err, keys.ErrReservedScope)
		})
	}
}

// TestDestroyDuringKeyCreation: a Destroy that lands after a keyring read
// a key set and before it writes a new version (here, during the KMS
// wrap) refuses the write, or (for a Store outside the package) destroys
// what it wrote.
func TestDestroyDuringKeyCreation(t *testing.T) {
	for name, newStore := range storesAndPlain() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			inner, _ := newKEK(t)
			kek := &hookKEK{KEK: inner}
			store := newStore(t)
			kr := newKeyring(t, keys.Config{KEK: kek, Store: store})
			other := newKeyring(t, keys.Config{KEK: inner, Store: store})
			creates := []func(scope string) error{
				func(scope string) error { _, err := kr.EncryptionKey(ctx, scope); return err },
				func(scope string) error { _, err := kr.IndexKey(ctx, scope, "patients", "ssn"); return err },
				func(scope string) error {
					if n, err := kr.CreateKeys(ctx, []string{scope}); err != nil || n > 0 {
						return err
					}
					return keys.ErrKeyDestroyed // left as it is
				},
				func(scope string) error { _, err := kr.Rotate(ctx, keys.DataKey(scope)); return err },
			}
			if !fips140.Enabled() { // AES-SIV is not FIPS 140-3 approved
				creates = append(creates, func(scope string) error {
					_, err := kr.Deterministic().EncryptionKey(ctx, scope)
					return err
				})
			}
			for i, create := range creates {
				scope := fmt.Sprintf("tenant:a/patient/%d", i)
				_, err := other.IndexKey(ctx, scope, "x", "y") // the scope has a key, not the one created
				require.NoError(t, err)
				var derr error
				kek.mu.Lock()
				kek.hook = func() { _, derr = other.Destroy(ctx, scope) }
				kek.mu.Unlock()
				err = create(scope)
				require.NoError(t, derr)
				require.ErrorIs(t, err, keys.ErrKeyDestroyed, "case %d", i)
				requireShredded(t, kr, scope)
			}
		})
	}
}

// TestDestroyRacesKeyCreation: keys created while Destroy runs are refused
// or destroyed: once both are done, nothing of the scope is usable.
func TestDestroyRacesKeyCreation(t *testing.T) {
	for name, newStore := range storesAndPlain() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			kek, _ := newKEK(t)
			store := newStore(t)
			krs := []*keys.Keyring{newKeyring(t, keys.Config{KEK: kek, Store: store}), newKeyring(t, keys.Config{KEK: kek, Store: store})}
			for round := range 8 {
				scope := fmt.Sprintf("tenant:r/patient/%d", round)
				var wg sync.WaitGroup
				for g := range 8 {
					wg.Go(func() {
						kr := krs[g%2]
						for i := range 4 {
							kr.IndexKey(ctx, scope, "t", fmt.Sprint(g, "-", i))
							kr.EncryptionKey(ctx, scope)
						}
					})
				}
				_, err := krs[0].Destroy(ctx, scope)
				require.NoError(t, err)
				wg.Wait()
				fresh := newKeyring(t, keys.Config{KEK: kek, Store: store})
				requireShredded(t, fresh, scope)
				_, err = fresh.EncryptionKey(ctx, scope)
				require.ErrorIs(t, err, keys.ErrKeyDestroyed)
			}
		})
	}
}

// shredOnCreate is an Auditor that, the first time it sees a key created,
// destroys its scope: the Destroy lands between the key's store write and
// the keyring caching it.
type shredOnCreate struct {
	once sync.Once
	kr   *keys.Keyring
	err  error
	ran  bool
}

func (s *shredOnCreate) Audit(ctx context.Context, e keys.Event) error {
	if e.Op == keys.OpCreate && e.Outcome == keys.Success {
		s.once.Do(func() {
			_, s.err = s.kr.Destroy(ctx, e.Scope)
			s.ran = true
		})
	}
	return nil
}

// TestDestroyBeforeCreatedKeyIsCached: a key destroyed before the keyring
// that created it caches it is not cached: this keyring refuses it at once
// once Destroy returns.
func TestDestroyBeforeCreatedKeyIsCached(t *testing.T) {
	ctx := context.Background()
	scope := "tenant:a/patient/1"
	for name, create := range map[string]func(kr *keys.Keyring) error{
		"EncryptionKey": func(kr *keys.Keyring) error { _, err := kr.EncryptionKey(ctx, scope); return err },
		"CreateKeys":    func(kr *keys.Keyring) error { _, err := kr.CreateKeys(ctx, []string{scope}); return err },
		"Rotate":        func(kr *keys.Keyring) error { _, err := kr.Rotate(ctx, keys.DataKey(scope)); return err },
	} {
		t.Run(name, func(t *testing.T) {
			hook := &shredOnCreate{}
			kr := newKeyring(t, keys.Config{Auditor: hook})
			hook.kr = kr
			require.NoError(t, create(kr))
			require.True(t, hook.ran)
			require.NoError(t, hook.err)
			_, err := kr.DecryptionKey(ctx, scope, 1)
			assert.ErrorIs(t, err, keys.ErrKeyDestroyed, "a destroyed version served from the cache")
			_, err = kr.EncryptionKey(ctx, scope)
			assert.ErrorIs(t, err, keys.ErrKeyDestroyed, "a destroyed key still encrypts")
		})
	}
}

// TestTenantShredRefusesChildren: with Config.Parent, no key is created
// under a shredded tenant, even by a keyring that still holds its parent
// key; and a tenant shredded before it had a parent key (its patients
// still wrapped by the KEK, from before the hierarchy) takes its
// patients with it.
func TestTenantShredRefusesChildren(t *testing.T) {
	for name, newStore := range storesAndPlain() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			kek, _ := newKEK(t)
			store := newStore(t)

			// A tenant with a parent key, still cached by another keyring.
			kr := newKeyring(t, keys.Config{KEK: kek, Store: store, Parent: keys.TenantParent})
			holder := newKeyring(t, keys.Config{KEK: kek, Store: store, Parent: keys.TenantParent})
			sealAll(t, holder, "a", 2)
			_, err := kr.Destroy(ctx, "tenant:a")
			require.NoError(t, err)
			for _, k := range []*keys.Keyring{kr, holder} {
				_, err = k.EncryptionKey(ctx, patient("a", 99))
				assert.ErrorIs(t, err, keys.ErrKeyDestroyed, "new patient under a shredded tenant")
				_, err = k.IndexKey(ctx, patient("a", 0), "patients", "ssn")
				assert.ErrorIs(t, err, keys.ErrKeyDestroyed, "new key set of a patient of a shredded tenant")
				n, err := k.CreateKeys(ctx, []string{patient("a", 100)})
				require.NoError(t, err)
				assert.Zero(t, n, "CreateKeys leaves a scope under a shredded tenant alone")
			}
			for _, p := range []string{patient("a", 99), patient("a", 100)} {
				sets, err := kr.Status(ctx, p)
				require.NoError(t, err)
				assert.Empty(t, sets)
			}

			// A tenant whose patients the KEK wraps, and which has no
			// parent key yet: the hierarchy was just turned on.
			flat := newKeyring(t, keys.Config{KEK: kek, Store: store})
			cts := sealAll(t, flat, "x", 3)
			_, err = flat.EncryptionKey(ctx, "tenant:x")
			require.NoError(t, err)
			report, err := kr.Destroy(ctx, "tenant:x")
			require.NoError(t, err)
			assert.Equal(t, keys.DestroyReport{KeySets: 1, ChildKeySets: 3, Versions: 4}, report)
			c := compact(t, newKeyring(t, keys.Config{KEK: kek, Store: store}))
			for scope, ct := range cts {
				_, err := c.Decrypt(ctx, ct, binding(scope, "r"))
				assert.ErrorIs(t, err, keys.ErrKeyDestroyed, scope)
			}
			_, err = kr.EncryptionKey(ctx, patient("x", 99))
			assert.ErrorIs(t, err, keys.ErrKeyDestroyed, "new patient under a shredded tenant")
			sets, err := kr.Status(ctx, "tenant:x")
			require.NoError(t, err)
			for _, ks := range sets {
				assert.NotEqual(t, keys.ParentKeyName, ks.ID.Name, "no parent key is created in a shredded tenant")
			}

			// Shredding a patient does not read the store for children
			// of its own, and leaves its tenant alone.
			sealAll(t, kr, "y", 2)
			report, err = kr.Destroy(ctx, patient("y", 0))
			require.NoError(t, err)
			assert.Equal(t, keys.DestroyReport{KeySets: 1, Versions: 1}, report)
			_, err = kr.EncryptionKey(ctx, patient("y", 5))
			require.NoError(t, err)
		})
	}
}
