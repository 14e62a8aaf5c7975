package sqltx

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SecureDelete turns SQLite's secure_delete on for the connection of q, so
// that the content of deleted rows, and the old bytes of rows updated in
// place, is overwritten with zeros in its page (and freed pages are zeroed)
// rather than left in free space. It may run inside a transaction. It is a
// no-op on PostgreSQL, which has no such setting.
func SecureDelete(ctx context.Context, q Querier, postgres bool) error {
	if postgres {
		return nil
	}
	if _, err := q.ExecContext(ctx, "PRAGMA secure_delete = ON"); err != nil {
		return fmt.Errorf("secure_delete: %w", err)
	}
	return nil
}

// ErrCheckpointBusy means that a SQLite TRUNCATE checkpoint could not
// complete because another connection kept a read transaction open on an
// older snapshot: the write-ahead log still holds the frames it covers.
var ErrCheckpointBusy = errors.New("write-ahead log checkpoint blocked by an open read transaction")

// Checkpoint attempts and wait bound a TRUNCATE checkpoint.
const (
	checkpointAttempts = 5
	checkpointBusy     = 400 * time.Millisecond // busy timeout per attempt
)

// TruncateCheckpoint copies every frame of a SQLite database's write-ahead
// log into the main file and truncates the log to zero bytes, so that no
// older version of a page remains in it. A checkpoint cannot pass a reader
// that still sees an older snapshot: each attempt waits up to a short busy
// timeout for readers, and TruncateCheckpoint retries a few times with
// backoff (about 4 seconds in all, or until ctx ends) before it fails with
// ErrCheckpointBusy. A database not in WAL mode has nothing to checkpoint.
// It is a no-op on PostgreSQL.
func TruncateCheckpoint(ctx context.Context, db *sql.DB, postgres bool) error {
	if postgres {
		return nil
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", checkpointBusy.Milliseconds())); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	// Restore the busy timeout Write uses for the pooled connection.
	defer conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA busy_timeout = 10000")
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var busy, frames, done int64
		err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &done)
		if err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		if busy == 0 {
			return nil
		}
		if attempt == checkpointAttempts {
			return fmt.Errorf("checkpoint: %w (%d attempts)", ErrCheckpointBusy, attempt)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("checkpoint: %w: %w", ErrCheckpointBusy, ctx.Err())
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}
