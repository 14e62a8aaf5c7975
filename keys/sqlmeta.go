package keys

import (
	"context"
	"database/sql"
	"fmt"
)

var _ metaStore = (*SQLStore)(nil)

// updateMeta implements metaStore: Update, with the head row locked after
// the key set's row (every sealed write takes them in that order) and
// written in the same transaction.
func (s *SQLStore) updateMeta(ctx context.Context, id ID, fn func(ks *KeySet, tx *metaTx) error) (*KeySet, error) {
	out, err := s.updateMetaBatch(ctx, []ID{id}, func(_ int, ks *KeySet, tx *metaTx) error { return fn(ks, tx) })
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// tombstones reads, in the write transaction q, the tombstones of those of
// scopes that have one: a query per batchRows scopes, then a load of each
// tombstone found (a destroyed scope: rare on a creation path).
func (s *SQLStore) tombstones(ctx context.Context, q querier, scopes []string) (map[string]*KeySet, error) {
	out := make(map[string]*KeySet)
	for start := 0; start < len(scopes); start += batchRows {
		chunk := scopes[start:min(len(scopes), start+batchRows)]
		args := make([]any, 0, 1+len(chunk))
		args = append(args, TombstoneScope)
		for _, scope := range chunk {
			args = append(args, scope)
		}
		rows, err := q.QueryContext(ctx, s.dialect.Rebind("SELECT name FROM phicrypt_key_sets WHERE scope = ? AND name IN "+valueRows(1, len(chunk))), args...)
		if err != nil {
			return nil, fmt.Errorf("keys: read tombstones: %w", err)
		}
		var found []string
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				rows.Close()
				return nil, fmt.Errorf("%w: read tombstones: %w", ErrMetadataTampered, err)
			}
			found = append(found, name)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("keys: read tombstones: %w", err)
		}
		for _, scope := range found {
			ks, err := s.load(ctx, q, tombstoneID(scope), false)
			if err != nil {
				return nil, err
			}
			out[scope] = ks
		}
	}
	return out, nil
}

// loadHead reads the metadata head, nil when there is none (or only the
// empty placeholder); lock takes its row lock on PostgreSQL.
func (s *SQLStore) loadHead(ctx context.Context, q querier, lock bool) (*metaHead, error) {
	query := "SELECT counter, acc, mac FROM phicrypt_key_meta_head WHERE id = 1"
	if lock && s.dialect == Postgres {
		query += " FOR UPDATE"
	}
	var h metaHead
	var counter int64
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("keys: read metadata head: %w", err)
	}
	found := rows.Next()
	if found {
		if err := rows.Scan(&counter, &h.Acc, &h.MAC); err != nil {
			rows.Close()
			return nil, fmt.Errorf("keys: read metadata head: %w", corrupt(err))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keys: read metadata head: %w", err)
	}
	if !found {
		return nil, nil
	}
	if counter < 0 {
		return nil, fmt.Errorf("%w: metadata head counter out of range", ErrMetadataTampered)
	}
	h.Counter = uint64(counter)
	if h.Counter == 0 && len(h.Acc) == 0 && len(h.MAC) == 0 {
		return nil, nil
	}
	return &h, nil
}

// scanMeta implements metaStore, in one read transaction: a snapshot
// (REPEATABLE READ on PostgreSQL; on SQLite, WAL readers see one snapshot
// per transaction). It makes one query per key set.
func (s *SQLStore) scanMeta(ctx context.Context, head func(*metaHead) error, each func(*KeySet) error) error {
	tx, err := s.readTx(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	h, err := s.loadHead(ctx, tx, false)
	if err != nil {
		return err
	}
	if err := head(h); err != nil {
		return err
	}
	collate := ""
	if s.dialect == Postgres {
		collate = ` COLLATE "C"`
	}
	rows, err := tx.QueryContext(ctx, "SELECT scope, name FROM phicrypt_key_sets ORDER BY scope"+collate+", name"+collate)
	if err != nil {
		return fmt.Errorf("keys: verify metadata: %w", err)
	}
	var ids []ID
	for rows.Next() {
		var id ID
		if err := rows.Scan(&id.Scope, &id.Name); err != nil {
			rows.Close()
			return fmt.Errorf("keys: verify metadata: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("keys: verify metadata: %w", err)
	}
	for _, id := range ids {
		ks, err := s.load(ctx, tx, id, false)
		if err != nil {
			return err
		}
		if err := each(ks); err != nil {
			return err
		}
	}
	return nil
}

// readTx begins a transaction whose reads all see one snapshot: REPEATABLE
// READ, read-only, on PostgreSQL; on SQLite a deferred transaction, whose
// snapshot (in WAL mode) is taken by its first read. The caller rolls it
// back.
func (s *SQLStore) readTx(ctx context.Context) (*sql.Tx, error) {
	var opts *sql.TxOptions
	if s.dialect == Postgres {
		opts = &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	}
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("keys: begin read: %w", err)
	}
	return tx, nil
}
