package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/internal/benchcmp"
)

// The benchmarks insert and select 10,000 patients on PostgreSQL, with
// encryption (Seal and Open, binary ciphertexts in bytea, three blind
// indexes) and with the same code on plain text columns (the same three
// indexes, over the plaintext). One op is the whole 10,000 rows.
//
//	go test -run '^$' -bench Postgres -benchtime 5x ./examples/sqlpatients

const benchRows = 10_000

// plainPatient is Patient without encryption.
type plainPatient struct {
	ID, TenantID, MRN, SSN, First, Last, BirthDate, Address, Gender string
}

const plainSchema = `
CREATE TABLE IF NOT EXISTS plain_patients (
	id text PRIMARY KEY, tenant_id text NOT NULL,
	mrn text, ssn text, first text, last text, birth_date text, address text, gender text);
CREATE INDEX IF NOT EXISTS plain_patients_ssn ON plain_patients (tenant_id, ssn);
CREATE INDEX IF NOT EXISTS plain_patients_mrn ON plain_patients (tenant_id, mrn);
CREATE INDEX IF NOT EXISTS plain_patients_name_dob ON plain_patients (tenant_id, last, birth_date);`

const plainColumns = "id, tenant_id, mrn, ssn, first, last, birth_date, address, gender"

func (p *plainPatient) values() []any {
	return []any{p.ID, p.TenantID, p.MRN, p.SSN, p.First, p.Last, p.BirthDate, p.Address, p.Gender}
}

func (p *plainPatient) fields() []any {
	return []any{&p.ID, &p.TenantID, &p.MRN, &p.SSN, &p.First, &p.Last, &p.BirthDate, &p.Address, &p.Gender}
}

// benchPatients returns 10,000 patients (the Synthea ones, repeated with
// new ids), encrypted and plain.
func benchPatients(b *testing.B) ([]*Patient, []*plainPatient) {
	all := loadSynthea(b)
	enc := make([]*Patient, benchRows)
	plain := make([]*plainPatient, benchRows)
	for i := range enc {
		s := all[i%len(all)]
		id := fmt.Sprintf("%08d-%s", i, s.ID[9:])
		enc[i] = &Patient{ID: id, TenantID: s.TenantID, MRN: fields.New(MRN(id)), SSN: fields.New(s.SSN.Get()), First: fields.New(s.First.Get()),
			Last: fields.New(s.Last.Get()), BirthDate: fields.New(s.BirthDate.Get()), Address: fields.New(s.Address.Get()), Gender: s.Gender}
		plain[i] = &plainPatient{ID: id, TenantID: s.TenantID, MRN: MRN(id), SSN: s.SSN.Get(), First: s.First.Get(), Last: s.Last.Get(),
			BirthDate: s.BirthDate.Get().Format(time.DateOnly), Address: s.Address.Get(), Gender: s.Gender}
	}
	return enc, plain
}

func BenchmarkPostgres(b *testing.B) {
	ctx := context.Background()
	enc, plain := benchPatients(b)
	sqlStore, c1, err := OpenPostgres(ctx, pgDSN(b), newKeyring(b))
	require.NoError(b, err)
	defer c1.Close()
	pgxStore, c2, err := OpenPgx(ctx, pgDSN(b), newKeyring(b))
	require.NoError(b, err)
	defer c2.Close()
	_, err = sqlStore.db.ExecContext(ctx, plainSchema)
	require.NoError(b, err)
	_, err = pgxStore.pool.Exec(ctx, plainSchema)
	require.NoError(b, err)
	// The selects read the rows the inserts leave behind. Insert them
	// once here too, so that a -bench pattern that skips the inserts
	// (Postgres/.*/vs-, say) still reads 10,000 patients.
	require.NoError(b, sqlStore.Insert(ctx, enc))
	require.NoError(b, sqlInsertPlain(ctx, sqlStore.db, plain))
	require.NoError(b, pgxStore.Insert(ctx, enc))
	require.NoError(b, pgxInsertPlain(ctx, pgxStore.pool, plain))
	raw := newRawGCM()
	_, err = sqlStore.db.ExecContext(ctx, rawSchema)
	require.NoError(b, err)
	_, err = pgxStore.pool.Exec(ctx, rawSchema)
	require.NoError(b, err)
	require.NoError(b, sqlInsertRaw(ctx, sqlStore.db, raw, plain))
	require.NoError(b, pgxInsertRaw(ctx, pgxStore.pool, raw, plain))

	truncate := func(b *testing.B, s Store, table string) {
		b.StopTimer()
		require.NoError(b, exec(b, s, "TRUNCATE "+table))
		b.StartTimer()
	}

	b.Run("sql/insert/encrypted", func(b *testing.B) {
		for range b.N {
			truncate(b, sqlStore, "patients")
			require.NoError(b, sqlStore.Insert(ctx, enc))
		}
		reportRows(b)
	})
	b.Run("sql/insert/plain", func(b *testing.B) {
		for range b.N {
			truncate(b, sqlStore, "plain_patients")
			require.NoError(b, sqlInsertPlain(ctx, sqlStore.db, plain))
		}
		reportRows(b)
	})
	// Opening while scanning, with fields.Pipeline, of all twelve
	// columns or of the nine of the plain table.
	sqlPipelined := func(cols string) func() (int, error) {
		return func() (int, error) {
			r, err := sqlStore.db.QueryContext(ctx, "SELECT "+cols+" FROM patients")
			if err != nil {
				return 0, err
			}
			defer r.Close()
			ps, err := openPipelined(ctx, sqlStore.codec, r, cols)
			return len(ps), err
		}
	}
	runSelects(b, "sql", []read{
		{"encrypted", "plain raw-gcm", func() (int, error) {
			ps, err := sqlSelect(ctx, sqlStore, columns)
			return len(ps), err
		}},
		// The plain table's nine columns: the same query without the
		// blind index columns, which a read that will not write the row
		// back has no use for.
		{"encrypted-9", "plain", func() (int, error) {
			ps, err := sqlSelect(ctx, sqlStore, plainColumns)
			return len(ps), err
		}},
		// Scanning alone, without Open: what the larger rows cost
		// before any decryption (the difference to encrypted is Open's).
		{"scan-only", "plain", func() (int, error) {
			ps, err := sqlScan(ctx, sqlStore, columns)
			return len(ps), err
		}},
		{"pipelined", "plain", sqlPipelined(columns)},
		{"pipelined-9", "plain", sqlPipelined(plainColumns)},
		// The floor: the same rows, encrypted by hand (rawgcm_bench_test.go).
		{"raw-gcm", "plain", func() (int, error) { return sqlSelectRaw(ctx, sqlStore.db, raw) }},
		{"plain", "", func() (int, error) {
			ps, err := sqlSelectPlain(ctx, sqlStore.db)
			return len(ps), err
		}},
	})
	b.Run("pgx/insert/encrypted", func(b *testing.B) {
		for range b.N {
			truncate(b, pgxStore, "patients")
			require.NoError(b, pgxStore.Insert(ctx, enc))
		}
		reportRows(b)
	})
	b.Run("pgx/insert/plain", func(b *testing.B) {
		for range b.N {
			truncate(b, pgxStore, "plain_patients")
			require.NoError(b, pgxInsertPlain(ctx, pgxStore.pool, plain))
		}
		reportRows(b)
	})
	pgxPipelined := func(cols string) func() (int, error) {
		return func() (int, error) {
			r, err := pgxStore.pool.Query(ctx, "SELECT "+cols+" FROM patients")
			if err != nil {
				return 0, err
			}
			defer r.Close()
			ps, err := openPipelined(ctx, pgxStore.codec, r, cols)
			return len(ps), err
		}
	}
	// The server and the wire alone: every row read, none scanned. What
	// is left for scanning and Open before the encrypted rate falls below
	// a given share of plain's.
	wire := func(table, cols string) func() (int, error) {
		return func() (int, error) {
			r, err := pgxStore.pool.Query(ctx, "SELECT "+cols+" FROM "+table)
			if err != nil {
				return 0, err
			}
			defer r.Close()
			n := 0
			for r.Next() {
				n++
			}
			return n, r.Err()
		}
	}
	runSelects(b, "pgx", []read{
		{"encrypted", "plain raw-gcm", func() (int, error) {
			r, err := pgxStore.pool.Query(ctx, "SELECT "+columns+" FROM patients")
			if err != nil {
				return 0, err
			}
			ps, err := pgx.CollectRows(r, func(row pgx.CollectableRow) (*Patient, error) {
				p := &Patient{}
				return p, row.Scan(p.fields()...)
			})
			if err != nil {
				return 0, err
			}
			return len(ps), pgxStore.codec.Open(ctx, ps)
		}},
		{"pipelined", "plain raw-gcm", pgxPipelined(columns)},
		{"pipelined-9", "plain", pgxPipelined(plainColumns)},
		{"raw-gcm", "plain", func() (int, error) { return pgxSelectRaw(ctx, pgxStore.pool, raw) }},
		{"wire-encrypted", "wire-plain", wire("patients", columns)},
		{"wire-plain", "", wire("plain_patients", plainColumns)},
		{"plain", "", func() (int, error) {
			r, err := pgxStore.pool.Query(ctx, "SELECT "+plainColumns+" FROM plain_patients")
			if err != nil {
				return 0, err
			}
			ps, err := pgx.CollectRows(r, func(row pgx.CollectableRow) (*plainPatient, error) {
				p := &plainPatient{}
				return p, row.Scan(p.fields()...)
			})
			return len(ps), err
		}},
	})
}

// read is one way of reading the benchRows patients: f returns how many
// it read; bases names the reads it is compared with, if any, separated by
// spaces.
type read struct {
	name, bases string
	f           func() (int, error)
}

// runSelects benchmarks each of reads on its own, as
// driver/select/NAME in rows/s, then each that has bases against each
// base, as driver/vs-BASE/NAME (see benchcmp.Versus).
func runSelects(b *testing.B, driver string, reads []read) {
	byName := map[string]read{}
	for _, r := range reads {
		byName[r.name] = r
		b.Run(driver+"/select/"+r.name, func(b *testing.B) {
			for range b.N {
				readAll(b, r.f)
			}
			reportRows(b)
		})
	}
	for _, r := range reads {
		for _, name := range strings.Fields(r.bases) {
			base := byName[name]
			b.Run(driver+"/vs-"+name+"/"+r.name, func(b *testing.B) {
				benchcmp.Versus(b, func() { readAll(b, r.f) }, func() { readAll(b, base.f) })
			})
		}
	}
}

// reportRows reports b's rate in patients per second.
func reportRows(b *testing.B) {
	b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// readAll runs read and checks that it read every patient.
func readAll(b *testing.B, read func() (int, error)) {
	n, err := read()
	require.NoError(b, err)
	require.Equal(b, benchRows, n)
}

func pgxInsertPlain(ctx context.Context, pool *pgxpool.Pool, plain []*plainPatient) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		for _, p := range plain {
			batch.Queue("INSERT INTO plain_patients ("+plainColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", p.values()...)
		}
		return tx.SendBatch(ctx, batch).Close()
	})
}

func sqlInsertPlain(ctx context.Context, db *sql.DB, plain []*plainPatient) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, "INSERT INTO plain_patients ("+plainColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, p := range plain {
		if _, err := stmt.ExecContext(ctx, p.values()...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// sqlSelect reads and opens every patient's cols (see sqlScan).
func sqlSelect(ctx context.Context, s *SQLStore, cols string) ([]*Patient, error) {
	ps, err := sqlScan(ctx, s, cols)
	if err != nil {
		return nil, err
	}
	return ps, s.codec.Open(ctx, ps)
}

// sqlScan reads every patient's cols, a prefix of columns (plainColumns
// is the nine columns without the blind indexes), without opening them.
func sqlScan(ctx context.Context, s *SQLStore, cols string) ([]*Patient, error) {
	r, err := s.db.QueryContext(ctx, "SELECT "+cols+" FROM patients")
	if err != nil {
		return nil, err
	}
	defer r.Close()
	n := strings.Count(cols, ",") + 1
	var ps []*Patient
	for r.Next() {
		p := &Patient{}
		if err := r.Scan(p.fields()[:n]...); err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, r.Err()
}

// rowScanner is what *sql.Rows and pgx.Rows have in common.
type rowScanner interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// openPipelined scans every patient of r, whose columns are cols (a
// prefix of columns), opening them with a fields.Pipeline while it scans
// more.
func openPipelined(ctx context.Context, codec *fields.Codec, r rowScanner, cols string) ([]*Patient, error) {
	n := strings.Count(cols, ",") + 1
	pl := codec.OpenPipeline(ctx)
	var ps []*Patient
	for r.Next() {
		p := &Patient{}
		if err := r.Scan(p.fields()[:n]...); err != nil {
			return nil, errors.Join(err, pl.Wait())
		}
		ps = append(ps, p)
		if err := pl.Add(p); err != nil {
			break // Wait returns the first failure
		}
	}
	if err := errors.Join(r.Err(), pl.Wait()); err != nil {
		return nil, err
	}
	return ps, nil
}

func sqlSelectPlain(ctx context.Context, db *sql.DB) ([]*plainPatient, error) {
	r, err := db.QueryContext(ctx, "SELECT "+plainColumns+" FROM plain_patients")
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var ps []*plainPatient
	for r.Next() {
		p := &plainPatient{}
		if err := r.Scan(p.fields()...); err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, r.Err()
}
