// Command sqlpatients stores patients with encrypted PHI through plain
// database/sql and through pgx's native API, without an ORM: Codec.Seal
// before Exec, Scan then Codec.Open after a query, and blind-index
// searches with a post-filter.
//
//	go run ./examples/sqlpatients                            # database/sql on SQLite (pure Go)
//	go run ./examples/sqlpatients -dsn postgres://...        # database/sql on PostgreSQL (pgx's stdlib driver)
//	go run ./examples/sqlpatients -dsn postgres://... -pgx   # pgx's native API
//
// # Column types
//
// Encrypted values are text armor by default ("phicrypt:" and base64url):
// put them in text or varchar columns. With fields.Config{Binary: true}
// they are bytes, about a third smaller: put them in bytea (PostgreSQL) or
// BLOB (SQLite, MySQL) columns. Either way, a column holds about 50 bytes
// more than its plaintext (header, key version, nonce, tag). Blind indexes
// are bytea/BLOB, or text with the index tag's text option; index them
// together with the tenant column, since a search always names its tenant.
// This program uses text armor on SQLite and binary on PostgreSQL; see
// SQLiteSchema and PostgresSchema.
//
// # database/sql
//
// Encrypted values and blind indexes are driver.Valuer and sql.Scanner:
// pass them to Exec and Scan as they are. An Encrypted that has not been
// sealed refuses to become a driver value (fields.ErrNotSealed), so a
// forgotten Seal fails instead of writing plaintext.
//
// # pgx
//
// pgx's native API (pgx.Conn, pgxpool.Pool) encodes any driver.Valuer
// argument through its Value method and scans into any sql.Scanner, via
// the fallbacks of its pgtype.Map: no registration is needed. Unsealed
// values fail the same way (fields.ErrNotSealed, wrapped by pgx).
package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

// Patient is a row of the patients table.
type Patient struct {
	ID        string                      `phi:"id,table=patients"`
	TenantID  string                      `phi:"scope"`
	MRN       fields.String               `phi:"encrypt"`
	SSN       fields.String               `phi:"encrypt"`
	First     fields.String               `phi:"encrypt"`
	Last      fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
	Address   fields.String               `phi:"encrypt"`
	Gender    string
	SSNIndex  fields.BlindIndex `phi:"index,of=SSN,normalize=digits,bits=8"`
	MRNIndex  fields.BlindIndex `phi:"index,of=MRN,normalize=alnum+fold,bits=8"`
	NameDOB   fields.BlindIndex `phi:"index,of=Last+BirthDate,normalize=trim+fold+nfc,bits=8"`
}

// columns lists the table's columns in the order of (*Patient).fields.
const columns = "id, tenant_id, mrn, ssn, first, last, birth_date, address, gender, ssn_index, mrn_index, name_dob"

// fields returns pointers to p's columns, for Exec (each is a
// driver.Valuer) and Scan (each is an sql.Scanner).
func (p *Patient) fields() []any {
	return []any{&p.ID, &p.TenantID, &p.MRN, &p.SSN, &p.First, &p.Last, &p.BirthDate, &p.Address, &p.Gender,
		&p.SSNIndex, &p.MRNIndex, &p.NameDOB}
}

// values returns p's column values, for Exec.
func (p *Patient) values() []any {
	return []any{p.ID, p.TenantID, p.MRN, p.SSN, p.First, p.Last, p.BirthDate, p.Address, p.Gender,
		p.SSNIndex, p.MRNIndex, p.NameDOB}
}

// SQLiteSchema is the table on SQLite: text armor in TEXT columns, blind
// indexes in BLOBs, each indexed with the tenant.
const SQLiteSchema = `
CREATE TABLE IF NOT EXISTS patients (
	id         TEXT PRIMARY KEY,
	tenant_id  TEXT NOT NULL,
	mrn        TEXT,  -- "phicrypt:..." text armor
	ssn        TEXT,
	first      TEXT,
	last       TEXT,
	birth_date TEXT,
	address    TEXT,
	gender     TEXT,  -- not PHI on its own: plaintext
	ssn_index  BLOB,  -- blind indexes
	mrn_index  BLOB,
	name_dob   BLOB
);
CREATE INDEX IF NOT EXISTS patients_ssn ON patients (tenant_id, ssn_index);
CREATE INDEX IF NOT EXISTS patients_mrn ON patients (tenant_id, mrn_index);
CREATE INDEX IF NOT EXISTS patients_name_dob ON patients (tenant_id, name_dob);`

// PostgresSchema is the table on PostgreSQL: binary ciphertexts
// (fields.Config{Binary: true}) and blind indexes in bytea columns.
const PostgresSchema = `
CREATE TABLE IF NOT EXISTS patients (
	id         text PRIMARY KEY,
	tenant_id  text NOT NULL,
	mrn        bytea,  -- binary ciphertexts
	ssn        bytea,
	first      bytea,
	last       bytea,
	birth_date bytea,
	address    bytea,
	gender     text,
	ssn_index  bytea,  -- blind indexes
	mrn_index  bytea,
	name_dob   bytea
);
CREATE INDEX IF NOT EXISTS patients_ssn ON patients (tenant_id, ssn_index);
CREATE INDEX IF NOT EXISTS patients_mrn ON patients (tenant_id, mrn_index);
CREATE INDEX IF NOT EXISTS patients_name_dob ON patients (tenant_id, name_dob);`

// Store is what the program needs of a database; SQLStore (database/sql)
// and PgxStore (pgx) implement it.
type Store interface {
	// Insert seals and inserts patients, in one transaction.
	Insert(ctx context.Context, patients []*Patient) error
	// Get reads and opens one patient.
	Get(ctx context.Context, tenant, id string) (*Patient, error)
	// Search returns the patients whose blind index index matches
	// term's plaintext.
	Search(ctx context.Context, term *Patient, index string) ([]*Patient, error)
}

// ErrNotFound means no patient has the id.
var ErrNotFound = errors.New("patient not found")

//go:embed patients.csv
var patientsCSV []byte

func main() {
	dsn := flag.String("dsn", "", "PostgreSQL URL (postgres://...); empty for SQLite in a temporary folder")
	usePgx := flag.Bool("pgx", false, "use pgx's native API (with -dsn) instead of database/sql")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *dsn, *usePgx); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer, dsn string, usePgx bool) error {
	dir, err := os.MkdirTemp("", "sqlpatients")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kek, err := local.Create(filepath.Join(dir, "kek.json"), local.Options{KeyID: "local:sqlpatients"})
	if err != nil {
		return err
	}
	keyring, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore()})
	if err != nil {
		return err
	}
	var store Store
	var closer io.Closer
	switch {
	case dsn == "":
		var s *SQLStore
		if s, closer, err = OpenSQLite(ctx, filepath.Join(dir, "patients.db"), keyring); err == nil {
			store = s
		}
	case usePgx:
		var s *PgxStore
		if s, closer, err = OpenPgx(ctx, dsn, keyring); err == nil {
			store = s
		}
	default:
		var s *SQLStore
		if s, closer, err = OpenPostgres(ctx, dsn, keyring); err == nil {
			store = s
		}
	}
	if err != nil {
		return err
	}
	defer closer.Close()

	patients, err := ReadPatients(bytes.NewReader(patientsCSV), 2)
	if err != nil {
		return err
	}
	if err := store.Insert(ctx, patients); err != nil {
		return err
	}
	fmt.Fprintf(w, "stored %d patients\n", len(patients))
	first := patients[0]
	got, err := store.Get(ctx, first.TenantID, first.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "read back %s: %s %s, born %s\n", got.ID, got.First.Get(), got.Last.Get(), got.BirthDate.Get().Format(time.DateOnly))
	for _, s := range []struct {
		index string
		term  *Patient
	}{
		{"SSNIndex", &Patient{TenantID: first.TenantID, SSN: fields.New(strings.ReplaceAll(first.SSN.Get(), "-", ""))}},
		{"MRNIndex", &Patient{TenantID: first.TenantID, MRN: fields.New(strings.ToLower(first.MRN.Get()))}},
		{"NameDOB", &Patient{TenantID: first.TenantID, Last: fields.New(strings.ToUpper(first.Last.Get())), BirthDate: fields.New(first.BirthDate.Get())}},
	} {
		found, err := store.Search(ctx, s.term, s.index)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "search by %s: %d found\n", s.index, len(found))
	}
	return nil
}

// MRN derives a medical record number from a Synthea id, since the CSV
// has none: "MRN-" and the id's first 10 hex digits, upper case.
func MRN(id string) string {
	return "MRN-" + strings.ToUpper(strings.ReplaceAll(id, "-", "")[:10])
}

// ReadPatients parses a Synthea patients CSV into unsealed Patients,
// spread over tenants tenants.
func ReadPatients(r io.Reader, tenants int) ([]*Patient, error) {
	rows, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, err
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	var out []*Patient
	for i, r := range rows[1:] {
		get := func(name string) string { return r[col[name]] }
		born, err := time.Parse(time.DateOnly, get("BIRTHDATE"))
		if err != nil {
			return nil, err
		}
		out = append(out, &Patient{
			ID: get("Id"), TenantID: fmt.Sprintf("tenant:%d", i%tenants), MRN: fields.New(MRN(get("Id"))),
			SSN: fields.New(get("SSN")), First: fields.New(get("FIRST")), Last: fields.New(get("LAST")),
			BirthDate: fields.New(born), Address: fields.New(get("ADDRESS") + ", " + get("CITY")), Gender: get("GENDER"),
		})
	}
	return out, nil
}

// postFilter opens the candidates of a search and keeps those whose
// plaintext matches: a truncated index also matches other values.
func postFilter(ctx context.Context, codec *fields.Codec, candidates []*Patient, search *fields.Search) ([]*Patient, error) {
	if len(candidates) == 0 {
		return nil, nil
	}
	if err := codec.Open(ctx, candidates); err != nil {
		return nil, err
	}
	var found []*Patient
	for _, p := range candidates {
		ok, err := search.Match(p)
		if err != nil {
			return nil, err
		}
		if ok {
			found = append(found, p)
		}
	}
	return found, nil
}
