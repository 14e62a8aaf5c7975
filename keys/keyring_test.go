package keys_test

import (
	"bytes"
	"context"
	"crypto/fips140"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/internal/bubble"
	"github.com/phicrypt/phicrypt/internal/testsvc"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
)

func binding(scope, record string) envelope.Binding {
	return envelope.Binding{Scope: scope, Table: "patients", Column: "ssn", RecordID: record}
}

func compact(t testing.TB, kr *keys.Keyring) *envelope.Compact {
	t.Helper()
	c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr})
	require.NoError(t, err)
	return c
}

func TestFirstUseCreatesOneVersion(t *testing.T) {
	ctx := context.Background()
	kek, _ := newKEK(t)
	store := keys.NewMemoryStore()
	kr := newKeyring(t, keys.Config{KEK: kek, Store: store})
	a, err := kr.EncryptionKey(ctx, "tenant:a")
	require.NoError(t, err)
	b, err := kr.EncryptionKey(ctx, "tenant:a")
	require.NoError(t, err)
	assert.Same(t, a, b)
	assert.Equal(t, uint32(1), a.Version())
	assert.Equal(t, int64(2), kek.Wraps(), "the data key and the store's metadata key")
	assert.Equal(t, int64(0), kek.Unwraps(), "the creating keyring keeps the keys it generated")

	ks, err := store.Get(ctx, keys.DataKey("tenant:a"))
	require.NoError(t, err)
	require.Len(t, ks.Versions, 1)
	assert.Equal(t, keys.Active, ks.Versions[0].State)
	assert.Equal(t, "local:keys-test", ks.Versions[0].Wrapped.KeyID)

	c := compact(t, kr)
	ct, err := c.Encrypt(ctx, []byte("999-12-3456"), binding("tenant:a", "r1"))
	require.NoError(t, err)
	pt, err := c.Decrypt(ctx, ct, binding("tenant:a", "r1"))
	require.NoError(t, err)
	assert.Equal(t, "999-12-3456", string(pt))

	other, err := kr.EncryptionKey(ctx, "tenant:b")
	require.NoError(t, err)
	assert.NotSame(t, a, other, "scopes have their own keys")
	_, err = c.Decrypt(ctx, ct, binding("tenant:b", "r1"))
	assert.ErrorIs(t, err, envelope.ErrDecrypt)
}

func TestSteadyStateMakesNoKMSOrStoreCall(t *testing.T) {
	ctx := context.Background()
	kek, _ := newKEK(t)
	kr := newKeyring(t, keys.Config{KEK: kek})
	c := compact(t, kr)
	ct, err := c.Encrypt(ctx, []byte("x"), binding("tenant:a", "r"))
	require.NoError(t, err)
	before := kek.Calls()
	for i := 0; i < 10000; i++ {
		_, err := c.Encrypt(ctx, []byte("x"), binding("tenant:a", "r"))
		require.NoError(t, err)
		_, err = c.Decrypt(ctx, ct, binding("tenant:a", "r"))
		require.NoError(t, err)
	}
	assert.Equal(t, before, kek.Calls(), "10,000 encryptions and decryptions, no KMS call")

	allocs := testing.AllocsPerRun(1000, func() {
		kr.EncryptionKey(ctx, "tenant:a")
		kr.DecryptionKey(ctx, "tenant:a", 1)
	})
	assert.Zero(t, allocs, "cache hits do not allocate")
}

// TestStampede: 1,000 goroutines on one cold data key cause exactly one
// unwrap, for decryption and for encryption.
func TestStampede(t *testing.T) {
	ctx := context.Background()
	kek, _ := newKEK(t)
	store := keys.NewMemoryStore()
	_, err := newKeyring(t, keys.Config{KEK: kek, Store: store}).EncryptionKey(ctx, "tenant:a")
	require.NoError(t, err)
	kek.SetDelay(20 * time.Millisecond) // widen the race window
	for _, use := range []string{"decrypt", "encrypt"} {
		cold := newKeyring(t, keys.Config{KEK: kek, Store: store})
		before := kek.Unwraps()
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < 1000; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				var err error
				if use == "decrypt" {
					_, err = cold.DecryptionKey(ctx, "tenant:a", 1)
				} else {
					_, err = cold.EncryptionKey(ctx, "tenant:a")
				}
				assert.NoError(t, err)
			}()
		}
		close(start)
		wg.Wait()
		assert.Equal(t, int64(2), kek.Unwraps()-before, "%s: 1,000 concurrent misses, one unwrap of the key and one of the metadata key", use)
	}
}

func TestBudgetRotatesAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	kek, _ := newKEK(t)
	store := keys.NewMemoryStore()
	cfg := keys.Config{KEK: kek, Store: store, MaxMessages: 10, ReserveBlock: 4}
	a, b := newKeyring(t, cfg), newKeyring(t, cfg)
	ca, cb := compact(t, a), compact(t, b)
	type sealed struct {
		ct []byte
		b  envelope.Binding
	}
	var all []sealed
	for i := 0; i < 50; i++ {
		c := ca
		if i%3 == 0 {
			c = cb
		}
		bd := binding("tenant:a", fmt.Sprint(i))
		ct, err := c.Encrypt(ctx, []byte(fmt.Sprint(i)), bd)
		require.NoError(t, err)
		all = append(all, sealed{ct, bd})
	}
	ks, err := store.Get(ctx, keys.DataKey("tenant:a"))
	require.NoError(t, err)
	perVersion := map[uint32]int{}
	for _, s := range all {
		info, err := envelope.Inspect(s.ct)
		require.NoError(t, err)
		perVersion[info.KeyVersion]++
	}
	for v, n := range perVersion {
		assert.LessOrEqual(t, n, 10, "version %d encrypted %d values, budget 10", v, n)
		assert.LessOrEqual(t, ks.Version(v).Reserved, uint64(10))
	}
	assert.GreaterOrEqual(t, len(ks.Versions), 5, "50 values at 10 per version")
	assert.Equal(t, 1, countState(ks, keys.Active))
	for _, s := range all {
		_, err := ca.Decrypt(ctx, s.ct, s.b)
		require.NoError(t, err, "old versions keep decrypting")
	}
}

func countState(ks *keys.KeySet, s keys.State) int {
	n := 0
	for _, r := range ks.Versions {
		if r.State == s {
			n++
		}
	}
	return n
}

func TestMaxKeyAge(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		kr := newKeyring(t, keys.Config{MaxKeyAge: time.Hour, CacheMaxAge: time.Minute})
		d1, err := kr.EncryptionKey(ctx, "tenant:a")
		require.NoError(t, err)
		advance(59 * time.Minute)
		d, err := kr.EncryptionKey(ctx, "tenant:a")
		require.NoError(t, err)
		assert.Equal(t, uint32(1), d.Version())
		advance(2 * time.Minute)
		d2, err := kr.EncryptionKey(ctx, "tenant:a")
		require.NoError(t, err)
		assert.Equal(t, uint32(2), d2.Version(), "an hour-old key is rotated when next loaded")
		_, err = kr.DecryptionKey(ctx, "tenant:a", d1.Version())
		assert.NoError(t, err)
	})
}

func TestRotate(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	kr := newKeyring(t, keys.Config{Auditor: rec})
	c := compact(t, kr)
	old, err := c.Encrypt(ctx, []byte("old"), binding("tenant:a", "r"))
	require.NoError(t, err)
	v, err := kr.Rotate(ctx, keys.DataKey("tenant:a"))
	require.NoError(t, err)
	assert.Equal(t, uint32(2), v)
	fresh, err := c.Encrypt(ctx, []byte("new"), binding("tenant:a", "r"))
	require.NoError(t, err)
	info, err := envelope.Inspect(fresh)
	require.NoError(t, err)
	assert.Equal(t, uint32(2), info.KeyVersion, "a rotation takes effect at once in this process")
	_, err = c.Decrypt(ctx, old, binding("tenant:a", "r"))
	assert.NoError(t, err)
	assert.Equal(t, 1, rec.count(keys.OpRotate))
	assert.Equal(t, 2, rec.count(keys.OpCreate))
}

// TestLifecycleMatrix tries every state change on a fresh version, and
// checks what each state allows.
func TestLifecycleMatrix(t *testing.T) {
	ctx := context.Background()
	all := []keys.State{keys.PreActive, keys.Active, keys.DecryptOnly, keys.Suspended, keys.Compromised, keys.Destroyed}
	// Paths from a new active version to each state.
	reach := map[keys.State][]keys.State{
		keys.Active:      nil,
		keys.DecryptOnly: {keys.DecryptOnly},
		keys.Suspended:   {keys.Suspended},
		keys.Compromised: {keys.Compromised},
		keys.Destroyed:   {keys.DecryptOnly, keys.Destroyed},
	}
	allowed := 0
	for from, path := range reach {
		for _, to := range all {
			t.Run(fmt.Sprintf("%v->%v", from, to), func(t *testing.T) {
				kr := newKeyring(t, keys.Config{})
				id := keys.DataKey("tenant:m")
				_, err := kr.EncryptionKey(ctx, id.Scope)
				require.NoError(t, err)
				for _, s := range path {
					require.NoError(t, kr.SetState(ctx, id, 1, s))
				}
				err = kr.SetState(ctx, id, 1, to)
				if keys.CanTransition(from, to) {
					allowed++
					assert.NoError(t, err)
				} else {
					assert.ErrorIs(t, err, keys.ErrInvalidTransition)
					var te *keys.TransitionError
					assert.ErrorAs(t, err, &te)
				}
			})
		}
	}
	assert.Equal(t, 9, allowed, "the transitions of SP 800-57 reachable from an active key")

	// What each state allows, for a version that is not the active one.
	uses := map[keys.State][2]error{ // decrypt, and encrypt once it is the only version
		keys.DecryptOnly: {nil, nil}, // encrypting rotates to a new version
		keys.Suspended:   {keys.ErrKeyUnusable, keys.ErrKeyUnusable},
		keys.Compromised: {keys.ErrKeyUnusable, nil}, // encrypting rotates away from it
		keys.Destroyed:   {keys.ErrKeyDestroyed, keys.ErrKeyDestroyed},
	}
	for state, want := range uses {
		kr := newKeyring(t, keys.Config{})
		id := keys.DataKey("tenant:u")
		_, err := kr.EncryptionKey(ctx, id.Scope)
		require.NoError(t, err)
		for _, s := range reach[state] {
			require.NoError(t, kr.SetState(ctx, id, 1, s))
		}
		_, err = kr.DecryptionKey(ctx, id.Scope, 1)
		assertErrorIs(t, err, want[0], "decrypt with a %v version", state)
		dek, err := kr.EncryptionKey(ctx, id.Scope)
		assertErrorIs(t, err, want[1], "encrypt when the only version is %v", state)
		if err == nil {
			assert.Equal(t, uint32(2), dek.Version(), "a new version takes over from a %v one", state)
		}
	}
}

func assertErrorIs(t *testing.T, err, want error, msg string, args ...any) {
	t.Helper()
	if want == nil {
		assert.NoError(t, err, append([]any{msg}, args...)...)
	} else {
		assert.ErrorIs(t, err, want, append([]any{msg}, args...)...)
	}
}

func TestCompromisedDecryptionNeedsOptIn(t *testing.T) {
	ctx := context.Background()
	store := keys.NewMemoryStore()
	kek, _ := newKEK(t)
	kr := newKeyring(t, keys.Config{KEK: kek, Store: store})
	_, err := kr.EncryptionKey(ctx, "tenant:c")
	require.NoError(t, err)
	require.NoError(t, kr.SetState(ctx, keys.DataKey("tenant:c"), 1, keys.Compromised))
	_, err = kr.DecryptionKey(ctx, "tenant:c", 1)
	assert.ErrorIs(t, err, keys.ErrKeyUnusable)
	rescue := newKeyring(t, keys.Config{KEK: kek, Store: store, AllowCompromisedDecryption: true})
	_, err = rescue.DecryptionKey(ctx, "tenant:c", 1)
	assert.NoError(t, err, "a rescue keyring may decrypt to re-encrypt")
}

func TestMinDecryptVersion(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t, keys.Config{})
	id := keys.DataKey("tenant:a")
	_, err := kr.EncryptionKey(ctx, id.Scope)
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, id)
	require.NoError(t, err)
	_, err = kr.DecryptionKey(ctx, id.Scope, 1)
	require.NoError(t, err)
	require.NoError(t, kr.SetMinDecryptVersion(ctx, id, 2))
	_, err = kr.DecryptionKey(ctx, id.Scope, 1)
	assert.ErrorIs(t, err, keys.ErrKeyUnusable, "takes effect at once, cached or not")
	_, err = kr.DecryptionKey(ctx, id.Scope, 2)
	assert.NoError(t, err)
	assert.ErrorIs(t, kr.SetMinDecryptVersion(ctx, id, 3), keys.ErrKeyNotFound)
	require.NoError(t, kr.SetMinDecryptVersion(ctx, id, 0))
	_, err = kr.DecryptionKey(ctx, id.Scope, 1)
	assert.NoError(t, err)
}

func TestDestroy(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		kek, _ := newKEK(t)
		store := keys.NewMemoryStore()
		rec := &recorder{}
		cfg := keys.Config{KEK: kek, Store: store, CacheMaxAge: time.Minute, Auditor: rec}
		kr, replica := newKeyring(t, cfg), newKeyring(t, cfg)
		c, cr := compact(t, kr), compact(t, replica)

		victim, bystander := binding("patient:42", "r"), binding("patient:43", "r")
		ctV, err := c.Encrypt(ctx, []byte("999-42-4242"), victim)
		require.NoError(t, err)
		_, err = kr.Rotate(ctx, keys.DataKey(victim.Scope))
		require.NoError(t, err)
		ctV2, err := c.Encrypt(ctx, []byte("new"), victim)
		require.NoError(t, err)
		ctB, err := c.Encrypt(ctx, []byte("999-43-4343"), bystander)
		require.NoError(t, err)
		_, err = kr.IndexKey(ctx, victim.Scope, "patients", "ssn")
		require.NoError(t, err)
		_, err = cr.Decrypt(ctx, ctV, victim) // the replica caches the key
		require.NoError(t, err)

		report, err := kr.Destroy(ctx, victim.Scope)
		require.NoError(t, err)
		assert.Equal(t, keys.DestroyReport{KeySets: 2, Versions: 3}, report)

		for _, ct := range [][]byte{ctV, ctV2} {
			_, err = c.Decrypt(ctx, ct, victim)
			assert.ErrorIs(t, err, keys.ErrKeyDestroyed, "at once in this process")
		}
		_, err = c.Encrypt(ctx, []byte("x"), victim)
		assert.ErrorIs(t, err, keys.ErrKeyDestroyed, "no new key for a shredded scope")
		_, err = kr.IndexKey(ctx, victim.Scope, "patients", "ssn")
		assert.ErrorIs(t, err, keys.ErrKeyDestroyed)
		_, err = c.Decrypt(ctx, ctB, bystander)
		assert.NoError(t, err, "other scopes are unaffected")

		_, err = cr.Decrypt(ctx, ctV, victim)
		assert.NoError(t, err, "another replica serves its cached key until CacheMaxAge")
		advance(time.Minute)
		_, err = cr.Decrypt(ctx, ctV, victim)
		assert.ErrorIs(t, err, keys.ErrKeyDestroyed, "and fails after")

		ks, err := store.Get(ctx, keys.DataKey(victim.Scope))
		require.NoError(t, err)
		for _, r := range ks.Versions {
			assert.Equal(t, keys.Destroyed, r.State)
			assert.Empty(t, r.Wrapped.Ciphertext, "no key material is left in the store")
		}
		assert.Equal(t, 3, rec.count(keys.OpDestroy))
		assert.Positive(t, rec.count(keys.OpDenied))
	})
}

func TestKMSDown(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		kek, _ := newKEK(t)
		store := keys.NewMemoryStore()
		cfg := keys.Config{KEK: kek, Store: store, CacheMaxAge: time.Minute}
		kr := newKeyring(t, cfg)
		c := compact(t, kr)
		ct, err := c.Encrypt(ctx, []byte("x"), binding("tenant:a", "r"))
		require.NoError(t, err)
		_, err = c.Encrypt(ctx, []byte("x"), binding("tenant:b", "r"))
		require.NoError(t, err)

		kek.SetDown(true)
		_, err = c.Encrypt(ctx, []byte("x"), binding("tenant:a", "r"))
		assert.NoError(t, err, "cached keys keep encrypting")
		_, err = c.Decrypt(ctx, ct, binding("tenant:a", "r"))
		assert.NoError(t, err, "cached keys keep decrypting")

		cold := compact(t, newKeyring(t, cfg))
		_, err = cold.Decrypt(ctx, ct, binding("tenant:a", "r"))
		assert.ErrorIs(t, err, kms.ErrUnavailable, "an uncached key fails with the unavailable error")
		assert.False(t, errors.Is(err, envelope.ErrDecrypt))
		_, err = c.Encrypt(ctx, []byte("x"), binding("tenant:new", "r"))
		assert.ErrorIs(t, err, kms.ErrUnavailable, "a new scope cannot get a key")

		// Within the caller's deadline, even if the KMS hangs.
		kek.SetDown(false)
		kek.SetDelay(time.Hour)
		dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = cold.Decrypt(dctx, ct, binding("tenant:a", "r"))
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Less(t, time.Since(start), 5*time.Second)
		kek.SetDelay(0)
		kek.SetDown(true)

		advance(time.Minute)
		_, err = c.Decrypt(ctx, ct, binding("tenant:a", "r"))
		assert.ErrorIs(t, err, kms.ErrUnavailable, "past CacheMaxAge the key must be unwrapped again")
	})
}

func TestIndexKeys(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t, keys.Config{})
	k1, err := kr.IndexKey(ctx, "tenant:a", "patients", "ssn")
	require.NoError(t, err)
	assert.Equal(t, uint32(1), k1.Version())
	again, err := kr.IndexKey(ctx, "tenant:a", "patients", "ssn")
	require.NoError(t, err)
	assert.Same(t, k1, again)
	mrn, err := kr.IndexKey(ctx, "tenant:a", "patients", "mrn")
	require.NoError(t, err)
	assert.NotEqual(t, k1.Sum(nil, []byte("x")), mrn.Sum(nil, []byte("x")), "each column has its own key")
	other, err := kr.IndexKey(ctx, "tenant:b", "patients", "ssn")
	require.NoError(t, err)
	assert.NotEqual(t, k1.Sum(nil, []byte("x")), other.Sum(nil, []byte("x")), "each scope has its own key")
	assert.Equal(t, k1.Sum(nil, []byte("x")), again.Sum(nil, []byte("x")), "deterministic")
	assert.Len(t, k1.Sum(nil, []byte("x")), 32)

	id, err := keys.IndexKeyID("tenant:a", "patients", "ssn")
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, id)
	require.NoError(t, err)
	live, err := kr.IndexKeys(ctx, "tenant:a", "patients", "ssn")
	require.NoError(t, err)
	require.Len(t, live, 2, "during index rotation both versions are searched")
	assert.Equal(t, uint32(2), live[0].Version())
	assert.Equal(t, uint32(1), live[1].Version())
	require.NoError(t, kr.SetMinDecryptVersion(ctx, id, 2))
	live, err = kr.IndexKeys(ctx, "tenant:a", "patients", "ssn")
	require.NoError(t, err)
	assert.Len(t, live, 1, "after reindexing, the old version is retired")

	for _, bad := range [][2]string{{"", "ssn"}, {"patients", ""}, {"a/b", "c"}, {"t", "c\x00"}} {
		_, err := kr.IndexKey(ctx, "tenant:a", bad[0], bad[1])
		assert.Error(t, err)
	}
}

func TestAuditEvents(t *testing.T) {
	ctx := keys.WithPurpose(keys.WithPrincipal(context.Background(), "dr.house"), "treatment")
	kek, _ := newKEK(t)
	store := keys.NewMemoryStore()
	rec := &recorder{}
	kr := newKeyring(t, keys.Config{KEK: kek, Store: store, Auditor: rec})
	_, err := kr.EncryptionKey(ctx, "tenant:a")
	require.NoError(t, err)
	cold := newKeyring(t, keys.Config{KEK: kek, Store: store, Auditor: rec})
	_, err = cold.DecryptionKey(ctx, "tenant:a", 1)
	require.NoError(t, err)
	assert.Equal(t, []keys.Op{keys.OpCreate, keys.OpUnwrap}, rec.ops())
	for _, e := range rec.events {
		assert.Equal(t, "dr.house", e.Principal)
		assert.Equal(t, "treatment", e.Purpose)
		assert.Equal(t, "tenant:a", e.Scope)
		assert.Equal(t, keys.Success, e.Outcome)
		assert.Equal(t, "local:keys-test", e.KEKID)
		assert.False(t, e.Time.IsZero())
	}

	// Fail-closed: a failing sink fails decryption of an uncached key.
	rec.fail = errors.New("disk full")
	failClosed := newKeyring(t, keys.Config{KEK: kek, Store: store, Auditor: rec, AuditFailClosed: true})
	_, err = failClosed.DecryptionKey(ctx, "tenant:a", 1)
	assert.ErrorIs(t, err, keys.ErrAudit)
	failOpen := newKeyring(t, keys.Config{KEK: kek, Store: store, Auditor: rec})
	_, err = failOpen.DecryptionKey(ctx, "tenant:a", 1)
	assert.NoError(t, err)

	// With AuditUses, every lookup is audited, and fail-closed applies.
	rec.fail = nil
	uses := newKeyring(t, keys.Config{KEK: kek, Store: store, Auditor: rec, AuditUses: true, AuditFailClosed: true})
	n := rec.count(keys.OpUse)
	for i := 0; i < 3; i++ {
		_, err = uses.DecryptionKey(ctx, "tenant:a", 1)
		require.NoError(t, err)
	}
	assert.Equal(t, n+3, rec.count(keys.OpUse))
	rec.fail = errors.New("down")
	_, err = uses.DecryptionKey(ctx, "tenant:a", 1)
	assert.ErrorIs(t, err, keys.ErrAudit, "a cached key too, when every use is audited")
}

// TestConcurrentLifecycle mixes encryption, decryption, rotation, cache
// eviction and destruction over 64 goroutines; run it with -race.
func TestConcurrentLifecycle(t *testing.T) {
	ctx := context.Background()
	kek, _ := newKEK(t)
	store := keys.NewMemoryStore()
	kr := newKeyring(t, keys.Config{KEK: kek, Store: store, CacheMaxEntries: 8, MaxMessages: 50, ReserveBlock: 7})
	c := compact(t, kr)
	scopes := []string{"t:0", "t:1", "t:2", "t:3", "t:4", "t:5"}
	var wg sync.WaitGroup
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := 0; i < 60; i++ {
				scope := scopes[r.IntN(len(scopes))]
				b := binding(scope, fmt.Sprint(g))
				switch op := r.IntN(20); {
				case op == 0:
					_, err := kr.Rotate(ctx, keys.DataKey(scope))
					if err != nil && !errors.Is(err, keys.ErrKeyDestroyed) {
						t.Errorf("rotate: %v", err)
					}
				case op == 1 && scope == "t:5":
					if _, err := kr.Destroy(ctx, scope); err != nil {
						t.Errorf("destroy: %v", err)
					}
				default:
					ct, err := c.Encrypt(ctx, []byte("v"), b)
					if errors.Is(err, keys.ErrKeyDestroyed) {
						continue
					}
					if err != nil {
						t.Errorf("encrypt: %v", err)
						continue
					}
					if _, err := c.Decrypt(ctx, ct, b); err != nil && !errors.Is(err, keys.ErrKeyDestroyed) {
						t.Errorf("decrypt: %v", err)
					}
				}
			}
		}(g)
	}
	wg.Wait()
	for _, s := range scopes {
		ks, err := store.Get(ctx, keys.DataKey(s))
		if errors.Is(err, keys.ErrKeyNotFound) {
			continue
		}
		require.NoError(t, err)
		assert.LessOrEqual(t, countState(ks, keys.Active), 1)
		for _, r := range ks.Versions {
			assert.LessOrEqual(t, r.Reserved, uint64(50))
		}
	}
}

func TestConfigErrors(t *testing.T) {
	kek, _ := newKEK(t)
	_, err := keys.New(keys.Config{})
	assert.Error(t, err)
	_, err = keys.New(keys.Config{KEK: kek})
	assert.Error(t, err)
	_, err = keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore(), MaxMessages: keys.MaxMessages + 1})
	assert.Error(t, err)
	_, err = keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore(), Suite: 99})
	assert.Error(t, err)
}

// TestReplicasOnPostgres runs two keyrings, each with its own connection
// pool to one PostgreSQL database, as two replicas of a service.
func TestReplicasOnPostgres(t *testing.T) {
	ctx := context.Background()
	dsn := testsvc.SharedPostgres(t).CreateDatabase(t, dbName(t))
	kek, _ := newKEK(t)
	replica := func() (*keys.Keyring, *keys.SQLStore) {
		s, err := keys.NewSQLStore(ctx, openPostgres(t, dsn), keys.Postgres)
		require.NoError(t, err)
		return newKeyring(t, keys.Config{KEK: kek, Store: s, CacheMaxAge: time.Second, MaxMessages: 1000, ReserveBlock: 100}), s
	}
	a, store := replica()
	b, _ := replica()

	// Both create the first key of many scopes at the same moment.
	var wg sync.WaitGroup
	got := make([][2]*envelope.DEK, 20)
	for i := range got {
		for r, kr := range []*keys.Keyring{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := kr.EncryptionKey(ctx, fmt.Sprint("tenant:", i))
				assert.NoError(t, err)
				got[i][r] = d
			}()
		}
	}
	wg.Wait()
	for i := range got {
		ks, err := store.Get(ctx, keys.DataKey(fmt.Sprint("tenant:", i)))
		require.NoError(t, err)
		assert.Len(t, ks.Versions, 1, "one version however the race went")
		assert.Equal(t, uint32(1), got[i][0].Version())
		assert.Equal(t, uint32(1), got[i][1].Version())
	}

	// What one replica encrypts, the other decrypts.
	ca, cb := compact(t, a), compact(t, b)
	ct, err := ca.Encrypt(ctx, []byte("999-12-3456"), binding("tenant:0", "r"))
	require.NoError(t, err)
	pt, err := cb.Decrypt(ctx, ct, binding("tenant:0", "r"))
	require.NoError(t, err)
	assert.Equal(t, "999-12-3456", string(pt))

	// A rotation on one is seen by the other once its cache expires. (On
	// the real clock: a synctest bubble cannot hold the pools' network
	// connections. The memory-store tests check the expiry exactly.)
	_, err = a.Rotate(ctx, keys.DataKey("tenant:0"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		d, err := b.EncryptionKey(ctx, "tenant:0")
		return err == nil && d.Version() == 2
	}, 30*time.Second, 20*time.Millisecond)

	// The budget holds across replicas.
	for i := 0; i < 1500; i++ {
		kr := a
		if i%2 == 1 {
			kr = b
		}
		_, err := kr.EncryptionKey(ctx, "tenant:1")
		require.NoError(t, err)
	}
	ks, err := store.Get(ctx, keys.DataKey("tenant:1"))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, len(ks.Versions), 2)
	for _, r := range ks.Versions {
		assert.LessOrEqual(t, r.Reserved, uint64(1000))
	}
}

func TestDeterministicKeys(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t, keys.Config{})
	det, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr.Deterministic(), Encoding: envelope.Text})
	require.NoError(t, err)
	b := envelope.Binding{Scope: "tenant:a", Table: "patients", Column: "email"}
	a1, err := det.Encrypt(ctx, []byte("lemuel@example.org"), b)
	if fips140.Enabled() {
		assert.ErrorIs(t, err, envelope.ErrNotApproved)
		return
	}
	require.NoError(t, err)
	a2, err := det.Encrypt(ctx, []byte("lemuel@example.org"), b)
	require.NoError(t, err)
	assert.Equal(t, a1, a2, "deterministic: equal plaintexts, equal ciphertexts")
	info, err := envelope.Inspect(a1)
	require.NoError(t, err)
	assert.Equal(t, envelope.AESSIV, info.Suite)
	pt, err := det.Decrypt(ctx, a1, b)
	require.NoError(t, err)
	assert.Equal(t, "lemuel@example.org", string(pt))

	// Its own key set, apart from the randomized data key.
	_, err = kr.EncryptionKey(ctx, "tenant:a")
	require.NoError(t, err)
	sets, err := kr.Status(ctx, "tenant:a")
	require.NoError(t, err)
	require.Len(t, sets, 2)
	assert.Equal(t, keys.DeterministicKeyName, sets[1].ID.Name)
	assert.Equal(t, envelope.AESSIV, sets[1].Versions[0].Suite)
}

func TestActiveVersion(t *testing.T) {
	ctx := context.Background()
	store := keys.NewMemoryStore()
	kek, _ := newKEK(t)
	kr := newKeyring(t, keys.Config{KEK: kek, Store: store})
	id := keys.DataKey("tenant:a")
	v, err := kr.ActiveVersion(ctx, id)
	require.NoError(t, err)
	assert.Zero(t, v, "no key yet, and none is created")
	_, err = store.Get(ctx, id)
	assert.ErrorIs(t, err, keys.ErrKeyNotFound)
	_, err = kr.EncryptionKey(ctx, id.Scope)
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, id)
	require.NoError(t, err)
	v, err = kr.ActiveVersion(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, uint32(2), v)
	other := newKeyring(t, keys.Config{KEK: kek, Store: store})
	v, err = other.ActiveVersion(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, uint32(2), v, "read from the store on a miss")
}

func TestSlogAuditor(t *testing.T) {
	var buf bytes.Buffer
	a := &keys.SlogAuditor{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	at := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	require.NoError(t, a.Audit(context.Background(), keys.Event{Time: at, Op: keys.OpDestroy, Scope: "patient:1", Key: "data", Version: 3,
		From: keys.DecryptOnly, To: keys.Destroyed, Principal: "ops", Outcome: keys.Success}))
	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
	assert.Equal(t, "2026-11-29T08:00:00Z", rec["time"], "the record's time is the event's")
	assert.Equal(t, "destroy", rec["op"])
	assert.Equal(t, "patient:1", rec["scope"])
	assert.Equal(t, float64(3), rec["version"])
	assert.Equal(t, "decrypt-only", rec["from"])
	assert.Equal(t, "destroyed", rec["to"])
	assert.Equal(t, "ops", rec["principal"])
	assert.Equal(t, 1, strings.Count(buf.String(), `"time"`))

	buf.Reset()
	quiet := &keys.SlogAuditor{Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	require.NoError(t, quiet.Audit(context.Background(), keys.Event{Time: at, Op: keys.OpUse}))
	assert.Zero(t, buf.Len(), "below the handler's level nothing is written")
}

// TestLongestIDsFitTheKMS checks that the longest scope envelope accepts,
// with the longest index names, still fits the KMS's associated data.
func TestLongestIDsFitTheKMS(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t, keys.Config{})
	scope := strings.Repeat("s", envelope.MaxScopeSize)
	name := strings.Repeat("n", 256)
	_, err := kr.EncryptionKey(ctx, scope)
	require.NoError(t, err)
	_, err = kr.IndexKey(ctx, scope, name, name)
	require.NoError(t, err)

	for _, bad := range [][2]string{{"", "c"}, {"t", ""}, {"a/b", "c"}, {"t", "c\x00"}, {name + "n", "c"}} {
		_, err := keys.IndexKeyName(bad[0], bad[1])
		assert.ErrorIs(t, err, keys.ErrInvalidID, "%q", bad)
		_, err = kr.IndexKey(ctx, "s", bad[0], bad[1])
		assert.ErrorIs(t, err, keys.ErrInvalidID, "%q", bad)
	}
}

// TestWrappedKeyCopiedToAnotherScope checks that a database writer who
// copies one tenant's wrapped data key into another tenant's row, or into
// another version, gets a refusal, never the first tenant's key: the
// metadata MAC refuses the changed row, and behind it the wrapped key's
// AAD (TestWrapAADBindsIdentity) would refuse the unwrap.
func TestWrappedKeyCopiedToAnotherScope(t *testing.T) {
	ctx := context.Background()
	store := keys.NewMemoryStore()
	kr := newKeyring(t, keys.Config{Store: store, CacheMaxAge: -1})
	a, b := keys.DataKey("tenant:a"), keys.DataKey("tenant:b")
	_, err := kr.EncryptionKey(ctx, a.Scope)
	require.NoError(t, err)
	_, err = kr.EncryptionKey(ctx, b.Scope)
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, a)
	require.NoError(t, err)
	ksA, err := store.Get(ctx, a)
	require.NoError(t, err)

	// Into another scope.
	_, err = store.Update(ctx, b, func(ks *keys.KeySet) error {
		ks.Versions[0].Wrapped = ksA.Versions[0].Wrapped
		return nil
	})
	require.NoError(t, err)
	_, err = kr.DecryptionKey(ctx, b.Scope, 1)
	assert.ErrorIs(t, err, keys.ErrMetadataTampered)

	// Into another version of the same scope.
	_, err = store.Update(ctx, a, func(ks *keys.KeySet) error {
		ks.Versions[1].Wrapped = ksA.Versions[0].Wrapped
		return nil
	})
	require.NoError(t, err)
	_, err = kr.DecryptionKey(ctx, a.Scope, 2)
	assert.ErrorIs(t, err, keys.ErrMetadataTampered)
}

// TestEncryptionKeys: EncryptionKeys takes n messages of the budget at
// once, and audits n uses with AuditUses, as n EncryptionKey calls would.
func TestEncryptionKeys(t *testing.T) {
	ctx := context.Background()
	store := keys.NewMemoryStore()
	rec := &recorder{}
	kr := newKeyring(t, keys.Config{Store: store, MaxMessages: 25, ReserveBlock: 4, Auditor: rec, AuditUses: true})
	first, err := kr.EncryptionKeys(ctx, "tenant:a", 10)
	require.NoError(t, err)
	assert.Equal(t, uint32(1), first.Version())
	assert.Equal(t, 10, rec.count(keys.OpUse), "one use per value")
	second, err := kr.EncryptionKeys(ctx, "tenant:a", 10)
	require.NoError(t, err)
	assert.Equal(t, uint32(1), second.Version(), "20 of 25 messages taken")
	third, err := kr.EncryptionKeys(ctx, "tenant:a", 10)
	require.NoError(t, err)
	assert.Equal(t, uint32(2), third.Version(), "the budget of version 1 is spent")

	_, err = kr.EncryptionKeys(ctx, "tenant:a", 0)
	assert.ErrorIs(t, err, errors.ErrUnsupported)
	_, err = kr.EncryptionKeys(ctx, "", 1)
	assert.ErrorIs(t, err, keys.ErrInvalidID)
}
