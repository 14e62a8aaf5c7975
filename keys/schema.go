package keys

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// SchemaVersion is the version of the tables this package creates.
const SchemaVersion = 3

// migrations[i] upgrades the schema from version i to i+1. Statements use
// {bytes} for the binary column type; a statement that starts with
// {postgres} runs on PostgreSQL only. Never edit a released migration: add
// one.
var migrations = [][]string{
	{
		`CREATE TABLE phicrypt_key_sets (
			scope TEXT NOT NULL,
			name TEXT NOT NULL,
			min_decrypt_version BIGINT NOT NULL DEFAULT 0,
			PRIMARY KEY (scope, name)
		)`,
		// Times are Unix nanoseconds (UTC); wrapped is NULL once destroyed.
		`CREATE TABLE phicrypt_keys (
			scope TEXT NOT NULL,
			name TEXT NOT NULL,
			version BIGINT NOT NULL,
			state SMALLINT NOT NULL,
			suite SMALLINT NOT NULL,
			kek_id TEXT NOT NULL,
			wrapped {bytes},
			created_at BIGINT NOT NULL,
			changed_at BIGINT NOT NULL,
			wrapped_at BIGINT NOT NULL,
			reserved BIGINT NOT NULL DEFAULT 0,
			PRIMARY KEY (scope, name, version),
			FOREIGN KEY (scope, name) REFERENCES phicrypt_key_sets (scope, name)
		)`,
		// One active version per key set, whatever a writer does.
		`CREATE UNIQUE INDEX phicrypt_keys_one_active ON phicrypt_keys (scope, name) WHERE state = 2`,
		// The tamper-evident audit log (AuditLog).
		`CREATE TABLE phicrypt_audit (
			seq BIGINT PRIMARY KEY,
			event TEXT NOT NULL,
			mac {bytes} NOT NULL
		)`,
		`CREATE TABLE phicrypt_audit_head (
			id INTEGER PRIMARY KEY CHECK (id = 1),
			seq BIGINT NOT NULL,
			mac {bytes} NOT NULL
		)`,
	},
	{
		// Metadata authentication (metadata.go): each key set's counter
		// and MAC, and the store's head over every key set's MAC.
		`ALTER TABLE phicrypt_key_sets ADD COLUMN meta_counter BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE phicrypt_key_sets ADD COLUMN meta_mac {bytes}`,
		`CREATE TABLE phicrypt_key_meta_head (
			id INTEGER PRIMARY KEY CHECK (id = 1),
			counter BIGINT NOT NULL,
			acc {bytes} NOT NULL,
			mac {bytes} NOT NULL
		)`,
	},
	{
		// Key sets in byte order, for List's pages and Under's ranges: on
		// PostgreSQL they compare scopes COLLATE "C", which the primary
		// key (in the database's collation) cannot serve, so every page
		// was a scan of the whole table. SQLite compares bytes already.
		`{postgres}CREATE INDEX phicrypt_key_sets_bytes ON phicrypt_key_sets (scope COLLATE "C", name COLLATE "C")`,
	},
}

// onlyPostgres starts a migration statement that runs on PostgreSQL only.
const onlyPostgres = "{postgres}"

// statement returns migration statement stmt for dialect d, and false when
// d skips it.
func statement(stmt string, d Dialect) (string, bool) {
	if rest, ok := strings.CutPrefix(stmt, onlyPostgres); ok {
		if d != Postgres {
			return "", false
		}
		stmt = rest
	}
	bytesType := "BYTEA"
	if d == SQLite {
		bytesType = "BLOB"
	}
	return strings.ReplaceAll(stmt, "{bytes}", bytesType), true
}

// Migrate creates the tables of this package in db, or upgrades them to
// SchemaVersion. It is safe to run from several processes at once (an
// advisory lock on PostgreSQL, an immediate transaction on SQLite) and does
// nothing when the schema is current. NewSQLStore and NewAuditLog call it.
// A database whose schema is newer than this package fails with a
// *SchemaError (ErrSchemaVersion): upgrade phicrypt.
//
// Migrate runs DDL, which needs a role that may create tables. For a role
// that may only read and write rows, install the tables with a schema
// tool from SchemaMigrations (or a privileged Migrate) and open the store
// with OpenSQLStore, which only checks the version.
func Migrate(ctx context.Context, db *sql.DB, d Dialect) error {
	return writeTx(ctx, db, d, func(q querier) error {
		if d == Postgres {
			// An arbitrary constant: "phicrypt" in ASCII.
			if _, err := q.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7020098767283744116)"); err != nil {
				return fmt.Errorf("keys: migrate: %w", err)
			}
		}
		if _, err := q.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS phicrypt_schema (version INTEGER NOT NULL)"); err != nil {
			return fmt.Errorf("keys: migrate: %w", err)
		}
		var version int
		err := q.QueryRowContext(ctx, "SELECT version FROM phicrypt_schema").Scan(&version)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := q.ExecContext(ctx, "INSERT INTO phicrypt_schema (version) VALUES (0)"); err != nil {
				return fmt.Errorf("keys: migrate: %w", err)
			}
		case err != nil:
			return fmt.Errorf("keys: migrate: %w", err)
		}
		if version > SchemaVersion {
			return &SchemaError{Tables: "keys", Have: version, Want: SchemaVersion}
		}
		for v := version; v < SchemaVersion; v++ {
			for _, stmt := range migrations[v] {
				stmt, ok := statement(stmt, d)
				if !ok {
					continue
				}
				if _, err := q.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("keys: migrate to schema version %d: %w", v+1, err)
				}
			}
			if _, err := q.ExecContext(ctx, d.Rebind("UPDATE phicrypt_schema SET version = ?"), v+1); err != nil {
				return fmt.Errorf("keys: migrate: %w", err)
			}
		}
		return nil
	})
}
