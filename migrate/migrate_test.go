package migrate_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/internal/testsvc"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/local"
	"github.com/phicrypt/phicrypt/migrate"
)

func TestMain(m *testing.M) { os.Exit(testsvc.RunMain(m)) }

// appPatient is how the application reads the migrated table, in strict
// mode.
type appPatient struct {
	ID        string                      `phi:"id,table=patients"`
	TenantID  string                      `phi:"scope"`
	SSN       fields.String               `phi:"encrypt"`
	Last      fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
	Visits    fields.Encrypted[int64]     `phi:"encrypt,column=visits_enc"`
	SSNIndex  fields.BlindIndex           `phi:"index,of=SSN,normalize=digits,bits=8"`
	NameDOB   fields.BlindIndex           `phi:"index,of=Last+BirthDate,normalize=trim+fold,bits=8"`
}

// spec matches appPatient.
var spec = migrate.Spec{
	Table: "patients", ID: "id", ScopeColumn: "tenant_id",
	Columns: []migrate.Column{
		{Name: "ssn", Type: "string"},
		{Name: "last", Type: "string"},
		{Name: "birth_date", Type: "time"},
		{Name: "visits", Target: "visits_enc", Type: "int"},
	},
	Indexes: []migrate.Index{
		{Column: "ssn_index", Of: []string{"ssn"}, Normalize: "digits", Bits: 8},
		{Column: "name_dob", Of: []string{"last", "birth_date"}, Normalize: "trim+fold", Bits: 8},
	},
}

// env is a database with a legacy table, and the keys to migrate it.
type env struct {
	db      *sql.DB
	dialect keys.Dialect
	dsn     string
	kekPath string
	keyring *keys.Keyring
	codec   *fields.Codec
	// plain holds each row's legacy values, by id.
	plain map[string][4]string
}

type dbKind struct {
	name string
	open func(t testing.TB) (*sql.DB, keys.Dialect, string)
}

var kinds = []dbKind{
	{"sqlite", func(t testing.TB) (*sql.DB, keys.Dialect, string) {
		dsn := "file:" + filepath.Join(t.TempDir(), "app.db") + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
		db, err := sql.Open("sqlite", dsn)
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		return db, keys.SQLite, dsn
	}},
	{"postgres", func(t testing.TB) (*sql.DB, keys.Dialect, string) {
		dsn := testsvc.SharedPostgres(t).CreateDatabase(t, "mig_"+strconv.FormatInt(time.Now().UnixNano()%1e12, 36))
		db, err := sql.Open("pgx", dsn)
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		return db, keys.Postgres, dsn
	}},
}

func newEnv(t testing.TB, k dbKind, rows int) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{plain: map[string][4]string{}}
	e.db, e.dialect, e.dsn = k.open(t)
	e.kekPath = filepath.Join(t.TempDir(), "kek.json")
	_, err := local.Create(e.kekPath, local.Options{KeyID: "local:migrate-test"})
	require.NoError(t, err)
	e.keyring, e.codec = e.keys(t, nil)
	bytesType := "BYTEA"
	if e.dialect == keys.SQLite {
		bytesType = "BLOB"
	}
	_, err = e.db.ExecContext(ctx, `CREATE TABLE patients (
		id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, ssn TEXT, last TEXT, birth_date TEXT,
		visits INTEGER, visits_enc TEXT, ssn_index `+bytesType+`, name_dob `+bytesType+`)`)
	require.NoError(t, err)
	e.load(t, rows)
	return e
}

// keys opens the keyring in the test database, as one process would.
func (e *env) keys(t testing.TB, wrap func(kms.KEK) kms.KEK) (*keys.Keyring, *fields.Codec) {
	t.Helper()
	kek, err := local.New(local.Config{Path: e.kekPath})
	require.NoError(t, err)
	var k kms.KEK = kek
	if wrap != nil {
		k = wrap(kek)
	}
	store, err := keys.NewSQLStore(context.Background(), e.db, e.dialect)
	require.NoError(t, err)
	kr, err := keys.New(keys.Config{KEK: k, Store: store})
	require.NoError(t, err)
	codec, err := fields.NewCodec(fields.Config{Keyring: kr})
	require.NoError(t, err)
	return kr, codec
}

// load inserts rows legacy rows: the Synthea CSV, repeated with new ids
// when more rows are asked for.
func (e *env) load(t testing.TB, n int) {
	t.Helper()
	f, err := os.Open("../testdata/synthea/patients.csv")
	require.NoError(t, err)
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	recs = recs[1:]
	tx, err := e.db.Begin()
	require.NoError(t, err)
	const perInsert = 200
	var args []any
	var values []string
	flush := func() {
		if len(values) == 0 {
			return
		}
		_, err := tx.Exec(e.dialect.Rebind("INSERT INTO patients (id, tenant_id, ssn, last, birth_date, visits) VALUES "+strings.Join(values, ", ")), args...)
		require.NoError(t, err)
		args, values = args[:0], values[:0]
	}
	for i := 0; i < n; i++ {
		r := recs[i%len(recs)]
		id := fmt.Sprintf("%08d-%s", i, r[0][:8])
		tenant := "tenant:" + strconv.Itoa(i%3)
		e.plain[id] = [4]string{r[3], r[8], r[1], strconv.Itoa(i % 50)}
		values = append(values, "(?, ?, ?, ?, ?, ?)")
		args = append(args, id, tenant, r[3], r[8], r[1], i%50)
		if len(values) == perInsert {
			flush()
		}
	}
	flush()
	require.NoError(t, tx.Commit())
}

func (e *env) config(job string, kind migrate.Kind) migrate.Config {
	return migrate.Config{DB: e.db, Dialect: e.dialect, Codec: e.codec, Keyring: e.keyring, Job: job, Kind: kind, Spec: spec,
		PartitionRows: 200, BatchRows: 50, PollInterval: 20 * time.Millisecond}
}

// readAll reads every row as the application does, in strict mode.
func (e *env) readAll(t testing.TB, codec *fields.Codec) map[string]*appPatient {
	t.Helper()
	rows, err := e.db.Query("SELECT id, tenant_id, ssn, last, birth_date, visits_enc, ssn_index, name_dob FROM patients")
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]*appPatient{}
	for rows.Next() {
		p := &appPatient{}
		require.NoError(t, rows.Scan(&p.ID, &p.TenantID, &p.SSN, &p.Last, &p.BirthDate, &p.Visits, &p.SSNIndex, &p.NameDOB))
		require.NoError(t, codec.Open(context.Background(), p), "row %s", p.ID)
		out[p.ID] = p
	}
	require.NoError(t, rows.Err())
	return out
}

// checkPlaintext compares every row with the legacy values.
func (e *env) checkPlaintext(t testing.TB, got map[string]*appPatient) {
	t.Helper()
	require.Len(t, got, len(e.plain))
	for id, want := range e.plain {
		p := got[id]
		require.NotNil(t, p, id)
		assert.Equal(t, want[0], p.SSN.Get(), id)
		assert.Equal(t, want[1], p.Last.Get(), id)
		assert.Equal(t, want[2], p.BirthDate.Get().Format("2006-01-02"), id)
		assert.Equal(t, want[3], strconv.FormatInt(p.Visits.Get(), 10), id)
	}
}

func TestEncryptTable(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, k, 1174)
			dry := e.config("encrypt-patients", migrate.Encrypt)
			dry.DryRun = true
			// Legacy counts the values encrypted: the non-NULL ones.
			var legacy int64
			require.NoError(t, e.db.QueryRow("SELECT count(ssn) + count(last) + count(birth_date) + count(visits) FROM patients").Scan(&legacy))
			require.Greater(t, legacy, int64(1174))
			planned, err := migrate.Run(ctx, dry)
			require.NoError(t, err)
			assert.Equal(t, migrate.Report{Scanned: 1174, Written: 1174, Legacy: legacy}, planned)
			var plain int
			require.NoError(t, e.db.QueryRow("SELECT count(*) FROM patients WHERE ssn LIKE '999-%'").Scan(&plain))
			assert.Equal(t, 1174, plain, "a dry run writes nothing")

			var progress []migrate.Progress
			cfg := e.config("encrypt-patients", migrate.Encrypt)
			cfg.Progress = func(p migrate.Progress) { progress = append(progress, p) }
			report, err := migrate.Run(ctx, cfg)
			require.NoError(t, err)
			assert.Equal(t, int64(1174), report.Scanned)
			assert.Equal(t, int64(1174), report.Written)
			assert.Equal(t, legacy, report.Legacy)
			assert.Zero(t, report.Conflicts)
			require.NotEmpty(t, progress)
			last := progress[len(progress)-1]
			assert.Equal(t, int64(1174), last.Total)

			// Nothing readable is left, and the application reads it all.
			v, err := migrate.Verify(ctx, migrate.VerifyConfig{DB: e.db, Dialect: e.dialect, Spec: spec, Codec: e.codec})
			require.NoError(t, err)
			assert.True(t, v.Complete(), v.String())
			assert.Equal(t, int64(1174), v.Columns[0].Versions[1])
			e.checkPlaintext(t, e.readAll(t, e.codec))
			var leaked int
			require.NoError(t, e.db.QueryRow("SELECT count(*) FROM patients WHERE ssn LIKE '999-%' OR last NOT LIKE 'phicrypt:%'").Scan(&leaked))
			assert.Zero(t, leaked)

			// Blind indexes written by the engine are the application's.
			for id, want := range e.plain {
				p := e.readAll(t, e.codec)[id]
				terms, err := e.codec.IndexTerms(ctx, &appPatient{TenantID: p.TenantID, SSN: fields.New(want[0])}, "SSNIndex")
				require.NoError(t, err)
				assert.True(t, terms[0].Equal(p.SSNIndex))
				break
			}

			st, err := migrate.Status(ctx, e.db, e.dialect, "encrypt-patients")
			require.NoError(t, err)
			assert.False(t, st.Finished.IsZero())
			assert.Equal(t, st.Partitions, st.PartitionsDone)
			assert.Equal(t, int64(1174), st.RowsWritten)

			// Idempotence: running again, or a new job, writes nothing.
			again, err := migrate.Run(ctx, cfg)
			require.NoError(t, err)
			assert.Zero(t, again.Written+again.Scanned, "a done job has nothing left")
			fresh, err := migrate.Run(ctx, e.config("encrypt-patients-again", migrate.Encrypt))
			require.NoError(t, err)
			assert.Equal(t, int64(1174), fresh.Scanned)
			assert.Zero(t, fresh.Written)
		})
	}
}

func TestReencryptAndReindex(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, k, 600)
			_, err := migrate.Run(ctx, e.config("enc", migrate.Encrypt))
			require.NoError(t, err)

			// An index key rotation: only the index column is rewritten.
			for i := 0; i < 3; i++ {
				id, err := keys.IndexKeyID("tenant:"+strconv.Itoa(i), "patients", "ssn_index")
				require.NoError(t, err)
				_, err = e.keyring.Rotate(ctx, id)
				require.NoError(t, err)
			}
			var before string
			require.NoError(t, e.db.QueryRow("SELECT ssn FROM patients ORDER BY id LIMIT 1").Scan(&before))
			r, err := migrate.Run(ctx, e.config("reindex", migrate.Reindex))
			require.NoError(t, err)
			assert.Equal(t, int64(600), r.Written)
			var after string
			require.NoError(t, e.db.QueryRow("SELECT ssn FROM patients ORDER BY id LIMIT 1").Scan(&after))
			assert.Equal(t, before, after, "reindexing leaves the ciphertexts alone")
			v, err := migrate.Verify(ctx, migrate.VerifyConfig{DB: e.db, Dialect: e.dialect, Spec: spec})
			require.NoError(t, err)
			assert.Equal(t, map[uint32]int64{2: 600}, v.Indexes[0].Versions)
			assert.Equal(t, map[uint32]int64{1: 600}, v.Indexes[1].Versions, "name_dob's key was not rotated")

			// A data key rotation: every value is re-encrypted.
			for i := 0; i < 3; i++ {
				_, err := e.keyring.Rotate(ctx, keys.DataKey("tenant:"+strconv.Itoa(i)))
				require.NoError(t, err)
			}
			r, err = migrate.Run(ctx, e.config("reenc", migrate.Reencrypt))
			require.NoError(t, err)
			assert.Equal(t, int64(600), r.Written)
			v, err = migrate.Verify(ctx, migrate.VerifyConfig{DB: e.db, Dialect: e.dialect, Spec: spec, Codec: e.codec})
			require.NoError(t, err)
			for _, c := range v.Columns {
				assert.Equal(t, map[uint32]int64{2: 600}, c.Versions, "column %s: version 1 no longer referenced", c.Column)
			}
			assert.Equal(t, []uint32{2}, v.Referenced()["ssn"])
			assert.True(t, v.Complete())
			e.checkPlaintext(t, e.readAll(t, e.codec))
			again, err := migrate.Run(ctx, e.config("reenc-again", migrate.Reencrypt))
			require.NoError(t, err)
			assert.Zero(t, again.Written)
		})
	}
}

// TestConcurrentApplicationWrites updates rows through the application
// while the migration runs: no application write is lost.
func TestConcurrentApplicationWrites(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, k, 1000)
			cfg := e.config("enc", migrate.Encrypt)
			cfg.RateLimit = 5000
			var wg sync.WaitGroup
			wg.Add(1)
			updated := map[string]string{}
			stop := make(chan struct{})
			defer func() { close(stop); wg.Wait() }()
			go func() {
				defer wg.Done()
				for i := 0; i < 60; i++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("%08d-", i*16)
					var full string
					if err := e.db.QueryRow(e.dialect.Rebind("SELECT id FROM patients WHERE id LIKE ?"), id+"%").Scan(&full); err != nil {
						t.Error(err)
						return
					}
					newSSN := fmt.Sprintf("999-00-%04d", i)
					p := &appPatient{ID: full, TenantID: "tenant:" + strconv.Itoa((i*16)%3), SSN: fields.New(newSSN)}
					if err := e.codec.Seal(ctx, p); err != nil {
						t.Error(err)
						return
					}
					if _, err := e.db.Exec(e.dialect.Rebind("UPDATE patients SET ssn = ?, ssn_index = ? WHERE id = ?"), p.SSN, p.SSNIndex, full); err != nil {
						t.Error(err)
						return
					}
					updated[full] = newSSN
					time.Sleep(2 * time.Millisecond)
				}
			}()
			_, err := migrate.Run(ctx, cfg)
			require.NoError(t, err)
			wg.Wait()
			wg.Add(1) // for the deferred Wait
			go wg.Done()
			got := e.readAll(t, e.codec)
			for id, ssn := range updated {
				assert.Equal(t, ssn, got[id].SSN.Get(), "the application's write survives")
			}
			v, err := migrate.Verify(ctx, migrate.VerifyConfig{DB: e.db, Dialect: e.dialect, Spec: spec, Codec: e.codec})
			require.NoError(t, err)
			assert.True(t, v.Complete(), v.String())
		})
	}
}

// TestThreeWorkers runs one job with three workers at once (three
// processes' worth of connections and keyrings).
func TestThreeWorkers(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, kinds[1], 3000)
	var wg sync.WaitGroup
	reports := make([]migrate.Report, 3)
	for i := range reports {
		kr, codec := e.keys(t, nil)
		cfg := e.config("shared", migrate.Encrypt)
		cfg.Keyring, cfg.Codec, cfg.Worker = kr, codec, "worker-"+strconv.Itoa(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			reports[i], err = migrate.Run(ctx, cfg)
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	var scanned, written int64
	busy := 0
	for _, r := range reports {
		scanned += r.Scanned
		written += r.Written
		if r.Partitions > 0 {
			busy++
		}
	}
	assert.Equal(t, int64(3000), scanned, "every row once")
	assert.Equal(t, int64(3000), written, "every row written once")
	assert.GreaterOrEqual(t, busy, 2, "the work was shared")
	st, err := migrate.Status(ctx, e.db, e.dialect, "shared")
	require.NoError(t, err)
	assert.Equal(t, st.Partitions, st.PartitionsDone)
	e.checkPlaintext(t, e.readAll(t, e.codec))
}

func TestJobMismatchAndSpecErrors(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, kinds[0], 10)
	_, err := migrate.Run(ctx, e.config("j", migrate.Encrypt))
	require.NoError(t, err)
	_, err = migrate.Run(ctx, e.config("j", migrate.Reencrypt))
	assert.ErrorIs(t, err, migrate.ErrJobMismatch)

	bad := []migrate.Spec{
		{Table: "patients; DROP TABLE x", ID: "id", Scope: "s", Columns: []migrate.Column{{Name: "ssn", Type: "string"}}},
		{Table: "patients", ID: "id", Columns: []migrate.Column{{Name: "ssn", Type: "string"}}},
		{Table: "patients", ID: "id", Scope: "s"},
		{Table: "patients", ID: "id", Scope: "s", Columns: []migrate.Column{{Name: "ssn", Type: "uuid"}}},
		{Table: "patients", ID: "id", Scope: "s", Columns: []migrate.Column{{Name: "ssn", Type: "string"}}, Indexes: []migrate.Index{{Column: "i", Of: []string{"nope"}, Bits: 8}}},
	}
	for i, s := range bad {
		assert.ErrorIs(t, s.Validate(), migrate.ErrSpec, "spec %d", i)
	}
	_, err = migrate.Status(ctx, e.db, e.dialect, "no-such-job")
	assert.ErrorIs(t, err, migrate.ErrNoJob)
}

// rowHash hashes a row's legacy plaintext.
func rowHash(v [4]string) [32]byte { return sha256.Sum256([]byte(strings.Join(v[:], "\x00"))) }
