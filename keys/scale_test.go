package keys_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/kmstest"
)

// scaleSize returns the number of patients of the scale test, which runs
// only with PHICRYPT_SCALE=1 (PHICRYPT_SCALE_PATIENTS sets the size,
// 100,000 by default; the figure is 1,000,000):
//
//	PHICRYPT_SCALE=1 PHICRYPT_SCALE_PATIENTS=1000000 PHICRYPT_REQUIRE_INTEGRATION=1 \
//	    go test -count=1 -run TestScale -timeout 3h -v ./keys/
func scaleSize(t *testing.T) int {
	if os.Getenv("PHICRYPT_SCALE") != "1" {
		t.Skip("set PHICRYPT_SCALE=1 to run the scale test")
	}
	n := 100_000
	if s := os.Getenv("PHICRYPT_SCALE_PATIENTS"); s != "" {
		var err error
		n, err = strconv.Atoi(s)
		require.NoError(t, err)
	}
	return n
}

const scaleTenants = 10

func scalePatient(i int) string { return patient(strconv.Itoa(i%scaleTenants), i/scaleTenants) }

// heapInUse returns the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// cpuTime returns the CPU time this process has used (user and system):
// on a shared machine, wall times depend on the other processes; CPU
// time less so (the database server's is not counted).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// parallel runs fn(i) for i in [0, n) on workers goroutines and returns
// the first error.
func parallel(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || first.Load() != nil {
					return
				}
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return nil
}

// TestScale is the scale test of the key hierarchy on PostgreSQL: N
// patients in 10 tenants, created in batches; a fresh keyring reading
// 100,000 of them cold; a KEK rotation; one tenant shredded. It logs
// every figure.
func TestScale(t *testing.T) {
	n := scaleSize(t)
	ctx := context.Background()
	db := postgresDB(t)
	store, err := keys.NewSQLStore(ctx, db, keys.Postgres)
	require.NoError(t, err)
	kek, _ := newKEK(t)
	kr := newKeyring(t, keys.Config{KEK: kek, Store: store, Parent: keys.TenantParent})
	c := compact(t, kr)

	// Creation, in batches of 1,000 on 4 connections; each patient's
	// first value is encrypted right away (a cache hit). The values of
	// tenant 0 are kept to prove its shredding.
	const batch = 1000
	shredded := map[string][]byte{}
	var mu sync.Mutex
	start, cpu := time.Now(), cpuTime()
	err = parallel((n+batch-1)/batch, 4, func(b int) error {
		scopes := make([]string, 0, batch)
		for i := b * batch; i < min(n, (b+1)*batch); i++ {
			scopes = append(scopes, scalePatient(i))
		}
		if _, err := kr.CreateKeys(ctx, scopes); err != nil {
			return err
		}
		for i, scope := range scopes {
			ct, err := c.Encrypt(ctx, []byte("ssn of "+scope), binding(scope, "r"))
			if err != nil {
				return err
			}
			if (b*batch+i)%scaleTenants == 0 {
				mu.Lock()
				shredded[scope] = ct
				mu.Unlock()
			}
		}
		return nil
	})
	require.NoError(t, err)
	created := time.Since(start)
	t.Logf("create: %d patients in %d tenants, batches of %d: %v (CPU %v), %.0f keys/s, KMS calls %d (wraps %d)",
		n, scaleTenants, batch, created.Round(time.Millisecond), (cpuTime() - cpu).Round(time.Millisecond), float64(n)/created.Seconds(), kek.Calls(), kek.Wraps())
	// One wrap per parent key and the metadata key; each parent expires
	// from the cache once per CacheMaxAge and is then unwrapped again
	// (the target: one KMS call per parent per cache period).
	assert.LessOrEqual(t, kek.Wraps(), int64(scaleTenants+1))
	assert.LessOrEqual(t, kek.Calls()-kek.Wraps(), int64(scaleTenants+1)*int64(created/keys.DefaultCacheMaxAge))

	// A fresh keyring reads 100,000 distinct patients cold, at the
	// default cache size and at 1,000,000.
	reads := min(n, 100_000)
	for _, entries := range []int{0, 1_000_000} {
		cold := kmstest.Instrument(kek.KEK)
		before := heapInUse()
		fresh := newKeyring(t, keys.Config{KEK: cold, Store: store, CacheMaxEntries: entries})
		start, cpu := time.Now(), cpuTime()
		err := parallel(reads, 8, func(i int) error {
			_, err := fresh.DecryptionKey(ctx, scalePatient(i), 1)
			return err
		})
		require.NoError(t, err)
		took, cpuTook := time.Since(start), cpuTime()-cpu
		mem := heapInUse() - before
		runtime.KeepAlive(fresh)
		t.Logf("cold read, CacheMaxEntries %d: %d patients in %v (CPU %v, %.0f/s), KMS unwraps %d (1 metadata key + parents), keyring memory %.1f MiB",
			max(entries, keys.DefaultCacheMaxEntries), reads, took.Round(time.Millisecond), cpuTook.Round(time.Millisecond), float64(reads)/took.Seconds(), cold.Unwraps(), float64(mem)/(1<<20))
		assert.LessOrEqual(t, cold.Unwraps(), int64(scaleTenants+1))
	}

	// KEK rotation of the whole store.
	before := kek.Calls()
	start = time.Now()
	r, err := kr.Rewrap(ctx, keys.RewrapOptions{BatchSize: 1000})
	require.NoError(t, err)
	t.Logf("KEK rotation: %v, KMS calls %d, rewrapped by the KMS %d (parents and the metadata key), scanned %d",
		time.Since(start).Round(time.Millisecond), kek.Calls()-before, r.Rewrapped, r.Scanned)
	assert.Equal(t, scaleTenants+1, r.Rewrapped)

	// Shredding tenant 0: the parent key's destruction alone (a keyring
	// whose store fails after that one write), then the whole Destroy.
	flaky := &failingStore{Store: store}
	flaky.left.Store(1)
	start = time.Now()
	_, err = newKeyring(t, keys.Config{KEK: kek, Store: flaky}).Destroy(ctx, "tenant:0")
	require.ErrorIs(t, err, errStoreDown)
	t.Logf("shred tenant:0, its parent key (one store write): %v", time.Since(start).Round(time.Millisecond))
	_, err = newKeyring(t, keys.Config{KEK: kek, Store: store}).DecryptionKey(ctx, scalePatient(0), 1)
	require.ErrorIs(t, err, keys.ErrKeyDestroyed)
	start = time.Now()
	d, err := kr.Destroy(ctx, "tenant:0")
	require.NoError(t, err)
	t.Logf("shred tenant:0, the rest (its children's key sets, a scan of the store): %v, %d child key sets destroyed", time.Since(start).Round(time.Millisecond), d.ChildKeySets)
	assert.Equal(t, len(shredded), d.ChildKeySets)
	fc := compact(t, newKeyring(t, keys.Config{KEK: kek, Store: store}))
	opened := 0
	for scope, ct := range shredded {
		if _, err := fc.Decrypt(ctx, ct, binding(scope, "r")); err == nil {
			opened++
		} else {
			require.ErrorIs(t, err, keys.ErrKeyDestroyed)
		}
	}
	t.Logf("after the shred, %d of tenant:0's %d patients' values open", opened, len(shredded))
	assert.Zero(t, opened)
}

// BenchmarkFirstEncryption measures a new patient's first encryption:
// key creation and one value, per patient, on SQLite (and PostgreSQL with
// PHICRYPT_REQUIRE_INTEGRATION or a reachable service): flat (a KMS wrap
// and a store transaction per patient, as before the hierarchy), under a
// parent (local wrap, a transaction per patient), and under a parent in
// batches of 1,000 (CreateKeys).
func BenchmarkFirstEncryption(b *testing.B) {
	for _, store := range []string{"sqlite", "postgres"} {
		for _, mode := range []string{"flat", "parent", "parent-batch"} {
			b.Run(store+"/"+mode, func(b *testing.B) {
				ctx := context.Background()
				s := stores()[store](b)
				cfg := keys.Config{Store: s}
				if mode != "flat" {
					cfg.Parent = keys.TenantParent
				}
				kr := newKeyring(b, cfg)
				c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr})
				require.NoError(b, err)
				var seq atomic.Int64
				cpu := cpuTime()
				for b.Loop() {
					const batch = 1000
					scopes := make([]string, batch)
					for i := range scopes {
						scopes[i] = fmt.Sprintf("tenant:t/patient/%d", seq.Add(1))
					}
					if mode == "parent-batch" {
						_, err := kr.CreateKeys(ctx, scopes)
						require.NoError(b, err)
					}
					for _, scope := range scopes {
						_, err := c.Encrypt(ctx, []byte("123-45-6789"), binding(scope, "r"))
						require.NoError(b, err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*1000), "µs/patient")
				// The process's CPU time (SQLite runs in it), less subject
				// to the other processes of a shared machine.
				b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N*1000), "cpu-µs/patient")
			})
		}
	}
}
