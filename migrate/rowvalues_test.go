package migrate_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/local"
	"github.com/phicrypt/phicrypt/migrate"
)

// The tests of this file check that the engine carries the values it reads
// (ids, legacy values, empty values) as the driver returns them, so that
// its queries and compare-and-swap updates match the rows they were read
// from, on SQLite, where a column may hold values of any type.

// sqliteTable opens a fresh SQLite database, runs ddl, and returns it with
// a keyring and codec stored in it; wrap, if set, wraps the KEK.
func sqliteTable(t *testing.T, wrap func(kms.KEK) kms.KEK, ddl ...string) (*sql.DB, *keys.Keyring, *fields.Codec) {
	t.Helper()
	dsn := "file:" + filepath.Join(t.TempDir(), "t.db") + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
	db, err := sql.Open("sqlite", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	kekPath := filepath.Join(t.TempDir(), "kek.json")
	_, err = local.Create(kekPath, local.Options{KeyID: "local:rowvalues"})
	require.NoError(t, err)
	var kek kms.KEK
	kek, err = local.New(local.Config{Path: kekPath})
	require.NoError(t, err)
	if wrap != nil {
		kek = wrap(kek)
	}
	store, err := keys.NewSQLStore(context.Background(), db, keys.SQLite)
	require.NoError(t, err)
	kr, err := keys.New(keys.Config{KEK: kek, Store: store})
	require.NoError(t, err)
	codec, err := fields.NewCodec(fields.Config{Keyring: kr})
	require.NoError(t, err)
	for _, q := range ddl {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
	return db, kr, codec
}

func smallJob(db *sql.DB, kr *keys.Keyring, codec *fields.Codec, s migrate.Spec) migrate.Config {
	return migrate.Config{DB: db, Dialect: keys.SQLite, Codec: codec, Keyring: kr, Kind: migrate.Encrypt, Spec: s,
		PartitionRows: 2, BatchRows: 2, PollInterval: 10 * time.Millisecond}
}

// Verify counts a row whose target column is NULL while its source holds a
// value (legacy code wrote it after the job) as plaintext left.
func TestVerifyCountsUnmigratedTargetRows(t *testing.T) {
	ctx := context.Background()
	db, kr, codec := sqliteTable(t, nil,
		`CREATE TABLE p (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, visits INTEGER, visits_enc TEXT)`,
		`INSERT INTO p (id, tenant, visits) VALUES ('a', 't1', 1), ('c', 't1', 3), ('d', 't1', NULL)`)
	s := migrate.Spec{Table: "p", ID: "id", ScopeColumn: "tenant", Columns: []migrate.Column{{Name: "visits", Target: "visits_enc", Type: "int"}}}
	_, err := migrate.Run(ctx, smallJob(db, kr, codec, s))
	require.NoError(t, err)
	v, err := migrate.Verify(ctx, migrate.VerifyConfig{DB: db, Dialect: keys.SQLite, Spec: s})
	require.NoError(t, err)
	require.True(t, v.Complete(), v.String())

	_, err = db.Exec(`INSERT INTO p (id, tenant, visits) VALUES ('b', 't1', 42)`)
	require.NoError(t, err)
	v, err = migrate.Verify(ctx, migrate.VerifyConfig{DB: db, Dialect: keys.SQLite, Spec: s})
	require.NoError(t, err)
	assert.False(t, v.Complete(), v.String())
	assert.Equal(t, int64(1), v.Columns[0].Plaintext, v.String())
	assert.Equal(t, int64(1), v.Columns[0].Null, "row d is NULL in both columns")
	assert.Equal(t, map[uint32]int64{1: 2}, v.Columns[0].Versions)
}

// An empty BLOB (not NULL) is a value like any other: it is encrypted, and
// the row's other columns with it.
func TestEncryptEmptyBlob(t *testing.T) {
	ctx := context.Background()
	db, kr, codec := sqliteTable(t, nil,
		`CREATE TABLE p (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, ssn TEXT, pic BLOB)`,
		`INSERT INTO p VALUES ('a', 't1', '123-45-6789', X''), ('b', 't1', '987-65-4321', NULL)`)
	s := migrate.Spec{Table: "p", ID: "id", ScopeColumn: "tenant", Columns: []migrate.Column{{Name: "ssn", Type: "string"}, {Name: "pic", Type: "bytes"}}}
	rep, err := migrate.Run(ctx, smallJob(db, kr, codec, s))
	require.NoError(t, err)
	assert.Equal(t, migrate.Report{Partitions: 1, Scanned: 2, Written: 2}, rep)

	type app struct {
		ID     string                   `phi:"id,table=p"`
		Tenant string                   `phi:"scope"`
		SSN    fields.String            `phi:"encrypt"`
		Pic    fields.Encrypted[[]byte] `phi:"encrypt"`
	}
	var a app
	require.NoError(t, db.QueryRow(`SELECT id, tenant, ssn, pic FROM p WHERE id = 'a'`).Scan(&a.ID, &a.Tenant, &a.SSN, &a.Pic))
	require.NoError(t, codec.Open(ctx, &a))
	assert.Equal(t, "123-45-6789", a.SSN.Get())
	assert.False(t, a.Pic.IsNull())
	assert.Empty(t, a.Pic.Get())
	var picNull bool
	require.NoError(t, db.QueryRow(`SELECT pic IS NULL FROM p WHERE id = 'b'`).Scan(&picNull))
	assert.True(t, picNull, "NULL stays NULL")
	v, err := migrate.Verify(ctx, migrate.VerifyConfig{DB: db, Dialect: keys.SQLite, Spec: s, Codec: codec})
	require.NoError(t, err)
	assert.True(t, v.Complete(), v.String())
}
