package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/phicrypt/phicrypt/keys"
)

// ErrTableMismatch means a table does not have what its Spec describes:
// the error is a *TableError.
var ErrTableMismatch = errors.New("migrate: the table does not match the spec")

// TableError is a disagreement between a Spec and its table, found by
// CheckTable. It names columns and SQL types, never values.
type TableError struct {
	// Table is the spec's table; Missing is true when the database has no
	// such table.
	Table   string
	Missing bool
	// Columns are the spec's columns that the table lacks.
	Columns []string
	// Types are the columns written with ciphertexts or blind index
	// values whose SQL type cannot hold them (an INTEGER, a DATE), with
	// that type: encrypt such a column into a new one (Column.Target,
	// WithLegacyColumn).
	Types map[string]string
}

// Error says what is missing or mistyped.
func (e *TableError) Error() string {
	if e.Missing {
		return fmt.Sprintf("migrate: table %s does not exist", e.Table)
	}
	var parts []string
	if len(e.Columns) > 0 {
		parts = append(parts, "no column "+strings.Join(e.Columns, ", "))
	}
	for _, c := range slices.Sorted(maps.Keys(e.Types)) {
		parts = append(parts, fmt.Sprintf("column %s is %s, which cannot hold a ciphertext", c, e.Types[c]))
	}
	return fmt.Sprintf("migrate: table %s does not match the spec: %s", e.Table, strings.Join(parts, "; "))
}

// Unwrap returns ErrTableMismatch.
func (e *TableError) Unwrap() error { return ErrTableMismatch }

// CheckTable checks that the spec's table exists in db with every column
// the spec names (the id, the scope column, the encrypted columns and
// their targets, the blind index columns), and that the columns it writes
// ciphertexts or index values into have a text or binary SQL type. A
// disagreement is a *TableError (ErrTableMismatch); it reads no row. Run
// a job after it succeeds, so that a spec made for another version of the
// schema stops before any work.
func (s *Spec) CheckTable(ctx context.Context, db *sql.DB, d keys.Dialect) error {
	if err := s.Validate(); err != nil {
		return err
	}
	var exists bool
	var err error
	switch d {
	case keys.Postgres:
		err = db.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", s.Table).Scan(&exists)
	case keys.SQLite:
		err = db.QueryRowContext(ctx, "SELECT count(*) > 0 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?", s.Table).Scan(&exists)
	default:
		return fmt.Errorf("migrate: unknown dialect %v", d)
	}
	if err != nil {
		return fmt.Errorf("migrate: look up table %s: %w", s.Table, err)
	}
	if !exists {
		return &TableError{Table: s.Table, Missing: true}
	}
	// The table name is a checked identifier (Validate).
	rows, err := db.QueryContext(ctx, "SELECT * FROM "+s.Table+" WHERE 1 = 0")
	if err != nil {
		return fmt.Errorf("migrate: read the columns of %s: %w", s.Table, err)
	}
	defer rows.Close()
	cts, err := rows.ColumnTypes()
	if err != nil {
		return fmt.Errorf("migrate: read the columns of %s: %w", s.Table, err)
	}
	types := map[string]string{}
	for _, ct := range cts {
		types[strings.ToLower(ct.Name())] = ct.DatabaseTypeName()
	}
	e := &TableError{Table: s.Table, Types: map[string]string{}}
	need := func(col string, written bool) {
		typ, ok := types[strings.ToLower(col)]
		switch {
		case !ok:
			if !slices.Contains(e.Columns, col) {
				e.Columns = append(e.Columns, col)
			}
		case written && !holdsCiphertext(typ):
			e.Types[col] = typ
		}
	}
	need(s.ID, false)
	if s.ScopeColumn != "" {
		need(s.ScopeColumn, false)
	}
	for _, c := range s.Columns {
		need(c.Name, c.Target == "")
		if c.Target != "" {
			need(c.Target, true)
		}
	}
	for _, ix := range s.Indexes {
		need(ix.Column, true)
	}
	if len(e.Columns) > 0 || len(e.Types) > 0 {
		return e
	}
	return rows.Err()
}

// holdsCiphertext reports whether a column of SQL type typ (as the driver
// names it) holds text armor or binary values. An unknown type (SQLite
// columns declared without one) does.
func holdsCiphertext(typ string) bool {
	typ = strings.ToUpper(typ)
	if typ == "" {
		return true
	}
	for _, s := range []string{"TEXT", "CHAR", "CLOB", "BLOB", "BYTEA", "BINARY", "STRING"} {
		if strings.Contains(typ, s) {
			return true
		}
	}
	return false
}
