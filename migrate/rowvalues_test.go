package migrate_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"sync"
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

// A DATE column, which the driver reads as a time.Time, encrypted into a
// target column: every row is encrypted, and the source column keeps its
// stored text (it is compared, never written).
func TestEncryptDateColumnIntoTarget(t *testing.T) {
	ctx := context.Background()
	db, kr, codec := sqliteTable(t, nil,
		`CREATE TABLE p (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, dob DATE, dob_enc TEXT)`,
		`INSERT INTO p (id, tenant, dob) VALUES ('a', 't1', '1980-01-02'), ('b', 't1', '1975-03-04 10:30:00'), ('c', 't1', NULL)`)
	s := migrate.Spec{Table: "p", ID: "id", ScopeColumn: "tenant", Columns: []migrate.Column{{Name: "dob", Target: "dob_enc", Type: "time"}}}
	require.NoError(t, s.CheckTable(ctx, db, keys.SQLite))
	rep, err := migrate.Run(ctx, smallJob(db, kr, codec, s))
	require.NoError(t, err)
	assert.Equal(t, migrate.Report{Partitions: 2, Scanned: 3, Written: 2, Legacy: 2}, rep)

	type app struct {
		ID     string                      `phi:"id,table=p"`
		Tenant string                      `phi:"scope"`
		DOB    fields.Encrypted[time.Time] `phi:"encrypt,column=dob_enc"`
	}
	want := map[string]string{"a": "1980-01-02 00:00:00", "b": "1975-03-04 10:30:00"}
	stored := map[string]string{"a": "1980-01-02", "b": "1975-03-04 10:30:00"}
	rows, err := db.Query(`SELECT id, tenant, dob_enc, typeof(dob), +dob FROM p WHERE dob IS NOT NULL`)
	require.NoError(t, err)
	defer rows.Close()
	n := 0
	for rows.Next() {
		var a app
		var typ, raw string
		require.NoError(t, rows.Scan(&a.ID, &a.Tenant, &a.DOB, &typ, &raw))
		require.NoError(t, codec.Open(ctx, &a))
		assert.Equal(t, want[a.ID], a.DOB.Get().Format(time.DateTime), a.ID)
		assert.Equal(t, "text", typ, "the source column is not rewritten")
		assert.Equal(t, stored[a.ID], raw, "the source column is not rewritten")
		n++
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, 2, n)

	v, err := migrate.Verify(ctx, migrate.VerifyConfig{DB: db, Dialect: keys.SQLite, Spec: s, Codec: codec})
	require.NoError(t, err)
	assert.True(t, v.Complete(), v.String())
	rep, err = migrate.Run(ctx, smallJob(db, kr, codec, s))
	require.NoError(t, err)
	assert.Zero(t, rep.Written, "a finished job writes nothing")
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
	assert.Equal(t, migrate.Report{Partitions: 1, Scanned: 2, Written: 2, Legacy: 3}, rep, "two SSNs and the empty BLOB")

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

// A row whose compare-and-swap update never takes (here a trigger ignores
// every update) is not a conflict with a concurrent write: Run fails with
// ErrUnwritable instead of reporting success with the row's plaintext
// left.
func TestUnwritableRowStopsTheJob(t *testing.T) {
	ctx := context.Background()
	db, kr, codec := sqliteTable(t, nil,
		`CREATE TABLE p (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, ssn TEXT)`,
		`INSERT INTO p VALUES ('a', 't1', '123-45-6789')`,
		`CREATE TRIGGER p_frozen BEFORE UPDATE ON p BEGIN SELECT RAISE(IGNORE); END`)
	s := migrate.Spec{Table: "p", ID: "id", ScopeColumn: "tenant", Columns: []migrate.Column{{Name: "ssn", Type: "string"}}}
	rep, err := migrate.Run(ctx, smallJob(db, kr, codec, s))
	require.ErrorIs(t, err, migrate.ErrUnwritable)
	assert.Equal(t, migrate.Report{Scanned: 0}, rep, "the partition is not done")
	var ssn string
	require.NoError(t, db.QueryRow(`SELECT ssn FROM p`).Scan(&ssn))
	assert.Equal(t, "123-45-6789", ssn)
}

// deletingKEK deletes a row when the first data key is wrapped: between the
// engine's read of a batch and its write.
type deletingKEK struct {
	kms.KEK
	once sync.Once
	del  func()
}

func (k *deletingKEK) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	k.once.Do(k.del)
	return k.KEK.Wrap(ctx, dek, aad)
}

// A row deleted between the read and the write is counted in Gone.
func TestRowDeletedBeforeWriteIsGone(t *testing.T) {
	ctx := context.Background()
	var db *sql.DB
	wrap := func(k kms.KEK) kms.KEK {
		return &deletingKEK{KEK: k, del: func() {
			_, err := db.Exec(`DELETE FROM p WHERE id = 'b'`)
			assert.NoError(t, err)
		}}
	}
	db, kr, codec := sqliteTable(t, wrap,
		`CREATE TABLE p (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, ssn TEXT)`,
		`INSERT INTO p VALUES ('a', 't1', '123-45-6789'), ('b', 't1', '987-65-4321')`)
	s := migrate.Spec{Table: "p", ID: "id", ScopeColumn: "tenant", Columns: []migrate.Column{{Name: "ssn", Type: "string"}}}
	rep, err := migrate.Run(ctx, smallJob(db, kr, codec, s))
	require.NoError(t, err)
	assert.Equal(t, migrate.Report{Partitions: 1, Scanned: 2, Written: 1, Gone: 1, Legacy: 1}, rep)
}

// Row ids of any SQLite type (integers in a column declared without a
// type, blobs, a mix of both with text) are compared as they are stored:
// Run, DryRun and Verify see every row exactly once, and the record id
// bound to each value is the id's text form, as the application reads it.
func TestIDsKeepTheirType(t *testing.T) {
	for _, tc := range []struct {
		name, idType string
		ids          []any
		text         []string
	}{
		{"untyped integers", "", []any{int64(0), int64(1), int64(2), int64(3), int64(4), int64(5), int64(6)},
			[]string{"0", "1", "2", "3", "4", "5", "6"}},
		{"blobs", "BLOB", []any{[]byte{0x10, 0}, []byte{0x10, 1}, []byte{0x10, 2}, []byte{0x10, 3}, []byte{0x10, 4}},
			[]string{"\x10\x00", "\x10\x01", "\x10\x02", "\x10\x03", "\x10\x04"}},
		{"mixed", "", []any{int64(7), 2.5, "x", "y", []byte("z"), int64(-1)},
			[]string{"7", "2.5", "x", "y", "z", "-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			db, kr, codec := sqliteTable(t, nil, `CREATE TABLE p (id `+tc.idType+` PRIMARY KEY, tenant TEXT NOT NULL, ssn TEXT)`)
			for _, id := range tc.ids {
				_, err := db.Exec(`INSERT INTO p VALUES (?, 't1', '123-45-6789')`, id)
				require.NoError(t, err)
			}
			n := int64(len(tc.ids))
			s := migrate.Spec{Table: "p", ID: "id", ScopeColumn: "tenant", Columns: []migrate.Column{{Name: "ssn", Type: "string"}}}
			require.NoError(t, s.CheckTable(ctx, db, keys.SQLite))
			cfg := smallJob(db, kr, codec, s)
			cfg.PartitionRows = 3

			dry := cfg
			dry.DryRun = true
			rep, err := migrate.Run(ctx, dry)
			require.NoError(t, err)
			assert.Equal(t, migrate.Report{Scanned: n, Written: n, Legacy: n}, rep)

			rep, err = migrate.Run(ctx, cfg)
			require.NoError(t, err)
			assert.Equal(t, migrate.Report{Partitions: int(n+2) / 3, Scanned: n, Written: n, Legacy: n}, rep)
			// The partitions split the rows evenly: their bounds keep
			// their type.
			var seen []int64
			prows, err := db.Query(`SELECT rows_seen FROM phicrypt_migration_parts ORDER BY part`)
			require.NoError(t, err)
			for prows.Next() {
				var k int64
				require.NoError(t, prows.Scan(&k))
				seen = append(seen, k)
			}
			require.NoError(t, prows.Err())
			prows.Close()
			var want []int64
			for left := n; left > 0; left -= 3 {
				want = append(want, min(left, 3))
			}
			assert.Equal(t, want, seen)

			v, err := migrate.Verify(ctx, migrate.VerifyConfig{DB: db, Dialect: keys.SQLite, Spec: s, Codec: codec})
			require.NoError(t, err)
			assert.Equal(t, n, v.Rows)
			assert.True(t, v.Complete(), v.String())

			type app struct {
				ID     string        `phi:"id,table=p"`
				Tenant string        `phi:"scope"`
				SSN    fields.String `phi:"encrypt"`
			}
			var got []string
			rows, err := db.Query(`SELECT id, tenant, ssn FROM p`)
			require.NoError(t, err)
			defer rows.Close()
			for rows.Next() {
				var a app
				require.NoError(t, rows.Scan(&a.ID, &a.Tenant, &a.SSN))
				require.NoError(t, codec.Open(ctx, &a), "row %q", a.ID)
				assert.Equal(t, "123-45-6789", a.SSN.Get())
				got = append(got, a.ID)
			}
			require.NoError(t, rows.Err())
			assert.ElementsMatch(t, tc.text, got)
		})
	}
}

// A row whose id is NULL (SQLite allows it outside INTEGER PRIMARY KEY
// columns) stops the job with ErrRowID.
func TestNullIDIsAnError(t *testing.T) {
	ctx := context.Background()
	db, kr, codec := sqliteTable(t, nil,
		`CREATE TABLE p (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, ssn TEXT)`,
		`INSERT INTO p VALUES (NULL, 't1', '123-45-6789')`)
	s := migrate.Spec{Table: "p", ID: "id", ScopeColumn: "tenant", Columns: []migrate.Column{{Name: "ssn", Type: "string"}}}
	_, err := migrate.Run(ctx, smallJob(db, kr, codec, s))
	require.ErrorIs(t, err, migrate.ErrRowID)
	_, err = migrate.Verify(ctx, migrate.VerifyConfig{DB: db, Dialect: keys.SQLite, Spec: s})
	require.ErrorIs(t, err, migrate.ErrRowID)
}

// A job created by an earlier release, whose partition bounds are stored
// as text, is resumed with those bounds.
func TestResumesJobWithTextBounds(t *testing.T) {
	ctx := context.Background()
	db, kr, codec := sqliteTable(t, nil,
		`CREATE TABLE p (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, ssn TEXT)`,
		`INSERT INTO p VALUES ('k', 't1', '123-45-6789'), ('m', 't1', '987-65-4321'), ('n', 't1', '555-55-5555')`)
	s := migrate.Spec{Table: "p", ID: "id", ScopeColumn: "tenant", Columns: []migrate.Column{{Name: "ssn", Type: "string"}}}
	require.NoError(t, migrate.Migrate(ctx, db, keys.SQLite))
	old, err := json.Marshal(struct {
		Kind migrate.Kind `json:"kind"`
		Spec migrate.Spec `json:"spec"`
	}{migrate.Encrypt, s})
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO phicrypt_migration_jobs (job, kind, spec, total, created_at) VALUES ('old', 'encrypt', ?, 3, 1)`, string(old))
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO phicrypt_migration_parts (job, part, lo, hi) VALUES ('old', 0, NULL, 'm'), ('old', 1, 'm', NULL)`)
	require.NoError(t, err)
	cfg := smallJob(db, kr, codec, s)
	cfg.Job = "old"
	rep, err := migrate.Run(ctx, cfg)
	require.NoError(t, err)
	assert.Equal(t, migrate.Report{Partitions: 2, Scanned: 3, Written: 3, Legacy: 3}, rep)
}
