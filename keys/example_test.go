package keys_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

// A schema tool (goose, Atlas, Flyway) installs the key store's tables from
// these scripts, one per schema version; the application then opens the
// store with OpenSQLStore, which runs no DDL.
func ExampleSchemaMigrations() {
	scripts, err := keys.SchemaMigrations(keys.Postgres)
	if err != nil {
		log.Fatal(err)
	}
	for i, script := range scripts {
		fmt.Printf("V%d__phicrypt_keys.sql: %d statements\n", i+1, strings.Count(script, ";\n"))
	}
	// Output:
	// V1__phicrypt_keys.sql: 8 statements
	// V2__phicrypt_keys.sql: 4 statements
	// V3__phicrypt_keys.sql: 2 statements
}

// OpenSQLStore checks the schema version and creates nothing: a database
// role that may only read and write rows can run it.
func ExampleOpenSQLStore() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "phicrypt-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "keys.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	_, err = keys.OpenSQLStore(ctx, db, keys.SQLite)
	fmt.Println(err)

	scripts, _ := keys.SchemaMigrations(keys.SQLite)
	for _, script := range scripts { // the schema tool's part
		if _, err := db.ExecContext(ctx, script); err != nil {
			log.Fatal(err)
		}
	}
	store, err := keys.OpenSQLStore(ctx, db, keys.SQLite)
	fmt.Println(store != nil, err)
	// Output:
	// keys: keys tables not installed (want schema version 3)
	// true <nil>
}

// VerifyMetadata checks every key set's MAC and the store's head; keep the
// head it reports outside the database and pass it back as the anchor of
// the next run.
func ExampleKeyring_VerifyMetadata() {
	ctx := context.Background()
	data, err := local.Generate(local.Options{KeyID: "local:example"})
	if err != nil {
		log.Fatal(err)
	}
	kek, err := local.New(local.Config{Data: data})
	if err != nil {
		log.Fatal(err)
	}
	kr, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore()})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := kr.EncryptionKey(ctx, "tenant:st-mary"); err != nil {
		log.Fatal(err)
	}
	first, err := kr.VerifyMetadata(ctx, keys.MetadataVerifyOptions{})
	if err != nil {
		log.Fatal(err)
	}
	anchor := first.Head // stored outside the database

	if _, err := kr.Rotate(ctx, keys.DataKey("tenant:st-mary")); err != nil {
		log.Fatal(err)
	}
	report, err := kr.VerifyMetadata(ctx, keys.MetadataVerifyOptions{Anchor: &anchor})
	fmt.Println(report.Sets, len(report.Problems), report.Head.Counter > anchor.Counter, err)
	// Output:
	// 1 0 true <nil>
}
