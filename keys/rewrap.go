package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/phicrypt/phicrypt/kms"
)

// RewrapOptions configure Rewrap.
type RewrapOptions struct {
	// WrappedBefore selects the versions to rewrap: those last wrapped
	// before it. Zero means the time Rewrap starts. To resume an
	// interrupted run, pass the Started time of its report: versions it
	// already rewrapped carry a later WrappedAt and are skipped.
	WrappedBefore time.Time
	// BatchSize is the number of keys per KMS batch (default 100).
	BatchSize int
	// Progress, if set, is called after each batch.
	Progress func(RewrapReport)
	// ToParents migrates to the key hierarchy: every key still wrapped by
	// the KEK whose scope has a parent under Config.Parent is unwrapped
	// (one KMS call each, once) and wrapped again under its parent's key.
	// A run stopped by a failure resumes when called again: migrated keys
	// are no longer wrapped by the KEK.
	ToParents bool
}

// RewrapReport counts what Rewrap did.
type RewrapReport struct {
	// Started is the WrappedBefore the run used: pass it to resume.
	Started time.Time
	// Scanned counts the versions examined, Rewrapped those rewrapped
	// by the KEK, Local those rewrapped locally under their parent's new
	// key version (no KMS call), Migrated those moved from the KEK to
	// their parent's key (ToParents), Skipped those left alone
	// (destroyed, already rewrapped, wrapped under their parent's active
	// key, or changed concurrently), Failed those whose unwrap failed
	// (tampered or foreign wrapped keys; each is audited).
	Scanned, Rewrapped, Local, Migrated, Skipped, Failed int
}

type rewrapItem struct {
	id  ID
	rec Record
}

// Rewrap re-encrypts every stored key version under the KEK's current
// version, after a KEK rotation. It touches no data: only the wrapped keys
// in the store change. It works in batches, through the KEK's batch
// rewrap (kms.Rewrapper) when it has one and Unwrap then Wrap otherwise,
// and each version is replaced only if nobody changed it meanwhile.
//
// Keys wrapped under a parent key (see "Key hierarchy" in the package
// documentation) are not sent to the KMS: only the parent keys, which
// the KEK wraps, are. A child key wrapped under an older version of its
// parent's key (after Rotate of the parent key) is rewrapped locally
// under the active one; with ToParents, keys still wrapped by the KEK
// move under their parent's key. Both resume by running Rewrap again.
//
// Rewrap stops at the first failure of the KMS or the store and returns
// its report with the error; calling it again with WrappedBefore set to
// the report's Started resumes where it stopped. A version whose unwrap
// fails is counted in Failed and audited, and the run goes on.
func (k *Keyring) Rewrap(ctx context.Context, opts RewrapOptions) (RewrapReport, error) {
	r := RewrapReport{Started: opts.WrappedBefore}
	if r.Started.IsZero() {
		r.Started = time.Now()
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 100
	}
	var batch []rewrapItem
	parents := map[string]uint32{} // active parent key versions
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := k.rewrapBatch(ctx, batch, &r)
		batch = batch[:0]
		if opts.Progress != nil {
			opts.Progress(r)
		}
		return err
	}
	after := ID{}
	for {
		sets, err := k.cfg.Store.List(ctx, "", after, opts.BatchSize)
		if err != nil {
			return r, err
		}
		for _, ks := range sets {
			after = ks.ID
			if ks.ID.Scope == TombstoneScope {
				continue // no key, ever
			}
			for _, rec := range ks.Versions {
				r.Scanned++
				if rec.State == Destroyed {
					r.Skipped++
					continue
				}
				if local, err := k.rewrapHierarchy(ctx, ks.ID, rec, opts.ToParents, parents, &r); err != nil {
					return r, err
				} else if local {
					continue
				}
				if !rec.WrappedAt.Before(r.Started) {
					r.Skipped++
					continue
				}
				batch = append(batch, rewrapItem{id: ks.ID, rec: rec})
				if len(batch) == opts.BatchSize {
					if err := flush(); err != nil {
						return r, err
					}
				}
			}
		}
		if len(sets) < opts.BatchSize {
			return r, flush()
		}
	}
}

// rewrapHierarchy handles rec, a version of id, if it belongs to the key
// hierarchy: wrapped under a parent key, or to be moved under one
// (toParents). A key wrapped under an older version of its parent's key
// (parents holds the active versions seen in this run) is rewrapped under
// the active one, locally. It reports whether it handled rec; a KMS or
// store failure is returned, an unwrap failure counted and audited.
func (k *Keyring) rewrapHierarchy(ctx context.Context, id ID, rec Record, toParents bool, parents map[string]uint32, r *RewrapReport) (bool, error) {
	parent, pv, wrapped, err := parseParentKeyID(rec.Wrapped.KeyID)
	var replaced bool
	switch {
	case wrapped && err == nil:
		var active uint32
		if active, err = k.parentActiveVersion(ctx, parent, parents); err == nil && active == 0 {
			r.Skipped++ // its parent is shredded or suspended: nothing to rewrap under
			return true, nil
		}
		if err == nil && active != pv {
			replaced, err = k.replaceWrapped(ctx, id, rec, func(raw []byte) (kms.WrappedKey, error) {
				return k.wrapUnderParent(ctx, id, rec.Version, rec.Suite, raw, parent)
			})
		}
	case wrapped:
	case toParents:
		var ok bool
		if parent, ok, err = k.parentOf(id); err == nil && !ok {
			return false, nil
		}
		if err == nil {
			replaced, err = k.replaceWrapped(ctx, id, rec, func(raw []byte) (kms.WrappedKey, error) {
				return k.wrapUnderParent(ctx, id, rec.Version, rec.Suite, raw, parent)
			})
		}
	default:
		return false, nil
	}
	e := Event{Op: OpRewrap, Scope: id.Scope, Key: id.Name, Version: rec.Version, KEKID: rec.Wrapped.KeyID, Outcome: Success}
	// A failure of this key alone (it does not open, its parent key is
	// unusable or gone) is counted and the run goes on; any other (the KMS,
	// the store, the context) stops it, to be resumed.
	keyFailure := errors.Is(err, kms.ErrUnwrapFailed) || errors.Is(err, ErrMetadataTampered) ||
		errors.Is(err, ErrKeyDestroyed) || errors.Is(err, ErrKeyUnusable) || errors.Is(err, ErrKeyNotFound)
	switch {
	case err != nil && (!keyFailure || kms.IsTransient(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return true, fmt.Errorf("keys: rewrap %s version %d: %w", id.kind(), rec.Version, err)
	case errors.Is(err, ErrKeyDestroyed):
		r.Skipped++ // its parent is shredded: nothing left to rewrap
		return true, nil
	case err != nil:
		r.Failed++
		e.Outcome, e.ErrorClass = Failure, ErrorClass(err)
		return true, k.audit(ctx, e)
	case !replaced:
		r.Skipped++
		return true, nil
	case wrapped:
		r.Local++
	default:
		r.Migrated++
	}
	return true, k.audit(ctx, e)
}

// rewrapBatch rewraps items with the KMS and stores the results.
func (k *Keyring) rewrapBatch(ctx context.Context, items []rewrapItem, r *RewrapReport) error {
	results, err := k.rewrapKeys(ctx, items)
	if err != nil {
		return fmt.Errorf("keys: rewrap: %w", err)
	}
	for i, it := range items {
		e := Event{Op: OpRewrap, Scope: it.id.Scope, Key: it.id.Name, Version: it.rec.Version, KEKID: it.rec.Wrapped.KeyID, Outcome: Success}
		if err := results[i].Err; err != nil {
			if kms.IsTransient(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("keys: rewrap %s version %d: %w", it.id.kind(), it.rec.Version, err)
			}
			r.Failed++
			e.Outcome, e.ErrorClass = Failure, ErrorClass(err)
			if err := k.audit(ctx, e); err != nil {
				return err
			}
			continue
		}
		replaced := false
		_, err := k.cfg.Store.Update(ctx, it.id, func(ks *KeySet) error {
			replaced = false
			rec := ks.Version(it.rec.Version)
			if rec == nil || rec.State == Destroyed || rec.Wrapped.KeyID != it.rec.Wrapped.KeyID ||
				!bytes.Equal(rec.Wrapped.Ciphertext, it.rec.Wrapped.Ciphertext) {
				return nil // changed meanwhile: leave it
			}
			rec.Wrapped, rec.WrappedAt = results[i].Key, time.Now()
			replaced = true
			return nil
		})
		if err != nil {
			return err
		}
		if !replaced {
			r.Skipped++
			continue
		}
		r.Rewrapped++
		e.KEKID = results[i].Key.KeyID
		if err := k.audit(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// rewrapKeys rewraps the items' keys, in one batch call when the KEK is a
// kms.Rewrapper.
func (k *Keyring) rewrapKeys(ctx context.Context, items []rewrapItem) ([]kms.RewrapResult, error) {
	aads := make([][]byte, len(items))
	wks := make([]kms.WrappedKey, len(items))
	for i, it := range items {
		aads[i] = wrapAAD(it.id, it.rec.Version, it.rec.Suite)
		wks[i] = it.rec.Wrapped
	}
	if rw, ok := k.cfg.KEK.(kms.Rewrapper); ok {
		results, err := rw.Rewrap(ctx, wks, aads)
		if err == nil && len(results) != len(items) {
			err = fmt.Errorf("KEK returned %d rewrap results for %d keys", len(results), len(items))
		}
		return results, err
	}
	results := make([]kms.RewrapResult, len(items))
	for i := range items {
		raw, err := k.cfg.KEK.Unwrap(ctx, wks[i], aads[i])
		if err == nil {
			results[i].Key, err = k.cfg.KEK.Wrap(ctx, raw, aads[i])
			clear(raw)
		}
		results[i].Err = err
		if err != nil && (kms.IsTransient(err) || ctx.Err() != nil) {
			// The KMS is down: the rest is not attempted.
			for j := i + 1; j < len(results); j++ {
				results[j].Err = err
			}
			break
		}
	}
	return results, nil
}
