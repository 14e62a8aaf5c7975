package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/phicrypt/phicrypt/internal/sqltx"
	"github.com/phicrypt/phicrypt/keys"
)

// SchemaVersion is the version of the job bookkeeping tables this package
// creates, recorded in phicrypt_migration_schema.
const SchemaVersion = 1

// tables[i] upgrades the bookkeeping tables from version i to i+1. Never
// edit a released version: add one.
var tables = [][]string{
	{
		`CREATE TABLE IF NOT EXISTS phicrypt_migration_jobs (
			job TEXT PRIMARY KEY,
			kind TEXT NOT NULL,
			spec TEXT NOT NULL,
			total BIGINT NOT NULL,
			created_at BIGINT NOT NULL,
			finished_at BIGINT
		)`,
		// lo is inclusive and hi exclusive; NULL is unbounded.
		`CREATE TABLE IF NOT EXISTS phicrypt_migration_parts (
			job TEXT NOT NULL,
			part INTEGER NOT NULL,
			lo TEXT,
			hi TEXT,
			done INTEGER NOT NULL DEFAULT 0,
			rows_seen BIGINT NOT NULL DEFAULT 0,
			rows_written BIGINT NOT NULL DEFAULT 0,
			worker TEXT,
			finished_at BIGINT,
			PRIMARY KEY (job, part)
		)`,
	},
}

// Migrate creates the job bookkeeping tables, the checkpoints of a
// migration (jobs and their partitions), or upgrades them to
// SchemaVersion. Run and Status call it unless Config.CheckSchemaOnly is
// set. It runs DDL: a role that may only read and write rows installs the
// tables through a schema tool from SchemaMigrations instead.
func Migrate(ctx context.Context, db *sql.DB, d keys.Dialect) error {
	return sqltx.Write(ctx, db, d == keys.Postgres, "migrate", func(q sqltx.Querier) error {
		if d == keys.Postgres {
			// CREATE TABLE IF NOT EXISTS races with itself on PostgreSQL.
			if _, err := q.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('phicrypt-migrate-schema'))"); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
		}
		// Releases before the version table created the version 1
		// tables with IF NOT EXISTS: running version 1 again over them
		// is harmless.
		if _, err := q.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS phicrypt_migration_schema (version INTEGER NOT NULL)"); err != nil {
			return fmt.Errorf("migrate: create tables: %w", err)
		}
		var version int
		err := q.QueryRowContext(ctx, "SELECT version FROM phicrypt_migration_schema").Scan(&version)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := q.ExecContext(ctx, "INSERT INTO phicrypt_migration_schema (version) VALUES (0)"); err != nil {
				return fmt.Errorf("migrate: create tables: %w", err)
			}
		case err != nil:
			return fmt.Errorf("migrate: create tables: %w", err)
		}
		if version > SchemaVersion {
			return &keys.SchemaError{Tables: "migrate", Have: version, Want: SchemaVersion}
		}
		for v := version; v < SchemaVersion; v++ {
			for _, stmt := range tables[v] {
				if _, err := q.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("migrate: create tables: %w", err)
				}
			}
			if _, err := q.ExecContext(ctx, d.Rebind("UPDATE phicrypt_migration_schema SET version = ?"), v+1); err != nil {
				return fmt.Errorf("migrate: create tables: %w", err)
			}
		}
		return nil
	})
}

// SchemaMigrations returns the SQL scripts that create and upgrade the job
// bookkeeping tables, for schema tools such as goose, Atlas or Flyway:
// script i upgrades them from version i to i+1 and records the version,
// as Migrate does. The statements are the same in both dialects and end
// with ";\n". See keys.SchemaMigrations for the key store's tables.
func SchemaMigrations() []string {
	out := make([]string, len(tables))
	for v, stmts := range tables {
		var b strings.Builder
		if v == 0 {
			b.WriteString("CREATE TABLE IF NOT EXISTS phicrypt_migration_schema (version INTEGER NOT NULL);\n")
			b.WriteString("INSERT INTO phicrypt_migration_schema (version) VALUES (0);\n")
		}
		for _, stmt := range stmts {
			b.WriteString(stmt)
			b.WriteString(";\n")
		}
		fmt.Fprintf(&b, "UPDATE phicrypt_migration_schema SET version = %d;\n", v+1)
		out[v] = b.String()
	}
	return out
}

// CheckSchema checks, without any DDL, that db holds the job bookkeeping
// tables at SchemaVersion; otherwise it fails with a *keys.SchemaError
// matching keys.ErrSchemaVersion.
func CheckSchema(ctx context.Context, db *sql.DB, d keys.Dialect) error {
	have, err := keys.SchemaVersionOf(ctx, db, d, "phicrypt_migration_schema")
	if err != nil {
		return err
	}
	if have == 0 {
		// Releases before the version table made the version 1 tables
		// without recording it.
		if legacy, err := tableExists(ctx, db, d, "phicrypt_migration_parts"); err != nil {
			return err
		} else if legacy {
			have = 1
		}
	}
	if have != SchemaVersion {
		return &keys.SchemaError{Tables: "migrate", Have: have, Want: SchemaVersion}
	}
	return nil
}

// tableExists reports whether table exists, without DDL.
func tableExists(ctx context.Context, db *sql.DB, d keys.Dialect, table string) (bool, error) {
	var exists bool
	var err error
	if d == keys.Postgres {
		err = db.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists)
	} else {
		err = db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)", table).Scan(&exists)
	}
	if err != nil {
		return false, fmt.Errorf("migrate: check schema: %w", err)
	}
	return exists, nil
}
