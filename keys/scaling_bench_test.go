package keys_test

import (
	"context"
	"database/sql"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
)

// The benchmarks of this file measure what docs/SCALING.md extrapolates
// from: per patient key, the KMS calls, store calls and time of creating
// it and of reading it cold, and the memory a cached key takes.

// callCountingStore counts the calls a keyring makes to its store.
type callCountingStore struct {
	keys.Store
	gets, updates, lists atomic.Int64
}

func (c *callCountingStore) Get(ctx context.Context, id keys.ID) (*keys.KeySet, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, id)
}

func (c *callCountingStore) Update(ctx context.Context, id keys.ID, fn func(ks *keys.KeySet) error) (*keys.KeySet, error) {
	c.updates.Add(1)
	return c.Store.Update(ctx, id, fn)
}

func (c *callCountingStore) List(ctx context.Context, scope string, after keys.ID, limit int) ([]*keys.KeySet, error) {
	c.lists.Add(1)
	return c.Store.List(ctx, scope, after, limit)
}

func patientScope(i int) string {
	return "tenant:" + strconv.Itoa(i%10) + "/patient/" + strconv.Itoa(i)
}

// BenchmarkPatientKeyCreate is a new patient's first encryption: the
// patient's data key is created, wrapped by the KEK and stored. It
// reports KMS calls and store calls per new patient and, for the SQL
// stores, the key tables' size per patient (PostgreSQL: the tables and
// their indexes; SQLite: the whole database file).
func BenchmarkPatientKeyCreate(b *testing.B) {
	ctx := context.Background()
	for _, name := range []string{"memory", "sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			kek, _ := newKEK(b)
			store := &callCountingStore{Store: stores()[name](b)}
			kr := newKeyring(b, keys.Config{KEK: kek, Store: store})
			i := 0
			for b.Loop() {
				if _, err := kr.EncryptionKey(ctx, patientScope(i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(kek.Calls())/float64(i), "kms-calls/op")
			b.ReportMetric(float64(store.gets.Load())/float64(i), "store-gets/op")
			b.ReportMetric(float64(store.updates.Load())/float64(i), "store-updates/op")
			if sqls, ok := store.Store.(*keys.SQLStore); ok {
				var size int64
				query := "SELECT pg_total_relation_size('phicrypt_keys') + pg_total_relation_size('phicrypt_key_sets')"
				if sqls.Dialect() == keys.SQLite {
					query = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
				}
				require.NoError(b, sqls.DB().QueryRowContext(ctx, query).Scan(&size))
				b.ReportMetric(float64(size)/float64(i), "store-B/patient")
			}
		})
	}
}

// BenchmarkPatientKeyColdRead reads patients whose keys are not cached: a
// store read and a KMS unwrap per patient.
func BenchmarkPatientKeyColdRead(b *testing.B) {
	ctx := context.Background()
	const pool = 2000
	for _, name := range []string{"memory", "sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			kek, _ := newKEK(b)
			inner := stores()[name](b)
			warm := newKeyring(b, keys.Config{KEK: kek, Store: inner})
			for i := range pool {
				_, err := warm.EncryptionKey(ctx, patientScope(i))
				require.NoError(b, err)
			}
			store := &callCountingStore{Store: inner}
			// No cache: every read is a miss, as for a patient not read
			// within CacheMaxAge.
			cold := newKeyring(b, keys.Config{KEK: kek, Store: store, CacheMaxAge: -1})
			before := kek.Calls()
			i := 0
			for b.Loop() {
				if _, err := cold.DecryptionKey(ctx, patientScope(i%pool), 1); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(kek.Calls()-before)/float64(i), "kms-calls/op")
			b.ReportMetric(float64(store.gets.Load())/float64(i), "store-gets/op")
		})
	}
}

// BenchmarkCachedKeyMemory fills a keyring's cache with the keys of
// 5,000 patients, for encryption and decryption as a replica serving them
// would, and reports the heap each patient adds.
func BenchmarkCachedKeyMemory(b *testing.B) {
	ctx := context.Background()
	const n = 5000
	kek, _ := newKEK(b)
	store := keys.NewMemoryStore()
	creator := newKeyring(b, keys.Config{KEK: kek, Store: store})
	for i := range n {
		_, err := creator.EncryptionKey(ctx, patientScope(i))
		require.NoError(b, err)
	}
	var perKey float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		kr := newKeyring(b, keys.Config{KEK: kek, Store: store, CacheMaxEntries: 2 * n})
		for i := range n {
			if _, err := kr.EncryptionKey(ctx, patientScope(i)); err != nil {
				b.Fatal(err)
			}
			if _, err := kr.DecryptionKey(ctx, patientScope(i), 1); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perKey = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(kr)
	}
	b.ReportMetric(perKey, "heap-B/patient")
}

// BenchmarkAuditLogAppend appends events to the tamper-evident audit log
// from 1 and 16 concurrent callers (group commit shares one transaction
// among the callers waiting), on SQLite and PostgreSQL, and reports events
// per second (the wall time of the appends alone).
func BenchmarkAuditLogAppend(b *testing.B) {
	ctx := context.Background()
	dbs := map[string]func(testing.TB) (*sql.DB, keys.Dialect){
		"sqlite":   func(t testing.TB) (*sql.DB, keys.Dialect) { return sqliteDB(t), keys.SQLite },
		"postgres": func(t testing.TB) (*sql.DB, keys.Dialect) { return postgresDB(t), keys.Postgres },
	}
	for _, name := range []string{"sqlite", "postgres"} {
		for _, callers := range []int{1, 16} {
			b.Run(name+"/callers="+strconv.Itoa(callers), func(b *testing.B) {
				db, d := dbs[name](b)
				kek, _ := newKEK(b)
				log, err := keys.NewAuditLog(ctx, db, d, kek)
				require.NoError(b, err)
				e := keys.Event{Op: keys.OpUse, Scope: "tenant:st-mary", Key: keys.DataKeyName, Version: 1, Use: "decrypt", Outcome: keys.Success}
				start := time.Now()
				var n atomic.Int64
				var wg sync.WaitGroup
				for c := range callers {
					k := b.N / callers
					if c < b.N%callers {
						k++
					}
					wg.Go(func() {
						for range k {
							if err := log.Audit(ctx, e); err != nil {
								b.Error(err)
								return
							}
							n.Add(1)
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "events/s")
			})
		}
	}
}
