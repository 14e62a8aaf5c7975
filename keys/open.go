package keys

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ErrNoStore means OpenSQLStore found no key store in the database: its
// tables were never created (NewSQLStore creates them). Tools that must
// not create a key store by mistake, such as the phicrypt command given a
// mistyped database, use OpenSQLStore and report it.
var ErrNoStore = errors.New("keys: no key store in this database")

// OpenSQLStore returns the store in db if its tables exist, upgrading
// them if their schema is older (see Migrate), and fails with ErrNoStore
// if they do not: unlike NewSQLStore, it never creates a key store.
func OpenSQLStore(ctx context.Context, db *sql.DB, dialect Dialect) (*SQLStore, error) {
	if db == nil {
		return nil, errors.New("keys: nil database")
	}
	query := "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'phicrypt_key_sets'"
	switch dialect {
	case Postgres:
		// to_regclass follows the search path, as the store's queries do.
		query = "SELECT CASE WHEN to_regclass('phicrypt_key_sets') IS NULL THEN 0 ELSE 1 END"
	case SQLite:
	default:
		return nil, fmt.Errorf("keys: unknown dialect %d", dialect)
	}
	var n int
	if err := db.QueryRowContext(ctx, query).Scan(&n); err != nil {
		return nil, fmt.Errorf("keys: open key store: %w", err)
	}
	if n == 0 {
		return nil, ErrNoStore
	}
	return NewSQLStore(ctx, db, dialect)
}

// Under returns the IDs of the key sets of scope and of the scopes under
// it, in (Scope, Name) order. A scope is under scope if it begins with
// scope and a '/': "tenant:a/patient/7" is under "tenant:a", as the
// per-patient scopes of package fields/fhir are under their tenant's.
// Only the IDs are read, not the keys.
func (s *SQLStore) Under(ctx context.Context, scope string) ([]ID, error) {
	if scope == "" {
		return nil, fmt.Errorf("%w: empty scope", ErrInvalidID)
	}
	collate := ""
	if s.dialect == Postgres {
		collate = ` COLLATE "C"`
	}
	// Scopes from scope+"/" (inclusive) to scope+"0" (exclusive): '0'
	// follows '/' in byte order, so this range is every scope that begins
	// with scope+"/", without LIKE and its wildcards.
	query := "SELECT scope, name FROM phicrypt_key_sets WHERE scope = ? OR (scope" + collate + " >= ? AND scope" + collate + " < ?) ORDER BY scope" + collate + ", name" + collate
	rows, err := s.db.QueryContext(ctx, s.dialect.Rebind(query), scope, scope+"/", scope+"0")
	if err != nil {
		return nil, fmt.Errorf("keys: list: %w", err)
	}
	defer rows.Close()
	var ids []ID
	for rows.Next() {
		var id ID
		if err := rows.Scan(&id.Scope, &id.Name); err != nil {
			return nil, fmt.Errorf("keys: list: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keys: list: %w", err)
	}
	return ids, nil
}
