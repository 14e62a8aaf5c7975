package migrate

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/phicrypt/phicrypt/internal/sqltx"
	"github.com/phicrypt/phicrypt/keys"
)

// Migrate creates the job bookkeeping tables if they do not exist: the jobs
// and their partitions, the checkpoints of a migration. Run calls it.
func Migrate(ctx context.Context, db *sql.DB, d keys.Dialect) error {
	return sqltx.Write(ctx, db, d == keys.Postgres, "migrate", func(q sqltx.Querier) error {
		if d == keys.Postgres {
			// CREATE TABLE IF NOT EXISTS races with itself on PostgreSQL.
			if _, err := q.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('phicrypt-migrate-schema'))"); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
		}
		return createTables(ctx, q)
	})
}

func createTables(ctx context.Context, q sqltx.Querier) error {
	for _, stmt := range []string{
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
	} {
		if _, err := q.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate: create tables: %w", err)
		}
	}
	return nil
}
