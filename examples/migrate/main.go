// Command migrate is a migration script written with the library API: it
// loads the 1,174 Synthea patients into a plaintext table (as a legacy EHR
// would have them), encrypts the table online with the migration engine,
// verifies it, and reads it back the way the application does, in strict
// mode.
//
//	go run ./examples/migrate -dsn postgres://user@localhost:5432/ehr
//	go run ./examples/migrate            # an SQLite file in a temporary folder
//
// The KEK is a local key file created in a temporary folder; the keys live
// in the same database as the table.
package main

import (
	"context"
	"database/sql"
	_ "embed"
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
	"github.com/phicrypt/phicrypt/migrate"
)

//go:embed patients.csv
var patientsCSV string

// Patient is the application's view of the table once encrypted.
type Patient struct {
	ID        string                      `phi:"id,table=patients"`
	TenantID  string                      `phi:"scope"`
	SSN       fields.String               `phi:"encrypt"`
	First     fields.String               `phi:"encrypt"`
	Last      fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
	Address   fields.String               `phi:"encrypt"`
	SSNIndex  fields.BlindIndex           `phi:"index,of=SSN,normalize=digits,bits=8"`
}

// spec tells the engine what the application's tags say.
var spec = migrate.Spec{
	Table: "patients", ID: "id", ScopeColumn: "tenant_id",
	Columns: []migrate.Column{
		{Name: "ssn", Type: "string"},
		{Name: "first", Type: "string"},
		{Name: "last", Type: "string"},
		{Name: "birth_date", Type: "time"},
		{Name: "address", Type: "string"},
	},
	Indexes: []migrate.Index{{Column: "ssn_index", Of: []string{"ssn"}, Normalize: "digits", Bits: 8}},
}

func main() {
	dsn := flag.String("dsn", "", "PostgreSQL URL (default: an SQLite file in a temporary folder)")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *dsn); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer, dsn string) error {
	dir, err := os.MkdirTemp("", "phicrypt-migrate-example-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	driver, dialect, blob := "pgx", keys.Postgres, "BYTEA"
	if dsn == "" {
		driver, dialect, blob = "sqlite", keys.SQLite, "BLOB"
		dsn = "file:" + filepath.Join(dir, "ehr.db") + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()

	// 1. The legacy table, in plaintext.
	n, err := loadLegacy(ctx, db, dialect, blob)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "loaded %d patients in plaintext\n", n)

	// 2. Keys: a local KEK, the key store in the same database.
	kek, err := local.Create(filepath.Join(dir, "kek.json"), local.Options{KeyID: "local:migrate-example"})
	if err != nil {
		return err
	}
	store, err := keys.NewSQLStore(ctx, db, dialect)
	if err != nil {
		return err
	}
	keyring, err := keys.New(keys.Config{KEK: kek, Store: store})
	if err != nil {
		return err
	}
	codec, err := fields.NewCodec(fields.Config{Keyring: keyring})
	if err != nil {
		return err
	}

	// 3. Encrypt the table online.
	report, err := migrate.Run(ctx, migrate.Config{DB: db, Dialect: dialect, Codec: codec, Keyring: keyring,
		Kind: migrate.Encrypt, Spec: spec, PartitionRows: 200,
		Progress: func(p migrate.Progress) {
			if p.Done == p.Total {
				fmt.Fprintf(w, "progress: %d/%d rows\n", p.Done, p.Total)
			}
		}})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "encrypted: %d rows scanned, %d written, in %d partitions\n", report.Scanned, report.Written, report.Partitions)

	// 4. Verify, then read as the application does (strict mode).
	v, err := migrate.Verify(ctx, migrate.VerifyConfig{DB: db, Dialect: dialect, Spec: spec, Codec: codec})
	if err != nil {
		return err
	}
	fmt.Fprint(w, v.String())
	if !v.Complete() {
		return fmt.Errorf("migration incomplete")
	}
	var p Patient
	err = db.QueryRowContext(ctx, dialect.Rebind("SELECT id, tenant_id, ssn, first, last, birth_date, address, ssn_index FROM patients ORDER BY id LIMIT 1")).
		Scan(&p.ID, &p.TenantID, &p.SSN, &p.First, &p.Last, &p.BirthDate, &p.Address, &p.SSNIndex)
	if err != nil {
		return err
	}
	if err := codec.Open(ctx, &p); err != nil {
		return err
	}
	fmt.Fprintf(w, "first row, decrypted: %s %s, born %s\n", p.First.Get(), p.Last.Get(), p.BirthDate.Get().Format("2006-01-02"))
	return nil
}

// loadLegacy creates the plaintext table and loads the CSV into it.
func loadLegacy(ctx context.Context, db *sql.DB, d keys.Dialect, blob string) (int, error) {
	if _, err := db.ExecContext(ctx, `CREATE TABLE patients (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL,
		ssn TEXT, first TEXT, last TEXT, birth_date TEXT, address TEXT, ssn_index `+blob+`)`); err != nil {
		return 0, err
	}
	rows, err := csv.NewReader(strings.NewReader(patientsCSV)).ReadAll()
	if err != nil {
		return 0, err
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	for i, r := range rows[1:] {
		if _, err := tx.ExecContext(ctx, d.Rebind("INSERT INTO patients VALUES (?, ?, ?, ?, ?, ?, ?, NULL)"),
			r[col["Id"]], []string{"tenant:st-mary", "tenant:mercy"}[i%2], r[col["SSN"]], r[col["FIRST"]], r[col["LAST"]],
			r[col["BIRTHDATE"]], r[col["ADDRESS"]]+", "+r[col["CITY"]]); err != nil {
			return 0, err
		}
	}
	return len(rows) - 1, tx.Commit()
}
