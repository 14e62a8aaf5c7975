package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// errUnchanged, returned by the function of a batch update, leaves that
// key set as it is: not rewritten, not resealed.
var errUnchanged = errors.New("keys: unchanged")

// batchMetaStore is implemented by the stores of this package: updateMeta
// for several key sets in one transaction, the head written once. fn is
// called for each set in the order of ids, with the same tx.
type batchMetaStore interface {
	updateMetaBatch(ctx context.Context, ids []ID, fn func(i int, ks *KeySet, tx *metaTx) error) ([]*KeySet, error)
}

var (
	_ batchMetaStore = (*SQLStore)(nil)
	_ batchMetaStore = (*MemoryStore)(nil)
)

// sealSet checks ks (unless it is new, or unsealed and check is unset),
// lets fn change it, refuses versions fn added in a destroyed scope (when
// guard is not nil: see scopeGuard), then seals it with the next counter
// and folds its MAC into head (when not nil). If fn returns errUnchanged,
// ks is left as it was.
func (s *sealer) sealSet(key []byte, ks *KeySet, head *metaHead, guard *scopeGuard, floor uint64, check bool, fn func(ks *KeySet) error) error {
	oldMAC := ks.MetaMAC
	if (!isNew(ks) || floor > 0) && (check || len(oldMAC) > 0) {
		if err := s.verify(key, ks, floor); err != nil {
			return err
		}
	}
	n := len(ks.Versions)
	if err := fn(ks); err != nil {
		return err
	}
	if guard != nil && len(ks.Versions) > n && ks.ID.Scope != TombstoneScope {
		if err := guard.check(createdScopes(ks, n)); err != nil {
			return err
		}
	}
	ks.MetaCounter++
	ks.MetaMAC = metaMAC(key, ks)
	if head != nil {
		head.Acc = xorInto(head.Acc, oldMAC)
		head.Acc = xorInto(head.Acc, ks.MetaMAC)
		head.Counter++
		head.MAC = headMAC(key, head)
	}
	return nil
}

// updateBatch is Update for several key sets of non-reserved scopes, in
// (Scope, Name) order without duplicates: in one transaction when the
// store is a batchMetaStore, one Update each otherwise. fn may return
// errUnchanged to leave a set as it is; a set to which fn adds versions
// in a destroyed scope (see TombstoneScope) is left as it is too, and
// returned as it is stored (nil from a Store outside this package).
func (s *sealer) updateBatch(ctx context.Context, ids []ID, fn func(i int, ks *KeySet) error) ([]*KeySet, error) {
	bs, ok := s.Store.(batchMetaStore)
	if !ok {
		out := make([]*KeySet, len(ids))
		for i, id := range ids {
			ks, err := s.Update(ctx, id, func(ks *KeySet) error { return fn(i, ks) })
			if errors.Is(err, errUnchanged) || errors.Is(err, errScopeDestroyed) {
				ks, err = nil, nil
			}
			if err != nil {
				return nil, err
			}
			out[i] = ks
		}
		return out, nil
	}
	key, err := s.macKey(ctx, true)
	if err != nil {
		return nil, err
	}
	floors := make([]uint64, len(ids))
	for i, id := range ids {
		floors[i] = s.floor(id)
	}
	s.mu.Lock()
	headFloor := s.headSeen
	s.mu.Unlock()
	var newHead uint64
	guard := &scopeGuard{s: s, key: key, batch: make([]string, 0, len(ids))}
	for _, id := range ids {
		if n := len(guard.batch); n == 0 || guard.batch[n-1] != id.Scope {
			guard.batch = append(guard.batch, id.Scope)
		}
	}
	out, err := bs.updateMetaBatch(ctx, ids, func(i int, ks *KeySet, tx *metaTx) error {
		if i == 0 {
			if err := s.checkHead(key, tx.head, headFloor); err != nil {
				return err
			}
		}
		guard.read = tx.tombstones
		err := s.sealSet(key, ks, tx.head, guard, floors[i], true, func(ks *KeySet) error { return fn(i, ks) })
		if errors.Is(err, errScopeDestroyed) {
			err = errUnchanged
		}
		newHead = tx.head.Counter
		return err
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.headSeen = max(s.headSeen, newHead)
	for _, ks := range out {
		s.see(ks)
	}
	return out, nil
}

// updateMetaBatch implements batchMetaStore.
func (m *MemoryStore) updateMetaBatch(ctx context.Context, ids []ID, fn func(i int, ks *KeySet, tx *metaTx) error) ([]*KeySet, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	head := m.head.clone()
	tx := &metaTx{head: head, tombstones: m.tombstones}
	sets := make([]*KeySet, len(ids))
	keep := make([]bool, len(ids)) // whether to store sets[i]
	for i, id := range ids {
		old, ok := m.sets[id]
		if !ok {
			old = &KeySet{ID: id}
		}
		ks := old.clone()
		keep[i] = true
		switch err := fn(i, ks, tx); {
		case errors.Is(err, errUnchanged):
			ks, keep[i] = old, ok // nothing to store for a set that did not exist
		case err != nil:
			return nil, err
		}
		if err := checkUpdate(old, ks); err != nil {
			return nil, err
		}
		sets[i] = ks
	}
	out := make([]*KeySet, len(ids))
	for i, ks := range sets {
		if keep[i] {
			m.sets[ks.ID] = ks
		}
		out[i] = ks.clone()
	}
	m.head = *head
	return out, nil
}

// updateMetaBatch implements batchMetaStore: every key set's row is
// locked (created if need be) in the order of ids, then the head's, in
// one transaction. Key sets created now are written with a few
// multi-row statements, not a few statements each.
func (s *SQLStore) updateMetaBatch(ctx context.Context, ids []ID, fn func(i int, ks *KeySet, tx *metaTx) error) ([]*KeySet, error) {
	out := make([]*KeySet, len(ids))
	err := s.tx(ctx, func(q querier) error {
		created, err := s.createSets(ctx, q, ids)
		if err != nil {
			return err
		}
		olds := make([]*KeySet, len(ids))
		for i, id := range ids {
			if created[id] {
				olds[i] = &KeySet{ID: id} // no version can exist (foreign key)
				continue
			}
			if olds[i], err = s.load(ctx, q, id, true); err != nil {
				return err
			}
		}
		placeholder := "INSERT OR IGNORE INTO phicrypt_key_meta_head (id, counter, acc, mac) VALUES (1, 0, ?, ?)"
		if s.dialect == Postgres {
			placeholder = "INSERT INTO phicrypt_key_meta_head (id, counter, acc, mac) VALUES (1, 0, ?, ?) ON CONFLICT DO NOTHING"
		}
		// An empty head row stands for "no head yet"; inserting it first
		// lets PostgreSQL lock it even on the very first write.
		if _, err := q.ExecContext(ctx, s.dialect.Rebind(placeholder), []byte{}, []byte{}); err != nil {
			return fmt.Errorf("keys: update metadata head: %w", err)
		}
		head, err := s.loadHead(ctx, q, true)
		if err != nil {
			return err
		}
		if head == nil {
			head = &metaHead{}
		}
		// Tombstones are read after the head's lock: see scopeGuard.
		tx := &metaTx{head: head, tombstones: func(scopes []string) (map[string]*KeySet, error) {
			return s.tombstones(ctx, q, scopes)
		}}
		var fresh []*KeySet
		for i, old := range olds {
			ks := old.clone()
			switch err := fn(i, ks, tx); {
			case errors.Is(err, errUnchanged):
				out[i] = old
				if created[ks.ID] {
					// Created for nothing (a destroyed scope): a key set
					// row without versions must not be left behind.
					if _, err := q.ExecContext(ctx, s.dialect.Rebind("DELETE FROM phicrypt_key_sets WHERE scope = ? AND name = ?"), ks.ID.Scope, ks.ID.Name); err != nil {
						return fmt.Errorf("keys: update %s: %w", ks.ID.kind(), err)
					}
				}
				continue
			case err != nil:
				return err
			}
			if err := checkUpdate(old, ks); err != nil {
				return err
			}
			if created[ks.ID] {
				fresh = append(fresh, ks)
			} else if err := s.write(ctx, q, old, ks); err != nil {
				return err
			}
			out[i] = ks
		}
		if err := s.writeNew(ctx, q, fresh); err != nil {
			return err
		}
		if _, err := q.ExecContext(ctx, s.dialect.Rebind("UPDATE phicrypt_key_meta_head SET counter = ?, acc = ?, mac = ? WHERE id = 1"),
			int64(head.Counter), head.Acc, head.MAC); err != nil {
			return fmt.Errorf("keys: update metadata head: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// batchRows bounds the rows of one multi-row statement (11 parameters a
// row stays below every driver's limit).
const batchRows = 200

// createSets inserts the key set rows of ids that do not exist, and
// returns those it inserted: rows this transaction now holds.
func (s *SQLStore) createSets(ctx context.Context, q querier, ids []ID) (map[ID]bool, error) {
	created := make(map[ID]bool, len(ids))
	for start := 0; start < len(ids); start += batchRows {
		chunk := ids[start:min(len(ids), start+batchRows)]
		query := "INSERT OR IGNORE INTO phicrypt_key_sets (scope, name) VALUES " + valueRows(len(chunk), 2) + " RETURNING scope, name"
		if s.dialect == Postgres {
			query = "INSERT INTO phicrypt_key_sets (scope, name) VALUES " + valueRows(len(chunk), 2) + " ON CONFLICT DO NOTHING RETURNING scope, name"
		}
		args := make([]any, 0, 2*len(chunk))
		for _, id := range chunk {
			args = append(args, id.Scope, id.Name)
		}
		rows, err := q.QueryContext(ctx, s.dialect.Rebind(query), args...)
		if err != nil {
			return nil, fmt.Errorf("keys: create key sets: %w", err)
		}
		for rows.Next() {
			var id ID
			if err := rows.Scan(&id.Scope, &id.Name); err != nil {
				rows.Close()
				return nil, fmt.Errorf("keys: create key sets: %w", err)
			}
			created[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("keys: create key sets: %w", err)
		}
	}
	return created, nil
}

// writeNew writes key sets whose rows createSets just inserted: their
// versions, then their metadata, with multi-row statements.
func (s *SQLStore) writeNew(ctx context.Context, q querier, sets []*KeySet) error {
	type row struct {
		id ID
		r  Record
	}
	var recs []row
	for _, ks := range sets {
		for _, r := range ks.Versions {
			recs = append(recs, row{ks.ID, r})
		}
	}
	for start := 0; start < len(recs); start += batchRows {
		chunk := recs[start:min(len(recs), start+batchRows)]
		args := make([]any, 0, 11*len(chunk))
		for _, c := range chunk {
			r := c.r
			args = append(args, c.id.Scope, c.id.Name, int64(r.Version), int64(r.State), int64(r.Suite), r.Wrapped.KeyID, nullBytes(r.Wrapped.Ciphertext),
				r.Created.UnixNano(), r.Changed.UnixNano(), r.WrappedAt.UnixNano(), int64(r.Reserved))
		}
		query := "INSERT INTO phicrypt_keys (scope, name, " + keyColumns + ") VALUES " + valueRows(len(chunk), 11)
		if _, err := q.ExecContext(ctx, s.dialect.Rebind(query), args...); err != nil {
			return fmt.Errorf("keys: write new key versions: %w", err)
		}
	}
	// The rows exist (createSets): an upsert sets their metadata by
	// primary key, with no join for the planner to get wrong.
	for start := 0; start < len(sets); start += batchRows {
		chunk := sets[start:min(len(sets), start+batchRows)]
		args := make([]any, 0, 5*len(chunk))
		for _, ks := range chunk {
			args = append(args, ks.ID.Scope, ks.ID.Name, int64(ks.MinDecryptVersion), int64(ks.MetaCounter), nullBytes(ks.MetaMAC))
		}
		query := "INSERT INTO phicrypt_key_sets (scope, name, min_decrypt_version, meta_counter, meta_mac) VALUES " + valueRows(len(chunk), 5) +
			" ON CONFLICT (scope, name) DO UPDATE SET min_decrypt_version = excluded.min_decrypt_version," +
			" meta_counter = excluded.meta_counter, meta_mac = excluded.meta_mac"
		if _, err := q.ExecContext(ctx, s.dialect.Rebind(query), args...); err != nil {
			return fmt.Errorf("keys: write new key sets: %w", err)
		}
	}
	return nil
}

// CreateKeys creates the first data key of each of scopes that has none
// yet, all in one store transaction, and keeps each cached as its scope's
// encryption key with a block of its message budget reserved, so that the
// first encryption for each makes no store or KMS call (while it stays in
// the cache: CacheMaxEntries, CacheMaxAge). With Config.Parent the keys
// are wrapped locally under their parents' keys (one KMS call per parent
// at most); without it each costs one KMS Wrap. A bulk import calls it
// with each batch of new patients (hundreds to a few thousand scopes)
// before encrypting their records; one store transaction per patient is
// what it saves.
//
// Scopes that already have a data key, or whose latest one is destroyed,
// are left as they are (EncryptionKey then behaves as always), and so are
// destroyed scopes (see TombstoneScope) and, with Config.Parent, scopes
// whose parent is destroyed. It returns the number of keys it created.
// Scopes are checked as in EncryptionKey; an invalid one fails the call
// before anything is stored.
func (k *Keyring) CreateKeys(ctx context.Context, scopes []string) (int, error) {
	ids := make([]ID, 0, len(scopes))
	for _, scope := range scopes {
		if err := checkScope(scope); err != nil {
			return 0, err
		}
		ids = append(ids, DataKey(scope))
	}
	slices.SortFunc(ids, func(a, b ID) int { return strings.Compare(a.Scope, b.Scope) })
	ids = slices.Compact(ids)
	fresh := make([]*newVersion, len(ids))
	for i, id := range ids {
		err := k.precheckDestroyed(ctx, id)
		if err == nil {
			fresh[i], err = k.newVersion(ctx, id, 1)
		}
		if errors.Is(err, ErrKeyDestroyed) {
			fresh[i] = nil // it or its parent is destroyed: left as it is
		} else if err != nil {
			return 0, err
		}
	}
	// A Destroy that lands before the keys are cached (during the audit,
	// say) forgets them: they must not be cached after that.
	keysEpoch, activeEpoch := k.keys.Epoch(), k.active.Epoch()
	out, err := k.sealer.updateBatch(ctx, ids, func(i int, ks *KeySet) error {
		if len(ks.Versions) > 0 || fresh[i] == nil {
			return errUnchanged
		}
		rec := fresh[i].rec
		rec.Reserved = k.reserveBlock(ks.ID)
		ks.Versions = append(ks.Versions, rec)
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for i, id := range ids {
		// Inserted: stored with the key generated here. Scopes that had
		// a key, and destroyed ones (left as they are), were not.
		if ks := out[i]; ks == nil || fresh[i] == nil || len(ks.Versions) != 1 || !bytes.Equal(ks.Versions[0].Wrapped.Ciphertext, fresh[i].rec.Wrapped.Ciphertext) {
			continue
		}
		n++
		rec := fresh[i].rec
		if err := k.auditCreated(ctx, id, rec, false); err != nil {
			return n, err
		}
		k.keys.AddSince(string(cacheKey(nil, id, 1)), fresh[i].key, keysEpoch)
		k.active.AddSince(string(cacheKey(nil, id, 0)), &activeKey{version: 1, key: fresh[i].key, limit: k.reserveBlock(id)}, activeEpoch)
	}
	return n, nil
}
