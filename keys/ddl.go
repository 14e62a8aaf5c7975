package keys

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/phicrypt/phicrypt/kms"
)

// ErrSchemaVersion means the database's schema is not the version this
// package needs: not installed, older (run the migrations), or newer
// (upgrade phicrypt). The error is a *SchemaError.
var ErrSchemaVersion = errors.New("keys: database schema version mismatch")

// SchemaError is a schema version mismatch found by CheckSchema.
type SchemaError struct {
	// Tables names the tables concerned: "keys" (key store and audit log)
	// or "migrate" (migration jobs).
	Tables string
	// Have is the database's version (zero: not installed), Want the
	// version this phicrypt needs.
	Have, Want int
}

func (e *SchemaError) Error() string {
	switch {
	case e.Have == 0:
		return fmt.Sprintf("keys: %s tables not installed (want schema version %d)", e.Tables, e.Want)
	case e.Have < e.Want:
		return fmt.Sprintf("keys: %s tables at schema version %d, older than %d: run the migrations", e.Tables, e.Have, e.Want)
	}
	return fmt.Sprintf("keys: %s tables at schema version %d, newer than this phicrypt's %d: upgrade phicrypt", e.Tables, e.Have, e.Want)
}

// Unwrap returns ErrSchemaVersion, and also ErrNoStore when the key
// store's tables are not installed at all.
func (e *SchemaError) Unwrap() []error {
	if e.Have == 0 && e.Tables == "keys" {
		return []error{ErrSchemaVersion, ErrNoStore}
	}
	return []error{ErrSchemaVersion}
}

// SchemaMigrations returns the SQL scripts that create and upgrade this
// package's tables (key store, metadata head, audit log) in dialect d, for
// schema tools such as goose, Atlas or Flyway: script i upgrades the
// schema from version i to i+1 and records the new version, exactly as
// Migrate does. Save script i as, for example, Flyway's
// V<n>__phicrypt_keys_<i+1>.sql; never edit a script once applied, since
// a later phicrypt adds scripts and never changes these. Statements end
// with ";\n". A role that runs no DDL then opens the store with
// OpenSQLStore.
func SchemaMigrations(d Dialect) ([]string, error) {
	if err := checkDialect(d); err != nil {
		return nil, err
	}
	out := make([]string, len(migrations))
	for v, stmts := range migrations {
		var b strings.Builder
		if v == 0 {
			b.WriteString("CREATE TABLE IF NOT EXISTS phicrypt_schema (version INTEGER NOT NULL);\n")
			b.WriteString("INSERT INTO phicrypt_schema (version) VALUES (0);\n")
		}
		for _, stmt := range stmts {
			if stmt, ok := statement(stmt, d); ok {
				b.WriteString(stmt)
				b.WriteString(";\n")
			}
		}
		fmt.Fprintf(&b, "UPDATE phicrypt_schema SET version = %d;\n", v+1)
		out[v] = b.String()
	}
	return out, nil
}

func checkDialect(d Dialect) error {
	if d != Postgres && d != SQLite {
		return fmt.Errorf("keys: unknown dialect %d", d)
	}
	return nil
}

// CheckSchema checks, without any DDL, that db holds this package's
// tables at SchemaVersion; otherwise it fails with a *SchemaError matching
// ErrSchemaVersion. It only reads, so a role that may read and write rows
// and nothing more can run it.
func CheckSchema(ctx context.Context, db *sql.DB, d Dialect) error {
	have, err := SchemaVersionOf(ctx, db, d, "phicrypt_schema")
	if err != nil {
		return err
	}
	if have != SchemaVersion {
		return &SchemaError{Tables: "keys", Have: have, Want: SchemaVersion}
	}
	return nil
}

// SchemaVersionOf returns the version recorded in table, a phicrypt
// schema table with one row and a version column, or zero if the table
// does not exist or is empty. It runs no DDL. The migrate package uses it
// for its own tables.
func SchemaVersionOf(ctx context.Context, db *sql.DB, d Dialect, table string) (int, error) {
	var exists bool
	var err error
	switch d {
	case Postgres:
		err = db.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists)
	case SQLite:
		err = db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)", table).Scan(&exists)
	default:
		return 0, fmt.Errorf("keys: unknown dialect %d", d)
	}
	if err != nil {
		return 0, fmt.Errorf("keys: check schema: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var version int
	err = db.QueryRowContext(ctx, "SELECT version FROM "+table).Scan(&version)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("keys: check schema: %w", err)
	}
	return version, nil
}

// OpenSQLStore returns a store in db like NewSQLStore, but never creates
// or changes a table: it only checks the schema version (CheckSchema), and
// fails with an error matching ErrNoStore when there is no key store in db
// (so a mistyped database is never turned into an empty store) and
// ErrSchemaVersion when its tables need the migrations. Use it when the
// application's database role may read and write rows but not create or
// alter tables, and the tables are installed by a schema tool from
// SchemaMigrations, or by a privileged run of Migrate.
func OpenSQLStore(ctx context.Context, db *sql.DB, dialect Dialect) (*SQLStore, error) {
	if db == nil {
		return nil, errors.New("keys: nil database")
	}
	if err := checkDialect(dialect); err != nil {
		return nil, err
	}
	if err := CheckSchema(ctx, db, dialect); err != nil {
		return nil, err
	}
	return &SQLStore{db: db, dialect: dialect}, nil
}

// NewAuditLogIn returns the audit log of store's database, creating its
// chain key (wrapped by kek) on first use, like NewAuditLog, but runs no
// DDL: the store's tables are already in place (a store from OpenSQLStore
// or NewSQLStore).
func NewAuditLogIn(ctx context.Context, store *SQLStore, kek kms.KEK) (*AuditLog, error) {
	return auditLogIn(ctx, store, kek, true)
}
