package gormphi

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"gorm.io/gorm"

	"github.com/phicrypt/phicrypt/internal/sqltx"
	"github.com/phicrypt/phicrypt/keys"
)

// ErrNoScopeColumn means a model given to Eraser has blind indexes but no
// phi scope field (its scope comes from a PHIScope method): the rows of a
// shredded scope cannot be told apart in SQL. Erase those through a
// keys.IndexEraserFunc of the application's own.
var ErrNoScopeColumn = errors.New("gormphi: model has no phi scope field")

// eraseTable is the erase statement of one model.
type eraseTable struct {
	table, scope string
	indexes      []string
}

// Eraser returns a keys.IndexEraser for keys.Keyring.Shred that erases, in
// db (with the plugin registered), the blind index values of the rows of a shredded scope in the tables
// of models (pointers to zero values, as for AutoMigrate): for each model,
// every blind index column is set to NULL in the rows whose phi scope
// column holds the scope, in one transaction. The ciphertexts stay:
// destroying the scope's data key makes them unreadable.
//
// Shredding a patient needs this when the patient's data key is
// per-patient (the scope field) while a blind index key is tenant-wide
// (the index tag's scope= option): the index values would otherwise still
// confirm a guessed SSN. Models without blind indexes are skipped; a model
// with blind indexes but no scope field is refused (ErrNoScopeColumn), as
// is a model whose phi tags disagree with GORM's schema (ErrLayout).
//
// On SQLite the transaction runs with secure_delete on and a TRUNCATE
// checkpoint follows (see migrate.Eraser); if a reader keeps it from
// completing, EraseIndexes fails with an error matching
// keys.ErrPurgeIncomplete after the values were erased.
func Eraser(db *gorm.DB, models ...any) (keys.IndexEraser, error) {
	if db == nil {
		return nil, errors.New("gormphi: nil *gorm.DB")
	}
	p, err := pluginOf(db)
	if err != nil {
		return nil, err
	}
	var tables []eraseTable
	for _, v := range models {
		s, err := parse(db, v)
		if err != nil {
			return nil, err
		}
		m, err := p.model(s)
		if err != nil {
			return nil, err
		}
		if m == nil {
			continue
		}
		t := eraseTable{table: m.table, scope: m.scopeCol}
		for _, c := range m.cols {
			if c.blind != nil {
				t.indexes = append(t.indexes, c.db)
			}
		}
		if len(t.indexes) == 0 {
			continue
		}
		if t.scope == "" {
			return nil, fmt.Errorf("%w: %s", ErrNoScopeColumn, s.ModelType)
		}
		tables = append(tables, t)
	}
	return &eraser{db: db, tables: tables}, nil
}

type eraser struct {
	db     *gorm.DB
	tables []eraseTable
}

// EraseIndexes implements keys.IndexEraser.
func (e *eraser) EraseIndexes(ctx context.Context, scope string) (int64, error) {
	if scope == "" {
		return 0, fmt.Errorf("%w: empty scope", keys.ErrInvalidID)
	}
	if len(e.tables) == 0 {
		return 0, nil
	}
	db := e.db.Session(&gorm.Session{NewDB: true, Context: ctx})
	sqlite := db.Dialector.Name() == "sqlite"
	var n int64
	err := db.Transaction(func(tx *gorm.DB) error {
		if sqlite {
			if err := tx.Exec("PRAGMA secure_delete = ON").Error; err != nil {
				return fmt.Errorf("gormphi: secure_delete: %w", err)
			}
		}
		for _, t := range e.tables {
			q := tx.Statement.Quote
			var set, notNull []string
			for _, c := range t.indexes {
				set = append(set, q(c)+" = NULL")
				notNull = append(notNull, q(c)+" IS NOT NULL")
			}
			res := tx.Exec("UPDATE "+q(t.table)+" SET "+strings.Join(set, ", ")+" WHERE "+q(t.scope)+" = ? AND ("+strings.Join(notNull, " OR ")+")", scope)
			if res.Error != nil {
				return fmt.Errorf("gormphi: erase index values of %s: %w", t.table, res.Error)
			}
			n += res.RowsAffected
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if sqlite {
		sqlDB, err := db.DB()
		if err != nil {
			return n, fmt.Errorf("gormphi: %w", err)
		}
		if err := sqltx.TruncateCheckpoint(ctx, sqlDB, false); err != nil {
			return n, fmt.Errorf("gormphi: erase index values: %w: %w", keys.ErrPurgeIncomplete, err)
		}
	}
	return n, nil
}
