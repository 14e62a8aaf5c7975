package migrate_test

import (
	"context"
	"crypto/fips140"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/internal/testsvc"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
	"github.com/phicrypt/phicrypt/migrate"
)

// rotateTenants rotates the data key of the three test tenants.
func (e *env) rotateTenants(t testing.TB) {
	t.Helper()
	for i := 0; i < 3; i++ {
		_, err := e.keyring.Rotate(context.Background(), keys.DataKey("tenant:"+strconv.Itoa(i)))
		require.NoError(t, err)
	}
}

// firstIDs returns the ids of the first rows of tenant, in id order.
func (e *env) firstIDs(t testing.TB, tenant string, n int) []string {
	t.Helper()
	rows, err := e.db.Query(e.dialect.Rebind("SELECT id FROM patients WHERE tenant_id = ? ORDER BY id LIMIT ?"), tenant, n)
	require.NoError(t, err)
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	require.Len(t, ids, n)
	return ids
}

// TestReencryptRefusesMovedValues moves ciphertexts where they do not
// belong (to another row, another column, another tenant), then runs a
// Reencrypt job: the fast path must open each value under the binding of
// the place it is found, so the job fails with envelope.ErrDecrypt and the
// value stays as it was, not resealed under a binding it never had.
func TestReencryptRefusesMovedValues(t *testing.T) {
	moves := []struct {
		name string
		// from and to are (tenant, column) of the copied value and of
		// its new place.
		fromTenant, fromCol, toTenant, toCol string
	}{
		{"other row", "tenant:0", "ssn", "tenant:0", "ssn"},
		{"other column", "tenant:0", "last", "tenant:0", "ssn"},
		{"other tenant", "tenant:1", "ssn", "tenant:0", "ssn"},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, k, 60)
			_, err := migrate.Run(ctx, e.config("enc", migrate.Encrypt))
			require.NoError(t, err)
			e.rotateTenants(t)
			get := func(col, id string) string {
				var v string
				require.NoError(t, e.db.QueryRow(e.dialect.Rebind("SELECT "+col+" FROM patients WHERE id = ?"), id).Scan(&v))
				return v
			}
			set := func(col, id, v string) {
				_, err := e.db.Exec(e.dialect.Rebind("UPDATE patients SET "+col+" = ? WHERE id = ?"), v, id)
				require.NoError(t, err)
			}
			for i, m := range moves {
				from := e.firstIDs(t, m.fromTenant, 1)[0]
				to := e.firstIDs(t, m.toTenant, 3)[1+i%2]
				moved, orig := get(m.fromCol, from), get(m.toCol, to)
				set(m.toCol, to, moved)

				_, err = migrate.Run(ctx, e.config("reenc-"+strconv.Itoa(i), migrate.Reencrypt))
				require.ErrorIs(t, err, envelope.ErrDecrypt, "%s: a moved value is refused", m.name)
				assert.Contains(t, err.Error(), to, "the error names the row")
				now := get(m.toCol, to)
				assert.Equal(t, moved, now, "%s: the moved value is left as it was", m.name)
				info, err := envelope.Inspect([]byte(now))
				require.NoError(t, err)
				assert.Equal(t, uint32(1), info.KeyVersion, "%s: not resealed", m.name)
				set(m.toCol, to, orig)
			}
			// Every value back in place: the job completes.
			r, err := migrate.Run(ctx, e.config("reenc-final", migrate.Reencrypt))
			require.NoError(t, err)
			assert.Positive(t, r.Written)
			e.checkPlaintext(t, e.readAll(t, e.codec))
		})
	}
}

// TestReencryptLeavesIndexesAlone checks that a data key rotation
// rewrites the ciphertexts only, and that a row whose blind index is
// stale as well gets both in one write.
func TestReencryptLeavesIndexesAlone(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, k, 300)
			_, err := migrate.Run(ctx, e.config("enc", migrate.Encrypt))
			require.NoError(t, err)
			indexes := func() map[string]string {
				rows, err := e.db.Query("SELECT id, ssn_index, name_dob FROM patients")
				require.NoError(t, err)
				defer rows.Close()
				out := map[string]string{}
				for rows.Next() {
					var id string
					var a, b []byte
					require.NoError(t, rows.Scan(&id, &a, &b))
					out[id] = string(a) + "/" + string(b)
				}
				return out
			}
			before := indexes()

			e.rotateTenants(t)
			r, err := migrate.Run(ctx, e.config("reenc", migrate.Reencrypt))
			require.NoError(t, err)
			assert.Equal(t, int64(300), r.Written)
			assert.Equal(t, before, indexes(), "the index keys did not change: no index value is rewritten")
			v, err := migrate.Verify(ctx, migrate.VerifyConfig{DB: e.db, Dialect: e.dialect, Spec: spec, Codec: e.codec})
			require.NoError(t, err)
			for _, c := range v.Columns {
				assert.Equal(t, map[uint32]int64{2: 300}, c.Versions, c.Column)
			}
			e.checkPlaintext(t, e.readAll(t, e.codec))

			// Tenant 0's index key and every data key rotate: tenant 0's
			// rows take the record path and get both in one job.
			id, err := keys.IndexKeyID("tenant:0", "patients", "ssn_index")
			require.NoError(t, err)
			_, err = e.keyring.Rotate(ctx, id)
			require.NoError(t, err)
			e.rotateTenants(t)
			r, err = migrate.Run(ctx, e.config("reenc-2", migrate.Reencrypt))
			require.NoError(t, err)
			assert.Equal(t, int64(300), r.Written)
			v, err = migrate.Verify(ctx, migrate.VerifyConfig{DB: e.db, Dialect: e.dialect, Spec: spec, Codec: e.codec})
			require.NoError(t, err)
			for _, c := range v.Columns {
				assert.Equal(t, map[uint32]int64{3: 300}, c.Versions, c.Column)
			}
			assert.Equal(t, map[uint32]int64{1: 200, 2: 100}, v.Indexes[0].Versions, "tenant 0's ssn_index recomputed")
			e.checkPlaintext(t, e.readAll(t, e.codec))
			after := indexes()
			for id, ix := range before {
				if e.plainTenant(id) != "tenant:0" {
					assert.Equal(t, ix, after[id], "row %s: index left alone", id)
				}
			}
		})
	}
}

func (e *env) plainTenant(id string) string {
	n, _ := strconv.Atoi(id[:8])
	return "tenant:" + strconv.Itoa(n%3)
}

// docRecord has a deterministic column and a binary one, as an
// application with a binary codec writes them.
type docRecord struct {
	ID     string                   `phi:"id,table=docs"`
	Tenant string                   `phi:"scope"`
	MRN    fields.String            `phi:"encrypt,deterministic"`
	Note   fields.Encrypted[[]byte] `phi:"encrypt"`
}

var docSpec = migrate.Spec{
	Table: "docs", ID: "id", ScopeColumn: "tenant",
	Columns: []migrate.Column{
		{Name: "mrn", Type: "string", Deterministic: true},
		{Name: "note", Type: "bytes"},
	},
}

// TestReencryptDeterministicAndBinary reseals deterministic values (bound
// to their column, not their record) and binary values (kept binary).
func TestReencryptDeterministicAndBinary(t *testing.T) {
	if fips140.Enabled() {
		t.Skip("AES-SIV is not FIPS 140-3 approved")
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, k, 0)
			codec, err := fields.NewCodec(fields.Config{Keyring: e.keyring, Binary: true})
			require.NoError(t, err)
			blob := "BYTEA"
			if e.dialect == keys.SQLite {
				blob = "BLOB"
			}
			_, err = e.db.Exec("CREATE TABLE docs (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, mrn " + blob + ", note " + blob + ")")
			require.NoError(t, err)
			for i := 0; i < 40; i++ {
				d := &docRecord{ID: fmt.Sprintf("doc-%03d", i), Tenant: "tenant:" + strconv.Itoa(i%2),
					MRN: fields.New("MRN-" + strconv.Itoa(i%4)), Note: fields.New([]byte("note " + strconv.Itoa(i)))}
				require.NoError(t, codec.Seal(ctx, d))
				_, err := e.db.Exec(e.dialect.Rebind("INSERT INTO docs VALUES (?, ?, ?, ?)"), d.ID, d.Tenant, d.MRN, d.Note)
				require.NoError(t, err)
			}
			for i := 0; i < 2; i++ {
				scope := "tenant:" + strconv.Itoa(i)
				_, err := e.keyring.Rotate(ctx, keys.DataKey(scope))
				require.NoError(t, err)
				_, err = e.keyring.Rotate(ctx, keys.ID{Scope: scope, Name: keys.DeterministicKeyName})
				require.NoError(t, err)
			}
			cfg := e.config("reenc-docs", migrate.Reencrypt)
			cfg.Spec, cfg.Codec = docSpec, codec
			r, err := migrate.Run(ctx, cfg)
			require.NoError(t, err)
			assert.Equal(t, int64(40), r.Written)

			rows, err := e.db.Query("SELECT id, tenant, mrn, note FROM docs ORDER BY id")
			require.NoError(t, err)
			defer rows.Close()
			mrns := map[string]string{}
			for rows.Next() {
				var id, tenant string
				var mrn, note []byte
				require.NoError(t, rows.Scan(&id, &tenant, &mrn, &note))
				for _, ct := range [][]byte{mrn, note} {
					require.NotEmpty(t, ct)
					assert.Equal(t, byte(0xF5), ct[0], "row %s: still binary", id)
					info, err := envelope.Inspect(ct)
					require.NoError(t, err)
					assert.Equal(t, uint32(2), info.KeyVersion, "row %s", id)
				}
				d := &docRecord{ID: id, Tenant: tenant}
				require.NoError(t, d.MRN.Scan(mrn))
				require.NoError(t, d.Note.Scan(note))
				require.NoError(t, codec.Open(ctx, d), "row %s", id)
				n, _ := strconv.Atoi(id[4:])
				assert.Equal(t, "MRN-"+strconv.Itoa(n%4), d.MRN.Get())
				assert.Equal(t, "note "+strconv.Itoa(n), string(d.Note.Get()))
				// Deterministic: equal values in one tenant stay equal.
				key := tenant + "/" + d.MRN.Get()
				if prev, ok := mrns[key]; ok {
					assert.Equal(t, prev, string(mrn), "row %s: equal MRNs, equal ciphertexts", id)
				}
				mrns[key] = string(mrn)
			}
			require.NoError(t, rows.Err())
		})
	}
}

// TestReencryptMatchesRecordPath re-encrypts two copies of a table, one
// through the fast path and one through the record path: the same rows
// are written, and the application reads the same plaintext.
func TestReencryptMatchesRecordPath(t *testing.T) {
	ctx := context.Background()
	var reports []migrate.Report
	for _, record := range []bool{false, true} {
		e := newEnv(t, kinds[0], 250)
		_, err := migrate.Run(ctx, e.config("enc", migrate.Encrypt))
		require.NoError(t, err)
		// Some legacy plaintext and NULLs, which a Reencrypt job leaves.
		_, err = e.db.Exec("UPDATE patients SET last = 'Legacy' WHERE id IN (SELECT id FROM patients ORDER BY id LIMIT 5)")
		require.NoError(t, err)
		_, err = e.db.Exec("UPDATE patients SET birth_date = NULL, name_dob = NULL WHERE id IN (SELECT id FROM patients ORDER BY id DESC LIMIT 5)")
		require.NoError(t, err)
		e.rotateTenants(t)
		cfg := e.config("reenc", migrate.Reencrypt)
		if record {
			migrate.UseRecordPath(&cfg)
		}
		r, err := migrate.Run(ctx, cfg)
		require.NoError(t, err)
		reports = append(reports, r)
		v, err := migrate.Verify(ctx, migrate.VerifyConfig{DB: e.db, Dialect: e.dialect, Spec: spec, Codec: e.codec})
		require.NoError(t, err)
		assert.Equal(t, map[uint32]int64{2: 250}, v.Columns[0].Versions)
		assert.Equal(t, map[uint32]int64{2: 245}, v.Columns[1].Versions)
		assert.Equal(t, int64(5), v.Columns[1].Plaintext)
		assert.Equal(t, map[uint32]int64{2: 245}, v.Columns[2].Versions)
	}
	assert.Equal(t, reports[1], reports[0])
}

// TestReencryptCrashSafety re-encrypts a PostgreSQL table with a worker
// process killed with SIGKILL at random moments, as TestCrashSafety does
// for Encrypt (3,000 rows and one seed; 50,000 rows and three seeds with
// PHICRYPT_FULL_TESTS=1): afterwards every value is at the new key version
// and opens to its original plaintext.
func TestReencryptCrashSafety(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("in the worker process")
	}
	rows, seeds := 3_000, uint64(1)
	if testsvc.Full() {
		rows, seeds = 50_000, 3
	}
	for seed := uint64(1); seed <= seeds; seed++ {
		t.Run("seed"+strconv.FormatUint(seed, 10), func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, kinds[1], rows)
			_, err := migrate.Run(ctx, e.config("enc", migrate.Encrypt))
			require.NoError(t, err)
			e.rotateTenants(t)
			kills := crashLoop(t, e, seed, "^TestReencryptWorker$", "reenc-crash")
			t.Logf("%d rows, %d kills", rows, kills)
			assert.Positive(t, kills, "the test must actually kill workers")

			v, err := migrate.Verify(ctx, migrate.VerifyConfig{DB: e.db, Dialect: e.dialect, Spec: spec, Codec: e.codec})
			require.NoError(t, err)
			assert.True(t, v.Complete(), v.String())
			for _, c := range v.Columns {
				assert.Equal(t, map[uint32]int64{2: int64(rows)}, c.Versions, c.Column)
			}
			got := e.readAll(t, e.codec)
			for id, want := range e.plain {
				p := got[id]
				require.NotNil(t, p)
				have := [4]string{p.SSN.Get(), p.Last.Get(), p.BirthDate.Get().Format("2006-01-02"), strconv.FormatInt(p.Visits.Get(), 10)}
				require.Equal(t, rowHash(want), rowHash(have), "row %s: plaintext changed", id)
			}
		})
	}
}

// crashLoop starts worker processes running test run against e's database
// and kills them at random moments until one finishes job, and returns the
// number of kills.
func crashLoop(t *testing.T, e *env, seed uint64, run, job string) int {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 42))
	kills, base, done := 0, 150, 0
	window := base
	for i := 0; ; i++ {
		require.Less(t, i, 500, "the job never finished")
		cmd := exec.Command(os.Args[0], "-test.run="+run, "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+e.dsn, "PHICRYPT_TEST_KEK="+e.kekPath)
		exited, err := testsvc.StartChild(cmd)
		require.NoError(t, err)
		select {
		case err := <-exited:
			require.NoError(t, err, "the worker failed on its own")
			return kills
		case <-time.After(time.Duration(20+rng.IntN(window)) * time.Millisecond):
			cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			kills++
			if st, err := migrate.Status(ctx, e.db, e.dialect, job); err == nil && st.PartitionsDone > done {
				done, window = st.PartitionsDone, base
			} else {
				window = min(2*window, 60_000)
			}
		}
	}
}

// TestReencryptWorker is the worker process of TestReencryptCrashSafety.
func TestReencryptWorker(t *testing.T) {
	dsn := os.Getenv(childEnv)
	if dsn == "" {
		t.Skip("only run by TestReencryptCrashSafety, as a separate process")
	}
	ctx := context.Background()
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	defer db.Close()
	kek, err := local.New(local.Config{Path: os.Getenv("PHICRYPT_TEST_KEK")})
	require.NoError(t, err)
	store, err := keys.NewSQLStore(ctx, db, keys.Postgres)
	require.NoError(t, err)
	kr, err := keys.New(keys.Config{KEK: kek, Store: store})
	require.NoError(t, err)
	codec, err := fields.NewCodec(fields.Config{Keyring: kr})
	require.NoError(t, err)
	_, err = migrate.Run(ctx, migrate.Config{DB: db, Dialect: keys.Postgres, Codec: codec, Keyring: kr,
		Job: "reenc-crash", Kind: migrate.Reencrypt, Spec: spec, PartitionRows: 500, BatchRows: 250})
	require.NoError(t, err)
}

// TestReencryptWaitsForApplicationWrite holds an application's update of
// a row open while a Reencrypt job reads and writes that row: the job's
// update waits for the row lock, finds the row changed since its read when
// the application commits, reads it again, and keeps the application's
// value (resealing only the row's other, still old, values).
func TestReencryptWaitsForApplicationWrite(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, kinds[1], 30)
	_, err := migrate.Run(ctx, e.config("enc", migrate.Encrypt))
	require.NoError(t, err)
	e.rotateTenants(t)
	id := e.firstIDs(t, "tenant:0", 1)[0]
	p := &appPatient{ID: id, TenantID: "tenant:0", SSN: fields.New("999-99-0000")}
	require.NoError(t, e.codec.Seal(ctx, p))
	tx, err := e.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer tx.Rollback()
	_, err = tx.Exec("UPDATE patients SET ssn = $1, ssn_index = $2 WHERE id = $3", p.SSN, p.SSNIndex, id)
	require.NoError(t, err)

	type result struct {
		r   migrate.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := migrate.Run(ctx, e.config("reenc", migrate.Reencrypt))
		done <- result{r, err}
	}()
	// Wait until the job's update waits for the application's row lock.
	require.Eventually(t, func() bool {
		var n int
		err := e.db.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'").Scan(&n)
		return err == nil && n > 0
	}, 20*time.Second, 10*time.Millisecond, "the job never waited for the row")
	require.NoError(t, tx.Commit())
	res := <-done
	require.NoError(t, res.err)
	assert.Equal(t, int64(30), res.r.Written)

	got := e.readAll(t, e.codec)
	assert.Equal(t, "999-99-0000", got[id].SSN.Get(), "the application's write survives")
	want := e.plain[id]
	assert.Equal(t, want[1], got[id].Last.Get(), "the row's other values are re-encrypted")
	v, err := migrate.Verify(ctx, migrate.VerifyConfig{DB: e.db, Dialect: e.dialect, Spec: spec, Codec: e.codec})
	require.NoError(t, err)
	assert.Equal(t, map[uint32]int64{2: 30}, v.Columns[1].Versions)
}
