package keys

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoStore means OpenSQLStore found no key store in the database: its
// tables were never created (NewSQLStore and Migrate create them). Tools that must
// not create a key store by mistake, such as the phicrypt command given a
// mistyped database, use OpenSQLStore and report it.
var ErrNoStore = errors.New("keys: no key store in this database")

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
