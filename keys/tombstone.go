package keys

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/phicrypt/phicrypt/kms"
)

// TombstoneScope is the reserved scope in which Destroy records every
// scope it destroys, before it destroys any key: a key set named after the
// destroyed scope, with one destroyed version and no key material (a
// tombstone). From that write on, no key set of the destroyed scope gets a
// new version, whatever key set it is (data, deterministic, index or
// parent key, existing or not), and neither does a key wrapped under its
// parent key (see "Key hierarchy"): it fails with ErrKeyDestroyed.
// Tombstones carry a metadata MAC and count in the metadata head like
// other key sets; Status lists them with the reserved scopes, and no
// Keyring method changes them.
const TombstoneScope = ReservedScopePrefix + "destroyed"

// tombstoneID returns the ID of scope's tombstone.
func tombstoneID(scope string) ID { return ID{Scope: TombstoneScope, Name: scope} }

// errScopeDestroyed refuses a new key version in a destroyed scope, or
// wrapped under the parent key of one.
var errScopeDestroyed = fmt.Errorf("%w: the scope (or its parent) was destroyed", ErrKeyDestroyed)

// isReservedScope reports whether scope belongs to phicrypt itself.
func isReservedScope(scope string) bool { return strings.HasPrefix(scope, ReservedScopePrefix) }

// isTombstone reports whether ks, read from the store, records its scope
// as destroyed.
func isTombstone(ks *KeySet) bool { return ks != nil && len(ks.Versions) > 0 }

// createdScopes returns the scopes that must not be destroyed for ks to
// gain versions ks.Versions[n:]: its own, and the parents that the new
// versions are wrapped under.
func createdScopes(ks *KeySet, n int) []string {
	scopes := []string{ks.ID.Scope}
	for _, r := range ks.Versions[n:] {
		if p, _, ok, err := parseParentKeyID(r.Wrapped.KeyID); ok && err == nil && !slices.Contains(scopes, p) {
			scopes = append(scopes, p)
		}
	}
	return scopes
}

// tombstoneReader reads, inside a store's write transaction, the
// tombstones of those of scopes that have one (sets without versions may
// be returned too).
type tombstoneReader func(scopes []string) (map[string]*KeySet, error)

// scopeGuard refuses, inside a sealed write's transaction, versions added
// to a key set of a destroyed scope or wrapped under a destroyed parent's
// key. The stores of this package read tombstones after taking the
// metadata head's lock, which every sealed write takes (the tombstone's
// own included), so no tombstone can be written between the read and the
// commit: a creation either commits first, and then Destroy, which lists
// the scope's key sets after writing the tombstone, finds it and destroys
// it, or sees the tombstone and fails.
type scopeGuard struct {
	s    *sealer
	key  []byte
	read tombstoneReader
	// batch are the scopes of every key set of the write, read together
	// the first time any is needed.
	batch []string
	gone  map[string]bool
}

// check fails with errScopeDestroyed if any of scopes has a tombstone,
// with ErrMetadataTampered if a tombstone fails its MAC check.
func (g *scopeGuard) check(scopes []string) error {
	var need []string
	for _, sc := range scopes {
		if _, ok := g.gone[sc]; !ok && !slices.Contains(need, sc) {
			need = append(need, sc)
		}
	}
	if len(need) > 0 {
		if g.gone == nil {
			g.gone = make(map[string]bool)
			for _, sc := range g.batch {
				if !slices.Contains(need, sc) {
					need = append(need, sc)
				}
			}
		}
		found, err := g.read(need)
		if err != nil {
			return err
		}
		for _, sc := range need {
			g.gone[sc] = false
		}
		for sc, ks := range found {
			if isNew(ks) {
				continue
			}
			if err := g.s.verify(g.key, ks, 0); err != nil {
				return err
			}
			g.gone[sc] = isTombstone(ks)
		}
	}
	for _, sc := range scopes {
		if g.gone[sc] {
			return errScopeDestroyed
		}
	}
	return nil
}

// checkDestroyed fails with errScopeDestroyed if any of scopes has a
// tombstone, read outside any transaction: for stores that offer no read
// inside one (Stores implemented outside this package).
func (s *sealer) checkDestroyed(ctx context.Context, scopes []string) error {
	for _, sc := range scopes {
		ks, err := s.Get(ctx, tombstoneID(sc))
		if errors.Is(err, ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if isTombstone(ks) {
			return errScopeDestroyed
		}
	}
	return nil
}

// precheckDestroyed refuses a new version of id before it is generated
// and wrapped (a KMS call), when the store cannot check inside its
// transaction: the stores of this package refuse it there, at no extra
// cost, so it does nothing for them.
func (k *Keyring) precheckDestroyed(ctx context.Context, id ID) error {
	if _, ok := k.sealer.Store.(metaStore); ok {
		return nil
	}
	scopes := []string{id.Scope}
	if p, ok, err := k.parentOf(id); err != nil {
		return err
	} else if ok {
		scopes = append(scopes, p)
	}
	return k.sealer.checkDestroyed(ctx, scopes)
}

// undoCreated destroys every version of id, a key set that gained
// versions in a scope destroyed meanwhile (or under a destroyed parent),
// when the store could not refuse them inside its transaction: as the
// Destroy that missed them would have.
func (s *sealer) undoCreated(ctx context.Context, id ID) error {
	_, err := s.update(ctx, id, true, func(ks *KeySet) error {
		now := time.Now()
		for i := range ks.Versions {
			if r := &ks.Versions[i]; r.State != Destroyed {
				r.State, r.Changed, r.Wrapped = Destroyed, now, kms.WrappedKey{}
			}
		}
		return nil
	})
	return err
}

// tombstone records scope as destroyed (see TombstoneScope), if it is not
// yet.
func (k *Keyring) tombstone(ctx context.Context, scope string) error {
	id := tombstoneID(scope)
	ks, err := k.cfg.Store.Get(ctx, id)
	if err == nil && isTombstone(ks) {
		return nil
	}
	if err != nil && !errors.Is(err, ErrKeyNotFound) {
		return err
	}
	_, err = k.cfg.Store.Update(ctx, id, func(ks *KeySet) error {
		if len(ks.Versions) == 0 {
			now := time.Now()
			ks.Versions = append(ks.Versions, Record{Version: 1, State: Destroyed, Created: now, Changed: now, WrappedAt: now})
		}
		return nil
	})
	return err
}
