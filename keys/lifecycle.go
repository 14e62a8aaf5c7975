package keys

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/phicrypt/phicrypt/kms"
)

// forget drops the cached versions of id and its cached active version, so
// that this process sees a change at once. Other processes see it within
// CacheMaxAge.
func (k *Keyring) forget(id ID, versions ...uint32) {
	k.activeCache(id).Delete(string(cacheKey(nil, id, 0)))
	for _, v := range versions {
		k.keyCache(id).Delete(string(cacheKey(nil, id, v)))
	}
}

// checkID checks id for a lifecycle operation, and audits a refusal: an
// attempt to change the keys of a reserved scope, such as the audit log's,
// is on record.
func (k *Keyring) checkID(ctx context.Context, op Op, id ID) error {
	return k.refused(ctx, Event{Op: op, Scope: id.Scope, Key: id.Name}, id.check())
}

// refused audits e as a failure with err, if err is not nil, and returns
// err (joined with ErrAudit if a fail-closed Auditor failed).
func (k *Keyring) refused(ctx context.Context, e Event, err error) error {
	if err == nil {
		return nil
	}
	e.Outcome, e.ErrorClass = Failure, ErrorClass(err)
	if aerr := k.audit(ctx, e); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// Rotate makes a new version of key set id active and the current one
// decrypt-only, and returns the new version. Data encrypted under older
// versions still decrypts; the migration engine re-encrypts it. A key set
// whose latest version is destroyed is not rotated (ErrKeyDestroyed). An
// empty scope or an unknown name fails with ErrInvalidID, a reserved scope
// with ErrReservedScope.
func (k *Keyring) Rotate(ctx context.Context, id ID) (uint32, error) {
	if err := k.checkID(ctx, OpRotate, id); err != nil {
		return 0, err
	}
	for attempt := 1; ; attempt++ {
		v, err := k.rotate(ctx, id)
		if !retryRotation(ctx, err, attempt) {
			return v, err
		}
	}
}

func (k *Keyring) rotate(ctx context.Context, id ID) (uint32, error) {
	ks, err := k.cfg.Store.Get(ctx, id)
	if errors.Is(err, ErrKeyNotFound) {
		ks, err = &KeySet{ID: id}, nil
	}
	if err != nil {
		return 0, err
	}
	if err := k.precheckDestroyed(ctx, id); err != nil {
		return 0, err
	}
	fresh, err := k.newVersion(ctx, id, ks.Latest()+1)
	if err != nil {
		return 0, err
	}
	epoch := k.keyCache(id).Epoch() // see tryLoadActive
	var from uint32
	_, err = k.cfg.Store.Update(ctx, id, func(ks *KeySet) error {
		from = 0
		if n := len(ks.Versions); n > 0 && ks.Versions[n-1].State == Destroyed {
			return fmt.Errorf("%w: %s", ErrKeyDestroyed, id.kind())
		}
		if ks.Latest()+1 != fresh.rec.Version {
			return errRetryRotation
		}
		if cur := ks.Active(); cur != nil {
			cur.State, cur.Changed = DecryptOnly, time.Now()
			from = cur.Version
		}
		ks.Versions = append(ks.Versions, fresh.rec)
		return nil
	})
	if err != nil {
		return 0, err
	}
	// Cached before forget, whose Deletes would otherwise keep it out.
	k.keyCache(id).AddSince(string(cacheKey(nil, id, fresh.rec.Version)), fresh.key, epoch)
	k.forget(id, from)
	if err := k.auditCreated(ctx, id, fresh.rec, true); err != nil {
		return 0, err
	}
	return fresh.rec.Version, nil
}

// SetState moves version v of key set id to state to, if SP 800-57 allows
// it (see CanTransition); otherwise it fails with a *TransitionError.
// Moving to Destroyed erases the version's wrapped key from the store. A
// version may become Active only when no other version is. IDs are
// checked as in Rotate.
func (k *Keyring) SetState(ctx context.Context, id ID, v uint32, to State) error {
	op := OpStateChange
	if to == Destroyed {
		op = OpDestroy
	}
	if err := k.checkID(ctx, op, id); err != nil {
		return err
	}
	var from State
	_, err := k.cfg.Store.Update(ctx, id, func(ks *KeySet) error {
		rec := ks.Version(v)
		if rec == nil {
			return fmt.Errorf("%w: %s version %d", ErrKeyNotFound, id.kind(), v)
		}
		from = rec.State
		if !CanTransition(from, to) {
			return &TransitionError{ID: id, Version: v, From: from, To: to}
		}
		if cur := ks.Active(); to == Active && cur != nil {
			return fmt.Errorf("%w: version %d is active; rotate instead", &TransitionError{ID: id, Version: v, From: from, To: to}, cur.Version)
		}
		rec.State, rec.Changed = to, time.Now()
		if to == Destroyed {
			rec.Wrapped = kms.WrappedKey{}
		}
		return nil
	})
	k.forget(id, v)
	e := Event{Op: OpStateChange, Scope: id.Scope, Key: id.Name, Version: v, From: from, To: to, Outcome: Success}
	if to == Destroyed {
		e.Op = OpDestroy
	}
	if err != nil {
		e.Outcome, e.ErrorClass = Failure, ErrorClass(err)
		k.audit(ctx, e)
		return err
	}
	return k.audit(ctx, e)
}

// SetMinDecryptVersion refuses decryption with versions of key set id older
// than v (ErrKeyUnusable), without destroying them: the step before
// retiring a version once no row uses it. v must not exceed the latest
// version; zero removes the minimum. IDs are checked as in Rotate.
func (k *Keyring) SetMinDecryptVersion(ctx context.Context, id ID, v uint32) error {
	if err := k.checkID(ctx, OpMinDecryptVersion, id); err != nil {
		return err
	}
	var older []uint32
	_, err := k.cfg.Store.Update(ctx, id, func(ks *KeySet) error {
		if v > ks.Latest() {
			return fmt.Errorf("%w: %s has no version %d", ErrKeyNotFound, id.kind(), v)
		}
		ks.MinDecryptVersion = v
		older = older[:0]
		for _, r := range ks.Versions {
			if r.Version < v {
				older = append(older, r.Version)
			}
		}
		return nil
	})
	e := Event{Op: OpMinDecryptVersion, Scope: id.Scope, Key: id.Name, Version: v, Outcome: Success}
	if err != nil {
		e.Outcome, e.ErrorClass = Failure, ErrorClass(err)
		k.audit(ctx, e)
		return err
	}
	k.forget(id, older...)
	return k.audit(ctx, e)
}

// DestroyReport says what Destroy erased.
type DestroyReport struct {
	// KeySets is the number of key sets of the scope (data, index and
	// parent keys), ChildKeySets the number of its children's key sets
	// destroyed after its parent key (see "Key hierarchy" in the package
	// documentation), Versions the number of versions destroyed now.
	KeySets, ChildKeySets, Versions int
}

// Destroy crypto-shreds scope: every version of every key set of the scope
// (its data key and its blind index keys) is destroyed, its wrapped key
// erased from the store, so everything encrypted under them becomes
// unreadable, here at once and in other processes sharing the store within
// their CacheMaxAge. Active and suspended versions are first deactivated;
// each step is audited. Other scopes are unaffected. New keys are never
// created for a destroyed scope (ErrKeyDestroyed): before it lists the
// scope's key sets, Destroy records the scope as destroyed in the store (a
// tombstone, see TombstoneScope), even a scope without keys, and from then
// on no key set of the scope gets a new version, nor does a key under its
// parent key. A key being created while Destroy runs is either refused or
// destroyed with the others.
//
// When the store is a Purger (SQLStore), Destroy then purges it, so that
// no copy of the erased keys remains in its files (SQLite: the
// write-ahead log); if that cannot complete yet, Destroy fails with an
// error matching ErrPurgeIncomplete after the keys were destroyed, and
// calling it again (or Purge) finishes the job. Destroy leaves blind index
// values computed under keys of other scopes (a tenant-wide index key) in
// place: Shred erases them too.
//
// Destruction is only as final as the store's copies: see "Crypto-shredding"
// in the package documentation for backups and PostgreSQL.
//
// When scope is a parent (it has a parent key, ParentKeyName), Destroy
// destroys that key first, in one store write: from then on every child
// key wrapped under it is unrecoverable, everywhere, once other processes'
// caches expire (CacheMaxAge). It then destroys the scope's other keys,
// then every child's key sets (children found by the parent their stored
// keys name, or by Config.Parent for keys wrapped by the KEK), which reads
// the whole store; a failure there is finished by calling Destroy again.
// With Config.Parent set, a scope that has no parent key yet but has no
// parent of its own either (a tenant, under TenantParent) is searched for
// children the same way: its patients may still be wrapped by the KEK.
//
// An empty scope fails with ErrInvalidID. A reserved scope fails with
// ErrReservedScope: the audit log's chain key cannot be shredded.
func (k *Keyring) Destroy(ctx context.Context, scope string) (DestroyReport, error) {
	var report DestroyReport
	if err := k.refused(ctx, Event{Op: OpDestroy, Scope: scope}, checkScope(scope)); err != nil {
		return report, err
	}
	// The parent key first: one write makes every child unrecoverable.
	parentKS, err := k.cfg.Store.Get(ctx, ParentKey(scope))
	isParent := err == nil
	if err != nil && !errors.Is(err, ErrKeyNotFound) {
		return report, err
	}
	if isParent {
		n, err := k.destroySet(ctx, parentKS.ID)
		report.Versions += n
		if err != nil {
			return report, err
		}
	}
	// Then the tombstone, before the scope's key sets are listed: a key
	// set created after it is refused, one created before it is listed.
	if err := k.tombstone(ctx, scope); err != nil {
		k.audit(ctx, Event{Op: OpDestroy, Scope: scope, Outcome: Failure, ErrorClass: ErrorClass(err)})
		return report, err
	}
	after := ID{}
	for {
		sets, err := k.cfg.Store.List(ctx, scope, after, 100)
		if err != nil {
			return report, err
		}
		for _, ks := range sets {
			if ks.ID.Name == ParentKeyName && isParent {
				report.KeySets++ // destroyed first
				after = ks.ID
				continue
			}
			// (A parent key created since it was looked for is
			// destroyed here, and its children below.)
			isParent = isParent || ks.ID.Name == ParentKeyName
			n, err := k.destroySet(ctx, ks.ID)
			report.Versions += n
			if err != nil {
				return report, err
			}
			report.KeySets++
			after = ks.ID
		}
		if len(sets) < 100 {
			break
		}
	}
	if isParent || k.mayBeParent(scope) {
		if err := k.destroyChildren(ctx, scope, &report); err != nil {
			return report, err
		}
	}
	k.stats.shreds.Add(1)
	return report, k.purge(ctx)
}

// destroySet destroys every version of id.
func (k *Keyring) destroySet(ctx context.Context, id ID) (int, error) {
	var events []Event
	var versions []uint32
	_, err := k.cfg.Store.Update(ctx, id, func(ks *KeySet) error {
		events, versions = k.destroyVersions(ks, events[:0], versions[:0])
		return nil
	})
	k.forget(id, versions...)
	if err != nil {
		k.audit(ctx, Event{Op: OpDestroy, Scope: id.Scope, Key: id.Name, Outcome: Failure, ErrorClass: ErrorClass(err)})
		return 0, err
	}
	return k.auditDestroyed(ctx, events)
}

// destroyVersions destroys every version of ks, and appends the events to
// audit and the versions to forget.
func (k *Keyring) destroyVersions(ks *KeySet, events []Event, versions []uint32) ([]Event, []uint32) {
	id, now := ks.ID, time.Now()
	for i := range ks.Versions {
		rec := &ks.Versions[i]
		versions = append(versions, rec.Version)
		if rec.State == Active || rec.State == Suspended {
			events = append(events, Event{Op: OpStateChange, Scope: id.Scope, Key: id.Name, Version: rec.Version, From: rec.State, To: DecryptOnly, Outcome: Success})
			rec.State = DecryptOnly
		}
		if rec.State == Destroyed {
			continue
		}
		events = append(events, Event{Op: OpDestroy, Scope: id.Scope, Key: id.Name, Version: rec.Version, From: rec.State, To: Destroyed, Outcome: Success})
		rec.State, rec.Changed, rec.Wrapped = Destroyed, now, kms.WrappedKey{}
	}
	return events, versions
}

// auditDestroyed audits events and returns the number of versions
// destroyed, with the first failure of a fail-closed Auditor.
func (k *Keyring) auditDestroyed(ctx context.Context, events []Event) (int, error) {
	destroyed := 0
	var auditErr error
	for _, e := range events {
		if e.Op == OpDestroy {
			destroyed++
		}
		if err := k.audit(ctx, e); err != nil && auditErr == nil {
			auditErr = err
		}
	}
	return destroyed, auditErr
}

// Status returns the key sets of scope (every scope when empty), with
// their versions' states and dates; wrapped keys are included but never
// printed by their String methods.
func (k *Keyring) Status(ctx context.Context, scope string) ([]*KeySet, error) {
	var out []*KeySet
	after := ID{}
	for {
		sets, err := k.cfg.Store.List(ctx, scope, after, 500)
		if err != nil {
			return nil, err
		}
		out = append(out, sets...)
		if len(sets) < 500 {
			return out, nil
		}
		after = sets[len(sets)-1].ID
	}
}

// ActiveVersion returns the active version of key set id without taking
// from its budget or creating it: zero if the set has no active version.
// It reads the cache, or the store on a miss. The migration engine uses it
// to find values encrypted under older versions. IDs are checked as in
// Rotate.
func (k *Keyring) ActiveVersion(ctx context.Context, id ID) (uint32, error) {
	if err := id.check(); err != nil {
		return 0, err
	}
	if a, ok := k.activeCache(id).Lookup(string(cacheKey(nil, id, 0))); ok {
		return a.version, nil
	}
	ks, err := k.cfg.Store.Get(ctx, id)
	if errors.Is(err, ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if cur := ks.Active(); cur != nil {
		return cur.Version, nil
	}
	return 0, nil
}
