// Command quickstart stores 20 synthetic patients (Synthea records) in an
// embedded SQLite database with their PHI encrypted, then reads them back,
// finds one by SSN through a blind index, and shows that a ciphertext
// copied to another patient's row fails to decrypt. Everything is local:
// a KEK file created on first run, the keys and the table in one SQLite
// file; no server.
//
//	go run ./examples/quickstart
//	go run ./examples/quickstart -dir /tmp/phicrypt-demo
//
// The KEK file (mode 0600) and the database go to .phicrypt/ in the
// current directory unless -dir says otherwise; later runs reuse them.
// Production sites keep their KEK in Vault, a cloud KMS or an HSM instead
// (see package kms), and their keys in PostgreSQL.
package main

import (
	"bytes"
	"context"
	"database/sql"
	_ "embed"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/local"
)

// patientsCSV is the first 20 patients of Synthea's sample export (see
// LICENSE-patients-csv).
//
//go:embed patients.csv
var patientsCSV []byte

// Patient is a row of the patients table. Its PHI is encrypted; the blind
// indexes let the table be searched by SSN and by last name and birth date.
type Patient struct {
	ID        string                      `phi:"id,table=patients"`
	TenantID  string                      `phi:"scope"`
	SSN       fields.String               `phi:"encrypt"`
	First     fields.String               `phi:"encrypt"`
	Last      fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
	Address   fields.String               `phi:"encrypt"`
	Gender    string
	SSNIndex  fields.BlindIndex `phi:"index,of=SSN,normalize=digits,bits=4"`
	NameDOB   fields.BlindIndex `phi:"index,of=Last+BirthDate,normalize=trim+fold+nfc,bits=4"`
}

const schema = `CREATE TABLE IF NOT EXISTS patients (
	id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL,
	ssn TEXT, first TEXT, last TEXT, birth_date TEXT, address TEXT, gender TEXT,
	ssn_index BLOB, name_dob BLOB)`

func main() {
	dir := flag.String("dir", ".phicrypt", "folder for the KEK file and the SQLite database, created if missing")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *dir); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	kek, created, err := openOrCreateKEK(filepath.Join(dir, "quickstart-kek.json"))
	if err != nil {
		return err
	}
	verb := "using"
	if created {
		verb = "created"
	}
	fmt.Fprintf(w, "%s local KEK %s in %s\n", verb, kek.KeyID(), dir)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "quickstart.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return err
	}
	defer db.Close()
	store, err := keys.NewSQLStore(ctx, db, keys.SQLite)
	if err != nil {
		return err
	}
	counted := &countingKEK{KEK: kek}
	keyring, err := keys.New(keys.Config{KEK: counted, Store: store})
	if err != nil {
		return err
	}
	codec, err := fields.NewCodec(fields.Config{Keyring: keyring})
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return err
	}

	// Seal and store the patients (one batch, one data key per tenant).
	patients, err := readPatients()
	if err != nil {
		return err
	}
	if err := codec.Seal(ctx, patients); err != nil {
		return err
	}
	for _, p := range patients {
		if _, err := db.ExecContext(ctx, `INSERT OR REPLACE INTO patients VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.ID, p.TenantID, p.SSN, p.First, p.Last, p.BirthDate, p.Address, p.Gender, p.SSNIndex, p.NameDOB); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "stored %d patients, KMS calls so far: %d\n", len(patients), counted.calls.Load())

	// What the database holds.
	first := patients[0]
	var ssn, last string
	if err := db.QueryRowContext(ctx, `SELECT ssn, last FROM patients WHERE id = ?`, first.ID).Scan(&ssn, &last); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nas stored (SELECT ssn, last FROM patients WHERE id = '%s'):\n  ssn  %s…\n  last %s…\n", first.ID, ssn[:40], last[:40])

	// Find a patient by SSN, written another way: the blind index narrows
	// the rows, Match removes its false positives.
	term := &Patient{TenantID: first.TenantID, SSN: fields.New(" " + first.SSN.Get() + " ")}
	found, candidates, err := search(ctx, db, codec, term)
	if err != nil {
		return err
	}
	rows := "rows"
	if candidates == 1 {
		rows = "row"
	}
	fmt.Fprintf(w, "\nsearch by SSN %q: %d candidate %s from a 4-bit index, %d match\n", term.SSN.Get(), candidates, rows, len(found))
	for _, p := range found {
		fmt.Fprintf(w, "  %s %s, born %s, %s\n", p.First.Get(), p.Last.Get(), p.BirthDate.Get().Format("2006-01-02"), p.Address.Get())
	}

	// The SSN ciphertext pasted into another patient's row does not decrypt.
	other := &Patient{ID: patients[3].ID, TenantID: first.TenantID}
	if err := other.SSN.Scan(ssn); err != nil {
		return err
	}
	err = codec.Open(ctx, other)
	if !errors.Is(err, envelope.ErrDecrypt) {
		return fmt.Errorf("moved ciphertext: got %v, want ErrDecrypt", err)
	}
	fmt.Fprintf(w, "\nSSN ciphertext moved to another patient's row: %v\n", err)
	fmt.Fprintf(w, "KMS calls in all: %d\n", counted.calls.Load())
	return nil
}

// search finds the patients whose SSN matches term's.
func search(ctx context.Context, db *sql.DB, codec *fields.Codec, term *Patient) (found []*Patient, candidates int, err error) {
	values, err := codec.IndexTerms(ctx, term, "SSNIndex")
	if err != nil {
		return nil, 0, err
	}
	for _, v := range values { // one per live index key version
		rows, err := db.QueryContext(ctx, `SELECT id, tenant_id, ssn, first, last, birth_date, address, gender
			FROM patients WHERE tenant_id = ? AND ssn_index = ?`, term.TenantID, v)
		if err != nil {
			return nil, 0, err
		}
		for rows.Next() {
			p := &Patient{}
			if err := rows.Scan(&p.ID, &p.TenantID, &p.SSN, &p.First, &p.Last, &p.BirthDate, &p.Address, &p.Gender); err != nil {
				rows.Close()
				return nil, 0, err
			}
			candidates++
			if err := codec.Open(ctx, p); err != nil {
				rows.Close()
				return nil, 0, err
			}
			if ok, err := codec.Match(p, term, "SSNIndex"); err != nil {
				rows.Close()
				return nil, 0, err
			} else if ok {
				found = append(found, p)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, 0, err
		}
	}
	return found, candidates, nil
}

// countingKEK counts the calls that reach the KMS.
type countingKEK struct {
	kms.KEK
	calls atomic.Int64
}

func (c *countingKEK) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	c.calls.Add(1)
	return c.KEK.Wrap(ctx, dek, aad)
}

func (c *countingKEK) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	c.calls.Add(1)
	return c.KEK.Unwrap(ctx, wk, aad)
}

// KeyID forwards the key id, so that audit events and the store name it.
func (c *countingKEK) KeyID() string { return c.KEK.(kms.Identifier).KeyID() }

// openOrCreateKEK opens the key file at path, creating it if it does not
// exist.
func openOrCreateKEK(path string) (*local.KEK, bool, error) {
	kek, err := local.New(local.Config{Path: path})
	if err == nil {
		return kek, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	kek, err = local.Create(path, local.Options{KeyID: "local:quickstart"})
	return kek, err == nil, err
}

// readPatients parses the embedded CSV; two tenants share the rows.
func readPatients() ([]*Patient, error) {
	rows, err := csv.NewReader(bytes.NewReader(patientsCSV)).ReadAll()
	if err != nil {
		return nil, err
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	var out []*Patient
	for i, r := range rows[1:] {
		born, err := time.Parse("2006-01-02", r[col["BIRTHDATE"]])
		if err != nil {
			return nil, err
		}
		out = append(out, &Patient{
			ID:        r[col["Id"]],
			TenantID:  []string{"tenant:st-mary", "tenant:mercy"}[i%2],
			SSN:       fields.New(r[col["SSN"]]),
			First:     fields.New(r[col["FIRST"]]),
			Last:      fields.New(r[col["LAST"]]),
			BirthDate: fields.New(born),
			Address:   fields.New(r[col["ADDRESS"]] + ", " + r[col["CITY"]]),
			Gender:    r[col["GENDER"]],
		})
	}
	return out, nil
}
