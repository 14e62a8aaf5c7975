package keys

import (
	"context"
	"errors"
	"fmt"

	"github.com/phicrypt/phicrypt/internal/sqltx"
)

// An IndexEraser erases (sets to NULL) the blind index values of the rows
// of one scope in one place where they are stored: a table described by a
// migrate.Spec (migrate.Spec.Eraser), the tables of a GORM plugin's models
// (gormphi.Plugin.Eraser), or an application's own store. Shred calls it
// so that a shredded patient's index values no longer confirm a guessed
// SSN, even where the index key is tenant-wide and survives the shred.
//
// EraseIndexes must be idempotent (Shred calls it twice, and a failed
// Shred is retried), must erase every index value of the rows whose data
// key scope is scope, atomically per store (one transaction), and returns
// the number of rows it changed.
type IndexEraser interface {
	EraseIndexes(ctx context.Context, scope string) (rows int64, err error)
}

// IndexEraserFunc adapts a function to IndexEraser: the documented
// callback for stores this module does not know.
type IndexEraserFunc func(ctx context.Context, scope string) (int64, error)

// EraseIndexes calls f.
func (f IndexEraserFunc) EraseIndexes(ctx context.Context, scope string) (int64, error) {
	return f(ctx, scope)
}

// ShredOptions configures Shred.
type ShredOptions struct {
	// Erasers erase the scope's blind index values wherever they are
	// stored. Without them Shred is Destroy.
	Erasers []IndexEraser
}

// ShredReport says what Shred did.
type ShredReport struct {
	DestroyReport
	// IndexRowsErased counts the rows whose blind index values the
	// erasers set to NULL, over both passes.
	IndexRowsErased int64
}

// A Purger erases what a store keeps of destroyed keys beyond its live
// rows. Destroy and Shred call Purge after destroying a scope's keys when
// the store implements it; SQLStore does (see its Purge).
type Purger interface {
	Purge(ctx context.Context) error
}

// ErrPurgeIncomplete means that keys were destroyed (they no longer
// decrypt anything through the store, and the destruction is recorded) but
// the store could not yet erase every older copy of their bytes from its
// files: SQLite's write-ahead log still holds them because another
// connection kept a read transaction open. Call Purge (SQLStore.Purge) again
// once that reader is done, or Shred/Destroy again, which is idempotent.
var ErrPurgeIncomplete = errors.New("keys: destroyed key material may remain in the store's files until it is purged")

// Shred crypto-shreds scope completely: it erases the scope's blind index
// values through opts.Erasers, destroys every key of the scope (Destroy),
// purges the store, and runs the erasers once more.
//
// Blind indexes need this because a tenant-wide search needs a tenant-wide
// index key: destroying a patient's keys makes their ciphertexts
// unreadable, but their index values, computed under the tenant's index
// key, would still confirm a guessed SSN. Erasing them is the only way to
// make those values unmatchable while the index key lives on. (Index keys
// in the patient's own scope, where every search is within one patient,
// are destroyed with the scope; erasing their values does no harm.)
//
// The order makes every crash recoverable by running Shred again, which is
// idempotent. The first erase comes before Destroy, so that the key
// set's state records whether a shred finished: a crash before Destroy
// leaves the keys Active (keys status shows the shred did not happen) and
// the data readable, never the keys destroyed with index values that
// nobody will erase. The second erase, after Destroy, catches rows written
// with the patient's cached key between the first erase and Destroy. A
// failure of an eraser or of the purge is returned after everything else
// was attempted; Shred reports it, and the caller retries.
//
// Replicas of the application that still cache the patient's data key can
// write for up to CacheMaxAge after Destroy, indexes included: stop writing
// for a patient before shredding them, or run Shred again after
// CacheMaxAge.
func (k *Keyring) Shred(ctx context.Context, scope string, opts ShredOptions) (ShredReport, error) {
	var report ShredReport
	if err := k.refused(ctx, Event{Op: OpDestroy, Scope: scope}, checkScope(scope)); err != nil {
		return report, err
	}
	for i, e := range opts.Erasers {
		if e == nil {
			return report, fmt.Errorf("keys: shred: eraser %d is nil", i)
		}
	}
	erase := func() error {
		var errs []error
		for _, e := range opts.Erasers {
			n, err := e.EraseIndexes(ctx, scope)
			report.IndexRowsErased += n
			if err != nil {
				errs = append(errs, fmt.Errorf("keys: shred: erase index values: %w", err))
			}
		}
		return errors.Join(errs...)
	}
	// Fail before destroying when the first erase fails: the key's state
	// keeps saying the shred did not happen.
	if err := erase(); err != nil {
		return report, err
	}
	d, derr := k.Destroy(ctx, scope)
	report.DestroyReport = d
	if derr != nil && !errors.Is(derr, ErrPurgeIncomplete) {
		return report, derr
	}
	return report, errors.Join(derr, erase())
}

// purge runs the store's Purge, if it has one. The store is the one the
// caller configured, under the metadata sealer.
func (k *Keyring) purge(ctx context.Context) error {
	p, ok := k.sealer.Store.(Purger)
	if !ok {
		return nil
	}
	return p.Purge(ctx)
}

// Purge erases from SQLite's files the old bytes of wrapped keys that were
// destroyed or rewritten. Every write of the store has secure_delete on, so
// the old bytes of a changed row are zeroed in its page and freed pages
// are zeroed, in the main file once checkpointed. What remains is the
// write-ahead log (keys.db-wal), which holds every page version written
// since its last reset, including those with the key: Purge runs a
// TRUNCATE checkpoint, which copies the log into the main file and
// truncates it to zero bytes. The shared-memory index (keys.db-shm) holds
// page numbers, not content.
//
// A TRUNCATE checkpoint cannot complete while another connection holds a
// read transaction on an older snapshot. Purge then waits and retries for
// about four seconds (less if ctx ends first) and fails with an error
// matching ErrPurgeIncomplete: the keys stay destroyed, and the caller
// calls Purge again once readers are done. Databases in rollback-journal
// mode keep no log after a commit (use journal_mode DELETE or WAL, not
// PERSIST, whose journal keeps old pages).
//
// Rows written before secure_delete was on (by phicrypt before v0.x) may
// have left copies in free space that nothing overwrites: run VACUUM once
// on such a database, after a Purge.
//
// On PostgreSQL Purge does nothing: old row versions live on as dead
// tuples until VACUUM, and in WAL segments, archives, base backups and
// replicas. See "Crypto-shredding" in the package documentation for what
// an operator does about them.
func (s *SQLStore) Purge(ctx context.Context) error {
	if err := sqltx.TruncateCheckpoint(ctx, s.db, s.dialect == Postgres); err != nil {
		return fmt.Errorf("%w: %w", ErrPurgeIncomplete, err)
	}
	return nil
}

var _ Purger = (*SQLStore)(nil)
