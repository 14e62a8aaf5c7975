package migrate_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
	"github.com/phicrypt/phicrypt/migrate"
)

// exampleDB returns a SQLite database with a legacy patients table whose
// SSNs are plaintext, and a keyring and codec whose keys live in the same
// database.
func exampleDB(dir string) (*sql.DB, *keys.Keyring, *fields.Codec) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "ehr.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE patients (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, ssn TEXT)`); err != nil {
		log.Fatal(err)
	}
	for i, ssn := range []string{"999-12-3456", "999-65-4321", "999-00-1111"} {
		if _, err := db.ExecContext(ctx, `INSERT INTO patients VALUES (?, 'tenant:st-mary', ?)`, fmt.Sprintf("p%d", i+1), ssn); err != nil {
			log.Fatal(err)
		}
	}
	kek, err := local.Create(filepath.Join(dir, "kek.json"), local.Options{KeyID: "local:hospital-main"})
	if err != nil {
		log.Fatal(err)
	}
	store, err := keys.NewSQLStore(ctx, db, keys.SQLite)
	if err != nil {
		log.Fatal(err)
	}
	keyring, err := keys.New(keys.Config{KEK: kek, Store: store})
	if err != nil {
		log.Fatal(err)
	}
	codec, err := fields.NewCodec(fields.Config{Keyring: keyring})
	if err != nil {
		log.Fatal(err)
	}
	return db, keyring, codec
}

// patients is the table's spec: what the application's struct tags say.
var patients = migrate.Spec{
	Table: "patients", ID: "id", ScopeColumn: "tenant_id",
	Columns: []migrate.Column{{Name: "ssn", Type: "string"}},
}

// Encrypt a legacy plaintext column in place; a killed run resumes where
// it stopped when run again.
func ExampleRun() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "phicrypt-migrate")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, keyring, codec := exampleDB(dir)
	defer db.Close()

	report, err := migrate.Run(ctx, migrate.Config{
		DB: db, Dialect: keys.SQLite, Codec: codec, Keyring: keyring,
		Kind: migrate.Encrypt, Spec: patients,
	})
	fmt.Printf("scanned %d, written %d, %v\n", report.Scanned, report.Written, err)

	var ssn string
	if err := db.QueryRowContext(ctx, `SELECT ssn FROM patients WHERE id = 'p1'`).Scan(&ssn); err != nil {
		log.Fatal(err)
	}
	fmt.Println(ssn[:len("phicrypt:")])
	// Output:
	// scanned 3, written 3, <nil>
	// phicrypt:
}

// Verify counts what is left to encrypt, and with a codec checks that
// every row decrypts: the condition for turning migration mode off.
func ExampleVerify() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "phicrypt-migrate")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, keyring, codec := exampleDB(dir)
	defer db.Close()

	verify := migrate.VerifyConfig{DB: db, Dialect: keys.SQLite, Spec: patients, Codec: codec}
	before, err := migrate.Verify(ctx, verify)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("before: plaintext %d, complete %v\n", before.Columns[0].Plaintext, before.Complete())

	if _, err := migrate.Run(ctx, migrate.Config{
		DB: db, Dialect: keys.SQLite, Codec: codec, Keyring: keyring,
		Kind: migrate.Encrypt, Spec: patients,
	}); err != nil {
		log.Fatal(err)
	}
	after, err := migrate.Verify(ctx, verify)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("after: plaintext %d, under key version 1: %d, complete %v\n",
		after.Columns[0].Plaintext, after.Columns[0].Versions[1], after.Complete())
	// Output:
	// before: plaintext 3, complete false
	// after: plaintext 0, under key version 1: 3, complete true
}
