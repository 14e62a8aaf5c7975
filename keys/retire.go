package keys

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A UsageChecker counts the stored values that still use each version of a
// key set: the rows of the tables it knows whose ciphertexts (for a data
// key) or blind index values (for an index key) in the key set's scope name
// that version. migrate.Usage implements it by reading the tables of
// migrate specs (as migrate.Verify does); an application with other stores
// supplies its own, or UsageCheckerFunc. The guarantee of Retire and
// DestroyVersion is only as complete as the checker: a table it does not
// read is not counted.
type UsageChecker interface {
	KeyUsage(ctx context.Context, id ID) (map[uint32]int64, error)
}

// UsageCheckerFunc adapts a function to UsageChecker.
type UsageCheckerFunc func(ctx context.Context, id ID) (map[uint32]int64, error)

// KeyUsage calls f.
func (f UsageCheckerFunc) KeyUsage(ctx context.Context, id ID) (map[uint32]int64, error) {
	return f(ctx, id)
}

// ErrStillInUse means that a key version cannot be retired or destroyed
// yet: stored values still use it (an *InUseError), or it was active so
// recently that replicas may still encrypt under it.
var ErrStillInUse = errors.New("keys: key version still in use")

// InUseError is a refused retirement: Rows values still use Version of the
// key set ID. Its message names the key set's kind and the version, never
// the scope. It matches ErrStillInUse.
type InUseError struct {
	ID      ID
	Version uint32
	Rows    int64
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("keys: %s version %d is still used by %d rows: re-encrypt them first (migrate reencrypt or reindex)", e.ID.kind(), e.Version, e.Rows)
}

// Unwrap returns ErrStillInUse.
func (e *InUseError) Unwrap() error { return ErrStillInUse }

// errNilChecker refuses a guarded retirement without a check.
var errNilChecker = errors.New("keys: a guarded retirement needs a UsageChecker")

// Retire is the guarded SetMinDecryptVersion: it refuses decryption with the
// versions of key set id older than v only once check proves that no
// stored value uses any of them, as go-kms-wrapping refuses to delete a key
// version its foreign keys still reference. Otherwise it fails with an
// *InUseError (ErrStillInUse) naming the oldest version in use and its row
// count, and changes nothing.
//
// A version that left the Active state less than CacheMaxAge ago is
// refused too (ErrStillInUse): other replicas may still encrypt new rows
// under it from their caches, after check counted. Rotate, wait
// CacheMaxAge, re-encrypt, then retire. Refusals are audited like
// SetMinDecryptVersion's failures.
func (k *Keyring) Retire(ctx context.Context, id ID, v uint32, check UsageChecker) error {
	if err := k.checkID(ctx, OpMinDecryptVersion, id); err != nil {
		return err
	}
	e := Event{Op: OpMinDecryptVersion, Scope: id.Scope, Key: id.Name, Version: v}
	if err := k.guard(ctx, id, check, func(version uint32) bool { return version < v }); err != nil {
		return k.refused(ctx, e, err)
	}
	return k.SetMinDecryptVersion(ctx, id, v)
}

// DestroyVersion is the guarded SetState(id, v, Destroyed): it destroys
// version v of key set id only once check proves that no stored value uses
// it, and otherwise fails with an *InUseError (ErrStillInUse) and changes
// nothing. Like Retire, it refuses a version that was active less than
// CacheMaxAge ago. To shred a whole scope, whatever uses it, use Destroy
// or Shred.
//
// For a parent key (ParentKeyName), what uses a version is the children's
// keys wrapped under it: DestroyVersion counts them itself, reading the
// whole store, and check may be nil. Rewrap moves them to the active
// version first.
func (k *Keyring) DestroyVersion(ctx context.Context, id ID, v uint32, check UsageChecker) error {
	if err := k.checkID(ctx, OpDestroy, id); err != nil {
		return err
	}
	e := Event{Op: OpDestroy, Scope: id.Scope, Key: id.Name, Version: v}
	if err := k.guard(ctx, id, check, func(version uint32) bool { return version == v }); err != nil {
		return k.refused(ctx, e, err)
	}
	return k.SetState(ctx, id, v, Destroyed)
}

// guard checks that no version of id that retiring selects is active,
// recently active, or used by a stored value according to check.
func (k *Keyring) guard(ctx context.Context, id ID, check UsageChecker, retiring func(uint32) bool) error {
	if id.Name == ParentKeyName {
		check = UsageCheckerFunc(k.childUsage)
	}
	if check == nil {
		return errNilChecker
	}
	ks, err := k.cfg.Store.Get(ctx, id)
	if err != nil {
		return err
	}
	cutoff := time.Now().Add(-k.cfg.CacheMaxAge)
	destroyed := map[uint32]bool{}
	for _, r := range ks.Versions {
		if !retiring(r.Version) {
			continue
		}
		destroyed[r.Version] = r.State == Destroyed
		switch {
		case r.State == Active:
			return fmt.Errorf("%w: %s version %d is active: rotate first", ErrStillInUse, id.kind(), r.Version)
		case r.State == DecryptOnly && r.Changed.After(cutoff):
			return fmt.Errorf("%w: %s version %d was active less than CacheMaxAge (%v) ago, and replicas may still encrypt under it: retire it after %s",
				ErrStillInUse, id.kind(), r.Version, k.cfg.CacheMaxAge, r.Changed.Add(k.cfg.CacheMaxAge).UTC().Format(time.RFC3339))
		}
	}
	usage, err := check.KeyUsage(ctx, id)
	if err != nil {
		return fmt.Errorf("keys: usage check of %s: %w", id.kind(), err)
	}
	var oldest *InUseError
	for version, rows := range usage {
		// Values under a destroyed version are unreadable already:
		// retiring it again changes nothing for them.
		if rows > 0 && retiring(version) && !destroyed[version] && (oldest == nil || version < oldest.Version) {
			oldest = &InUseError{ID: id, Version: version, Rows: rows}
		}
	}
	if oldest != nil {
		return oldest
	}
	return nil
}
