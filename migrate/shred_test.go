package migrate_test

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

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
	"github.com/phicrypt/phicrypt/migrate"
)

// TestShredErasesIndexValues: Shred with the table's Eraser sets the
// blind index columns of the shredded scope's rows to NULL and leaves the
// other scopes' rows searchable; the shredded rows no longer decrypt.
func TestShredErasesIndexValues(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, k, 300)
			_, err := migrate.Run(ctx, e.config("enc", migrate.Encrypt))
			require.NoError(t, err)
			count := func(where string) (n int64) {
				require.NoError(t, e.db.QueryRow("SELECT count(*) FROM patients WHERE "+where).Scan(&n))
				return n
			}
			victimRows := count("tenant_id = 'tenant:1'")
			require.Positive(t, victimRows)
			require.Equal(t, int64(300), count("ssn_index IS NOT NULL AND name_dob IS NOT NULL"))

			eraser := &migrate.Eraser{DB: e.db, Dialect: e.dialect, Spec: spec}
			report, err := e.keyring.Shred(ctx, "tenant:1", keys.ShredOptions{Erasers: []keys.IndexEraser{eraser}})
			require.NoError(t, err)
			assert.Equal(t, victimRows, report.IndexRowsErased, "each row once: the second pass finds nothing left")
			assert.Equal(t, 3, report.KeySets, "the data key and two index keys")

			assert.Zero(t, count("tenant_id = 'tenant:1' AND (ssn_index IS NOT NULL OR name_dob IS NOT NULL)"))
			assert.Equal(t, 300-victimRows, count("ssn_index IS NOT NULL AND name_dob IS NOT NULL"), "other scopes keep their indexes")
			v, err := migrate.Verify(ctx, migrate.VerifyConfig{DB: e.db, Dialect: e.dialect, Spec: spec, Codec: e.codec, Scope: "tenant:1"})
			require.NoError(t, err)
			assert.Equal(t, victimRows, v.Rows)
			assert.Equal(t, map[string]int64{"destroyed": victimRows}, v.Undecryptable)

			n, err := eraser.EraseIndexes(ctx, "tenant:1")
			require.NoError(t, err)
			assert.Zero(t, n, "idempotent")
			fixed := spec
			fixed.ScopeColumn, fixed.Scope = "", "tenant:2"
			n, err = (&migrate.Eraser{DB: e.db, Dialect: e.dialect, Spec: fixed}).EraseIndexes(ctx, "tenant:0")
			require.NoError(t, err)
			assert.Zero(t, n, "a table of another fixed scope is left alone")
			_, err = eraser.EraseIndexes(ctx, "")
			assert.ErrorIs(t, err, keys.ErrInvalidID)
			bad := spec
			bad.Table = "patients; DROP TABLE patients"
			_, err = (&migrate.Eraser{DB: e.db, Dialect: e.dialect, Spec: bad}).EraseIndexes(ctx, "tenant:0")
			assert.ErrorIs(t, err, migrate.ErrSpec)
		})
	}
}

// noteSpec is a table whose blind index is long enough to search for its
// bytes in the database files.
var noteSpec = migrate.Spec{
	Table: "notes", ID: "id", ScopeColumn: "patient",
	Columns: []migrate.Column{{Name: "ssn", Type: "string"}},
	Indexes: []migrate.Index{{Column: "ssn_index", Of: []string{"ssn"}, Normalize: "digits", Bits: 64}},
}

// TestShredLeavesNoIndexBytesInSQLiteFiles: after a patient is shredded,
// neither the application's database files (app.db with its free space,
// -wal, -shm) hold the patient's blind index values, nor the key store's
// files the patient's wrapped data and index keys; the bystander's are
// still found.
func TestShredLeavesNoIndexBytesInSQLiteFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func(name string) (*sql.DB, string) {
		path := filepath.Join(dir, name)
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		return db, path
	}
	app, appPath := open("app.db")
	keyDB, keyPath := open("keys.db")
	kekPath := filepath.Join(dir, "kek.json")
	kek, err := local.Create(kekPath, local.Options{KeyID: "local:shred-test"})
	require.NoError(t, err)
	store, err := keys.NewSQLStore(ctx, keyDB, keys.SQLite)
	require.NoError(t, err)
	kr, err := keys.New(keys.Config{KEK: kek, Store: store})
	require.NoError(t, err)
	// A 64-bit index, so that its bytes can be searched for in the files:
	// far more than the blind index planner allows for any real table.
	codec, err := fields.NewCodec(fields.Config{Keyring: kr, InsecureSkipIndexPlanner: true})
	require.NoError(t, err)
	_, err = app.Exec("CREATE TABLE notes (id TEXT PRIMARY KEY, patient TEXT NOT NULL, ssn TEXT, ssn_index BLOB)")
	require.NoError(t, err)
	for i := range 40 {
		_, err := app.Exec("INSERT INTO notes (id, patient, ssn) VALUES (?, ?, ?)", fmt.Sprintf("n%03d", i), fmt.Sprintf("patient:%d", i%2), fmt.Sprintf("999-00-%04d", i))
		require.NoError(t, err)
	}
	_, err = migrate.Run(ctx, migrate.Config{DB: app, Dialect: keys.SQLite, Codec: codec, Keyring: kr, Job: "enc", Kind: migrate.Encrypt, Spec: noteSpec})
	require.NoError(t, err)

	indexValues := func(patient string) [][]byte {
		rows, err := app.Query("SELECT ssn_index FROM notes WHERE patient = ? AND ssn_index IS NOT NULL", patient)
		require.NoError(t, err)
		defer rows.Close()
		var out [][]byte
		for rows.Next() {
			var b []byte
			require.NoError(t, rows.Scan(&b))
			require.GreaterOrEqual(t, len(b), 9)
			out = append(out, b)
		}
		return out
	}
	wrapped := func(scope string) [][]byte {
		sets, err := store.List(ctx, scope, keys.ID{}, 10)
		require.NoError(t, err)
		var out [][]byte
		for _, ks := range sets {
			for _, r := range ks.Versions {
				out = append(out, r.Wrapped.Ciphertext)
			}
		}
		return out
	}
	victimIndexes, bystanderIndexes := indexValues("patient:0"), indexValues("patient:1")
	require.Len(t, victimIndexes, 20)
	victimKeys, bystanderKeys := wrapped("patient:0"), wrapped("patient:1")
	require.Len(t, victimKeys, 2, "a data key and an index key")

	// The shred runs in another process: its connections have only the
	// settings the eraser gives them.
	shredder, _ := open("app.db")
	_, err = kr.Shred(ctx, "patient:0", keys.ShredOptions{Erasers: []keys.IndexEraser{&migrate.Eraser{DB: shredder, Dialect: keys.SQLite, Spec: noteSpec}}})
	require.NoError(t, err)

	found := func(path string, secret []byte) []string { return filesHolding(t, path, secret) }
	for i, v := range victimIndexes {
		assert.Empty(t, found(appPath, v), "index value %d of the shredded patient", i)
	}
	for i, v := range victimKeys {
		assert.Empty(t, found(keyPath, v), "wrapped key %d of the shredded patient", i)
	}
	for _, v := range bystanderIndexes {
		assert.NotEmpty(t, found(appPath, v), "the bystander's index values are still there")
	}
	for _, v := range bystanderKeys {
		assert.NotEmpty(t, found(keyPath, v), "the bystander's keys are still there")
	}
}

// filesHolding returns which of a SQLite database's files (the main file,
// -wal and -shm) hold secret anywhere, free space included.
func filesHolding(t *testing.T, path string, secret []byte) []string {
	var where []string
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		b, err := os.ReadFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		if bytes.Contains(b, secret) {
			where = append(where, filepath.Base(name))
		}
	}
	return where
}

// TestEncryptLeavesNoPlaintextInSQLiteFiles: once an Encrypt job on a
// SQLite table in WAL mode returns without error, no file of the database
// holds a value it encrypted, though the application kept its connections
// open (no close-time checkpoint) and wrote the plaintext rows moments
// before (their frames were still in the write-ahead log). A reader
// holding an older snapshot keeps the final checkpoint from completing:
// Run then reports ErrCheckpointIncomplete, and running the finished job
// again once the reader is done completes it.
func TestEncryptLeavesNoPlaintextInSQLiteFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	app, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	require.NoError(t, err)
	t.Cleanup(func() { app.Close() })
	kek, err := local.Create(filepath.Join(dir, "kek.json"), local.Options{KeyID: "local:plaintext-test"})
	require.NoError(t, err)
	store, err := keys.NewSQLStore(ctx, app, keys.SQLite)
	require.NoError(t, err)
	kr, err := keys.New(keys.Config{KEK: kek, Store: store})
	require.NoError(t, err)
	codec, err := fields.NewCodec(fields.Config{Keyring: kr})
	require.NoError(t, err)
	_, err = app.Exec("CREATE TABLE notes (id TEXT PRIMARY KEY, patient TEXT NOT NULL, ssn TEXT)")
	require.NoError(t, err)
	// An SQL index holds a second copy of each value.
	_, err = app.Exec("CREATE INDEX notes_ssn ON notes (ssn)")
	require.NoError(t, err)
	var ssns [][]byte
	for i := range 40 {
		ssn := fmt.Sprintf("999-00-%04d", 7000+i)
		ssns = append(ssns, []byte(ssn))
		_, err := app.Exec("INSERT INTO notes (id, patient, ssn) VALUES (?, ?, ?)", fmt.Sprintf("n%03d", i), fmt.Sprintf("patient:%d", i%2), ssn)
		require.NoError(t, err)
	}
	require.NotEmpty(t, filesHolding(t, path, ssns[0]), "the check finds plaintext where it is")

	reader, err := app.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	require.NoError(t, err)
	var n int
	require.NoError(t, reader.QueryRowContext(ctx, "SELECT count(*) FROM notes").Scan(&n))
	cfg := migrate.Config{DB: app, Dialect: keys.SQLite, Codec: codec, Keyring: kr, Job: "enc", Kind: migrate.Encrypt,
		Spec: migrate.Spec{Table: "notes", ID: "id", ScopeColumn: "patient", Columns: noteSpec.Columns}}
	report, err := migrate.Run(ctx, cfg)
	require.ErrorIs(t, err, migrate.ErrCheckpointIncomplete)
	assert.EqualValues(t, 40, report.Written, "the rows are encrypted all the same")
	assert.NotEmpty(t, filesHolding(t, path, ssns[0]), "the log still holds plaintext while the reader lives")

	require.NoError(t, reader.Rollback())
	report, err = migrate.Run(ctx, cfg)
	require.NoError(t, err)
	assert.Zero(t, report.Written, "the finished job only checkpoints")
	var plain int
	require.NoError(t, app.QueryRow("SELECT count(*) FROM notes WHERE ssn LIKE '999-%'").Scan(&plain))
	require.Zero(t, plain, "every value is encrypted")
	for _, ssn := range ssns {
		assert.Empty(t, filesHolding(t, path, ssn), "plaintext %s", ssn)
	}
}

// TestUsageGuardsRetirement: with migrate.Usage as the check, Retire and
// DestroyVersion refuse a version that rows of the scope still use,
// naming the version and the row count, and succeed once the table is
// re-encrypted; other scopes' rows do not count.
func TestUsageGuardsRetirement(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, kinds[0], 300)
	_, err := migrate.Run(ctx, e.config("enc", migrate.Encrypt))
	require.NoError(t, err)
	var rows int64
	require.NoError(t, e.db.QueryRow("SELECT count(*) FROM patients WHERE tenant_id = 'tenant:0'").Scan(&rows))

	// A keyring whose replicas forget keys within a millisecond, so the
	// test need not wait out CacheMaxAge after the rotation.
	kek, err := local.New(local.Config{Path: e.kekPath})
	require.NoError(t, err)
	store, err := keys.NewSQLStore(ctx, e.db, e.dialect)
	require.NoError(t, err)
	kr, err := keys.New(keys.Config{KEK: kek, Store: store, CacheMaxAge: time.Millisecond})
	require.NoError(t, err)
	id := keys.DataKey("tenant:0")
	_, err = e.keyring.Rotate(ctx, id)
	require.NoError(t, err)
	time.Sleep(5 * time.Millisecond)

	usage := &migrate.Usage{DB: e.db, Dialect: e.dialect, Specs: []migrate.Spec{spec}}
	got, err := usage.KeyUsage(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, map[uint32]int64{1: 4 * rows}, got, "four encrypted columns per row, this scope only")
	ixID, err := keys.IndexKeyID("tenant:0", "patients", "ssn_index")
	require.NoError(t, err)
	got, err = usage.KeyUsage(ctx, ixID)
	require.NoError(t, err)
	assert.Equal(t, map[uint32]int64{1: rows}, got)

	err = kr.Retire(ctx, id, 2, usage)
	var inUse *keys.InUseError
	require.ErrorAs(t, err, &inUse)
	assert.Equal(t, keys.InUseError{ID: id, Version: 1, Rows: 4 * rows}, *inUse)
	require.ErrorAs(t, kr.DestroyVersion(ctx, id, 1, usage), &inUse)
	_, err = kr.DecryptionKey(ctx, id.Scope, 1)
	require.NoError(t, err, "nothing was retired")

	_, err = migrate.Run(ctx, e.config("reenc", migrate.Reencrypt))
	require.NoError(t, err)
	require.NoError(t, kr.Retire(ctx, id, 2, usage))
	require.NoError(t, kr.DestroyVersion(ctx, id, 1, usage))
	_, err = kr.DecryptionKey(ctx, id.Scope, 1)
	assert.ErrorIs(t, err, keys.ErrKeyDestroyed)
	e.checkPlaintext(t, e.readAll(t, e.codec))

	_, err = (&migrate.Usage{DB: e.db, Dialect: e.dialect}).KeyUsage(ctx, id)
	assert.ErrorContains(t, err, "Specs", "no tables, no proof")
}
