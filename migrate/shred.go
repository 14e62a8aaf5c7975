package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/phicrypt/phicrypt/internal/sqltx"
	"github.com/phicrypt/phicrypt/keys"
)

// Eraser erases the blind index values of one scope's rows in the table of
// a Spec: a keys.IndexEraser for keys.Keyring.Shred. It sets every index
// column of the Spec to NULL in the rows whose scope column holds the
// shredded scope (every row, for a Spec whose fixed Scope is that scope),
// in one transaction. The ciphertexts stay: destroying the scope's data
// key makes them unreadable.
//
// On SQLite the transaction runs with secure_delete on, and a TRUNCATE
// checkpoint follows, so that the erased index values do not remain in the
// page's free space or in the write-ahead log; if a reader keeps the
// checkpoint from completing, EraseIndexes fails with an error matching
// keys.ErrPurgeIncomplete after the values were erased (retry the shred).
// On PostgreSQL the old row versions remain as dead tuples and in the WAL
// as for the key store (see package keys, "Crypto-shredding").
type Eraser struct {
	DB      *sql.DB
	Dialect keys.Dialect
	Spec    Spec
}

var _ keys.IndexEraser = (*Eraser)(nil)

// EraseIndexes implements keys.IndexEraser. A Spec without indexes erases
// nothing.
func (e *Eraser) EraseIndexes(ctx context.Context, scope string) (int64, error) {
	s := &e.Spec
	if err := s.Validate(); err != nil {
		return 0, err
	}
	if e.DB == nil {
		return 0, errors.New("migrate: Eraser.DB is nil")
	}
	if scope == "" {
		return 0, fmt.Errorf("%w: empty scope", keys.ErrInvalidID)
	}
	if len(s.Indexes) == 0 || (s.ScopeColumn == "" && scope != s.Scope) {
		return 0, nil
	}
	var set, notNull []string
	for _, ix := range s.Indexes {
		set = append(set, ix.Column+" = NULL")
		notNull = append(notNull, ix.Column+" IS NOT NULL")
	}
	query := "UPDATE " + s.Table + " SET " + strings.Join(set, ", ") + " WHERE (" + strings.Join(notNull, " OR ") + ")"
	var args []any
	if s.ScopeColumn != "" {
		query += " AND " + s.ScopeColumn + " = ?"
		args = append(args, scope)
	}
	postgres := e.Dialect == keys.Postgres
	var n int64
	err := sqltx.Write(ctx, e.DB, postgres, "migrate", func(q sqltx.Querier) error {
		if err := sqltx.SecureDelete(ctx, q, postgres); err != nil {
			return err
		}
		res, err := q.ExecContext(ctx, e.Dialect.Rebind(query), args...)
		if err != nil {
			return fmt.Errorf("migrate: erase index values of %s: %w", s.Table, err)
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, err
	}
	if err := sqltx.TruncateCheckpoint(ctx, e.DB, postgres); err != nil {
		return n, fmt.Errorf("migrate: erase index values of %s: %w: %w", s.Table, keys.ErrPurgeIncomplete, err)
	}
	return n, nil
}

// Usage counts the values that use each version of a key set in the tables
// of Specs, for the guarded retirement of keys.Keyring.Retire and
// DestroyVersion (a keys.UsageChecker). It reads, with Verify, the rows of
// the key set's scope in each table that can hold values under it: the
// encrypted columns for a data key (deterministic ones for the
// deterministic key), and the index column TABLE.COLUMN for the key of
// that blind index. Tables missing from Specs are not counted: list every
// table whose values use the key set.
type Usage struct {
	DB      *sql.DB
	Dialect keys.Dialect
	Specs   []Spec
	// BatchRows is Verify's (1000 by default).
	BatchRows int
}

var _ keys.UsageChecker = (*Usage)(nil)

// KeyUsage implements keys.UsageChecker.
func (u *Usage) KeyUsage(ctx context.Context, id keys.ID) (map[uint32]int64, error) {
	if u.DB == nil || len(u.Specs) == 0 {
		return nil, errors.New("migrate: Usage needs a DB and the Specs of the tables to check")
	}
	out := map[uint32]int64{}
	add := func(m map[uint32]int64) {
		for v, n := range m {
			out[v] += n
		}
	}
	for _, s := range u.Specs {
		if err := s.Validate(); err != nil {
			return nil, err
		}
		var cols []int // encrypted columns counted
		var ixs []int  // index columns counted
		switch id.Name {
		case keys.DataKeyName, keys.DeterministicKeyName:
			for i, c := range s.Columns {
				if c.Deterministic == (id.Name == keys.DeterministicKeyName) {
					cols = append(cols, i)
				}
			}
		default:
			for i, ix := range s.Indexes {
				if name, err := keys.IndexKeyName(s.Table, ix.Column); err == nil && name == id.Name {
					ixs = append(ixs, i)
				}
			}
		}
		if len(cols) == 0 && len(ixs) == 0 {
			continue
		}
		r, err := Verify(ctx, VerifyConfig{DB: u.DB, Dialect: u.Dialect, Spec: s, BatchRows: u.BatchRows, Scope: id.Scope})
		if err != nil {
			return nil, err
		}
		for _, i := range cols {
			add(r.Columns[i].Versions)
		}
		for _, i := range ixs {
			add(r.Indexes[i].Versions)
		}
	}
	return out, nil
}
