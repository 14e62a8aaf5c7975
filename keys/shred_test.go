package keys_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/bubble"
	"github.com/phicrypt/phicrypt/keys"
)

// sqliteFile opens a fresh SQLite database in WAL mode and returns it with
// its path.
func sqliteFile(t testing.TB) (*sql.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db, path
}

// storeFiles returns the bytes of every file of the SQLite database at
// path: the main file (its free pages and free space included), the
// write-ahead log and the shared-memory index.
func storeFiles(t testing.TB, path string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, name := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		b, err := os.ReadFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		out[filepath.Base(name)] = b
	}
	return out
}

// findIn names the files that hold secret, or any 16-byte window of it.
func findIn(files map[string][]byte, secret []byte) []string {
	var where []string
	for name, b := range files {
		for i := 0; i+16 <= len(secret); i += 8 {
			if bytes.Contains(b, secret[i:i+16]) {
				where = append(where, name)
				break
			}
		}
	}
	return where
}

// wrappedKeys returns the wrapped bytes of every version of the key sets
// of scope.
func wrappedKeys(t testing.TB, s keys.Store, scope string) map[string][]byte {
	t.Helper()
	sets, err := s.List(context.Background(), scope, keys.ID{}, 100)
	require.NoError(t, err)
	out := map[string][]byte{}
	for _, ks := range sets {
		for _, r := range ks.Versions {
			require.NotEmpty(t, r.Wrapped.Ciphertext)
			out[fmt.Sprintf("%s v%d", ks.ID.Name, r.Version)] = r.Wrapped.Ciphertext
		}
	}
	return out
}

// TestShredLeavesNoKeyBytesInSQLiteFiles: after a patient is shredded, no
// file of the SQLite key store (keys.db with its free pages and free
// space, keys.db-wal, keys.db-shm) holds any part of the wrapped data key
// or the wrapped index key, while a bystander's keys are still found (the
// search works). Without secure_delete, the old cells stay in the pages'
// free space; without the TRUNCATE checkpoint, in the write-ahead log.
func TestShredLeavesNoKeyBytesInSQLiteFiles(t *testing.T) {
	ctx := context.Background()
	db, path := sqliteFile(t)
	store, err := keys.NewSQLStore(ctx, db, keys.SQLite)
	require.NoError(t, err)
	kr := newKeyring(t, keys.Config{Store: store, ReserveBlock: 1})
	victim, bystander := "tenant:a/patient:42", "tenant:a/patient:43"
	for _, scope := range []string{victim, bystander} {
		// Each encryption reserves a block, rewriting the row (and its
		// wrapped key) each time: old copies land in free space.
		for range 5 {
			_, err := kr.EncryptionKey(ctx, scope)
			require.NoError(t, err)
		}
		_, err = kr.Rotate(ctx, keys.DataKey(scope))
		require.NoError(t, err)
		_, err = kr.IndexKey(ctx, scope, "patients", "ssn_index")
		require.NoError(t, err)
	}
	secrets := wrappedKeys(t, store, victim)
	require.Len(t, secrets, 3, "two data key versions and an index key")
	kept := wrappedKeys(t, store, bystander)
	for name, b := range secrets {
		require.NotEmpty(t, findIn(storeFiles(t, path), b), "%s is in the files before the shred", name)
	}

	var erased []string
	report, err := kr.Shred(ctx, victim, keys.ShredOptions{Erasers: []keys.IndexEraser{
		keys.IndexEraserFunc(func(_ context.Context, scope string) (int64, error) {
			erased = append(erased, scope)
			return 1, nil
		}),
	}})
	require.NoError(t, err)
	assert.Equal(t, keys.ShredReport{DestroyReport: keys.DestroyReport{KeySets: 2, Versions: 3}, IndexRowsErased: 2}, report)
	assert.Equal(t, []string{victim, victim}, erased, "erased before and after Destroy")

	files := storeFiles(t, path)
	require.Contains(t, files, "keys.db")
	for name, b := range secrets {
		assert.Empty(t, findIn(files, b), "%s of the shredded patient is left in these files", name)
	}
	for name, b := range kept {
		assert.NotEmpty(t, findIn(files, b), "the bystander's %s is still stored", name)
	}
	_, err = kr.DecryptionKey(ctx, victim, 1)
	assert.ErrorIs(t, err, keys.ErrKeyDestroyed)
}

// TestPurgeWaitsForReaders: a reader holding an old snapshot keeps the
// TRUNCATE checkpoint from completing. Destroy then destroys the keys,
// retries, and reports ErrPurgeIncomplete; the key bytes are still in the
// write-ahead log, and a Purge after the reader finishes erases them.
func TestPurgeWaitsForReaders(t *testing.T) {
	ctx := context.Background()
	db, path := sqliteFile(t)
	store, err := keys.NewSQLStore(ctx, db, keys.SQLite)
	require.NoError(t, err)
	kr := newKeyring(t, keys.Config{Store: store})
	victim := "patient:42"
	_, err = kr.EncryptionKey(ctx, victim)
	require.NoError(t, err)
	secret := wrappedKeys(t, store, victim)["data v1"]

	reader, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	require.NoError(t, err)
	var n int
	require.NoError(t, reader.QueryRowContext(ctx, "SELECT count(*) FROM phicrypt_keys").Scan(&n))

	start := time.Now()
	report, err := kr.Destroy(ctx, victim)
	assert.ErrorIs(t, err, keys.ErrPurgeIncomplete)
	assert.Equal(t, "purge-incomplete", keys.ErrorClass(err))
	assert.Equal(t, keys.DestroyReport{KeySets: 1, Versions: 1}, report, "the keys are destroyed all the same")
	assert.Less(t, time.Since(start), 30*time.Second, "the retries are bounded")
	_, err = kr.DecryptionKey(ctx, victim, 1)
	assert.ErrorIs(t, err, keys.ErrKeyDestroyed)
	assert.NotEmpty(t, findIn(storeFiles(t, path), secret), "the log still holds the key while the reader lives")

	require.NoError(t, reader.Rollback())
	require.NoError(t, store.Purge(ctx))
	assert.Empty(t, findIn(storeFiles(t, path), secret))
	_, err = kr.Destroy(ctx, victim)
	assert.NoError(t, err, "destroying again is a no-op that purges")
}

// TestShredOrder: the first erase runs before Destroy and its failure
// leaves the keys alive (the shred visibly did not happen); a failure of
// the second erase is reported after the keys are destroyed, and running
// Shred again completes it.
func TestShredOrder(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("database down")
	kr := newKeyring(t, keys.Config{})
	scope := "patient:7"
	_, err := kr.EncryptionKey(ctx, scope)
	require.NoError(t, err)

	var calls int
	fail := func(on ...int) keys.IndexEraser {
		return keys.IndexEraserFunc(func(ctx context.Context, s string) (int64, error) {
			calls++
			_, err := kr.DecryptionKey(ctx, s, 1)
			destroyed := errors.Is(err, keys.ErrKeyDestroyed)
			assert.Equal(t, calls%2 == 0, destroyed, "call %d: odd calls before Destroy, even after", calls)
			for _, c := range on {
				if c == calls {
					return 0, boom
				}
			}
			return 3, nil
		})
	}

	_, err = kr.Shred(ctx, scope, keys.ShredOptions{Erasers: []keys.IndexEraser{fail(1)}})
	require.ErrorIs(t, err, boom)
	_, err = kr.DecryptionKey(ctx, scope, 1)
	require.NoError(t, err, "a failed first erase destroys nothing")

	calls = 0
	report, err := kr.Shred(ctx, scope, keys.ShredOptions{Erasers: []keys.IndexEraser{fail(2)}})
	require.ErrorIs(t, err, boom)
	assert.Equal(t, 1, report.Versions)
	_, err = kr.DecryptionKey(ctx, scope, 1)
	require.ErrorIs(t, err, keys.ErrKeyDestroyed)

	// The retry: odd calls now also see the destroyed key.
	var retried int64
	report, err = kr.Shred(ctx, scope, keys.ShredOptions{Erasers: []keys.IndexEraser{keys.IndexEraserFunc(func(context.Context, string) (int64, error) {
		retried++
		return 0, nil
	})}})
	require.NoError(t, err)
	assert.Equal(t, int64(2), retried)
	assert.Equal(t, 0, report.Versions, "nothing left to destroy")

	_, err = kr.Shred(ctx, scope, keys.ShredOptions{Erasers: []keys.IndexEraser{nil}})
	assert.ErrorContains(t, err, "nil")
	_, err = kr.Shred(ctx, "phicrypt:audit", keys.ShredOptions{})
	assert.ErrorIs(t, err, keys.ErrReservedScope)
}

// usage is a UsageChecker with fixed counts.
func usage(m map[uint32]int64) keys.UsageChecker {
	return keys.UsageCheckerFunc(func(context.Context, keys.ID) (map[uint32]int64, error) { return m, nil })
}

// TestRetireRefusesVersionsInUse: Retire and DestroyVersion refuse, with
// an *InUseError naming the version and its rows, while the checker counts
// rows under a version they would retire, and a version that was active
// less than CacheMaxAge ago; they change nothing then, and succeed once
// nothing uses the version.
func TestRetireRefusesVersionsInUse(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		rec := &recorder{}
		store := keys.NewMemoryStore()
		kr := newKeyring(t, keys.Config{Store: store, CacheMaxAge: time.Minute, Auditor: rec})
		id := keys.DataKey("tenant:a")
		_, err := kr.EncryptionKey(ctx, id.Scope)
		require.NoError(t, err)
		_, err = kr.Rotate(ctx, id)
		require.NoError(t, err)
		_, err = kr.Rotate(ctx, id)
		require.NoError(t, err) // v1, v2 decrypt-only; v3 active

		err = kr.Retire(ctx, id, 3, usage(nil))
		assert.ErrorIs(t, err, keys.ErrStillInUse, "v2 was active a moment ago")
		assert.NotErrorAs(t, err, new(*keys.InUseError))
		advance(time.Minute + time.Second)

		err = kr.Retire(ctx, id, 3, usage(map[uint32]int64{1: 4, 2: 9, 3: 100}))
		var inUse *keys.InUseError
		require.ErrorAs(t, err, &inUse)
		assert.ErrorIs(t, err, keys.ErrStillInUse)
		assert.Equal(t, "in-use", keys.ErrorClass(err))
		assert.Equal(t, keys.InUseError{ID: id, Version: 1, Rows: 4}, *inUse, "the oldest version in use")
		assert.NotContains(t, err.Error(), "tenant:a", "errors never name the scope")
		_, err = kr.DecryptionKey(ctx, id.Scope, 1)
		assert.NoError(t, err, "nothing changed")

		err = kr.DestroyVersion(ctx, id, 2, usage(map[uint32]int64{1: 4, 2: 9}))
		require.ErrorAs(t, err, &inUse)
		assert.Equal(t, uint32(2), inUse.Version)
		assert.Equal(t, int64(9), inUse.Rows)
		_, err = kr.DecryptionKey(ctx, id.Scope, 2)
		assert.NoError(t, err, "nothing destroyed")
		assert.ErrorIs(t, kr.DestroyVersion(ctx, id, 3, usage(nil)), keys.ErrStillInUse, "the active version")

		assert.ErrorContains(t, kr.Retire(ctx, id, 2, nil), "UsageChecker", "no check, no retirement")
		boom := errors.New("table unreadable")
		assert.ErrorIs(t, kr.Retire(ctx, id, 2, keys.UsageCheckerFunc(func(context.Context, keys.ID) (map[uint32]int64, error) { return nil, boom })), boom)
		failures := rec.count(keys.OpMinDecryptVersion) + rec.count(keys.OpDestroy)

		require.NoError(t, kr.Retire(ctx, id, 2, usage(map[uint32]int64{1: 0, 2: 9})))
		_, err = kr.DecryptionKey(ctx, id.Scope, 1)
		assert.ErrorIs(t, err, keys.ErrKeyUnusable)
		require.NoError(t, kr.DestroyVersion(ctx, id, 1, usage(map[uint32]int64{2: 9})))
		_, err = kr.DecryptionKey(ctx, id.Scope, 1)
		assert.ErrorIs(t, err, keys.ErrKeyDestroyed)
		assert.Positive(t, failures, "refusals are audited")
		assert.ErrorIs(t, kr.Retire(ctx, keys.DataKey("phicrypt:audit"), 1, usage(nil)), keys.ErrReservedScope)
	})
}
