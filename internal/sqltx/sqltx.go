// Package sqltx runs write transactions the same way on PostgreSQL and
// SQLite, for the packages that keep state in the application's database
// (keys, migrate).
package sqltx

import (
	"context"
	"database/sql"
	"fmt"
)

// Querier is what a transaction offers.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Write runs fn in a write transaction and commits it if fn succeeds,
// returning fn's error as is and others prefixed by pkg (e.g. "keys"). On
// PostgreSQL it is a normal transaction in which fn takes the row locks it
// needs. On SQLite it is BEGIN IMMEDIATE on a dedicated connection with a
// busy timeout: the database's one writer lock is taken up front, so two
// writers never deadlock upgrading read locks.
func Write(ctx context.Context, db *sql.DB, postgres bool, pkg string, fn func(q Querier) error) error {
	if postgres {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("%s: begin: %w", pkg, err)
		}
		if err := fn(tx); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("%s: commit: %w", pkg, err)
		}
		return nil
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", pkg, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = 10000"); err != nil {
		return fmt.Errorf("%s: %w", pkg, err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("%s: begin: %w", pkg, err)
	}
	if err := fn(conn); err != nil {
		// A cancelled ctx must not keep the rollback from running.
		conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return err
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return fmt.Errorf("%s: commit: %w", pkg, err)
	}
	return nil
}
