package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite", pure Go

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
)

// SQLStore keeps patients through database/sql.
type SQLStore struct {
	db       *sql.DB
	codec    *fields.Codec
	postgres bool // $1 placeholders instead of ?
}

var _ Store = (*SQLStore)(nil)

// OpenSQLite opens (creating) a SQLite database at path, with text-armored
// ciphertexts.
func OpenSQLite(ctx context.Context, path string, keyring *keys.Keyring) (*SQLStore, io.Closer, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return nil, nil, err
	}
	s, err := NewSQLStore(ctx, db, keyring, false)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return s, db, nil
}

// OpenPostgres opens the PostgreSQL database dsn with pgx's database/sql
// driver, with binary ciphertexts in bytea columns.
func OpenPostgres(ctx context.Context, dsn string, keyring *keys.Keyring) (*SQLStore, io.Closer, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, nil, err
	}
	s, err := NewSQLStore(ctx, db, keyring, true)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return s, db, nil
}

// NewSQLStore creates the patients table in db if needed.
func NewSQLStore(ctx context.Context, db *sql.DB, keyring *keys.Keyring, postgres bool) (*SQLStore, error) {
	codec, err := fields.NewCodec(fields.Config{Keyring: keyring, Binary: postgres})
	if err != nil {
		return nil, err
	}
	schema := SQLiteSchema
	if postgres {
		schema = PostgresSchema
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("create table: %w", err)
	}
	return &SQLStore{db: db, codec: codec, postgres: postgres}, nil
}

// q rewrites ? placeholders as $1, $2... for PostgreSQL.
func (s *SQLStore) q(query string) string {
	if !s.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Insert implements Store: one Seal for the batch (one key lookup per
// tenant), then a prepared INSERT per row, in a transaction.
func (s *SQLStore) Insert(ctx context.Context, patients []*Patient) error {
	if err := s.codec.Seal(ctx, patients); err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, s.q("INSERT INTO patients ("+columns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, p := range patients {
		if _, err := stmt.ExecContext(ctx, p.values()...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Get implements Store with QueryRow().Scan, then Open.
func (s *SQLStore) Get(ctx context.Context, tenant, id string) (*Patient, error) {
	p := &Patient{}
	err := s.db.QueryRowContext(ctx, s.q("SELECT "+columns+" FROM patients WHERE tenant_id = ? AND id = ?"), tenant, id).Scan(p.fields()...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if err := s.codec.Open(ctx, p); err != nil {
		return nil, err
	}
	return p, nil
}

// Search implements Store: codec.Search computes the terms (one per live
// index key version) and Where writes the condition with its
// placeholders; the rows are opened, then post-filtered.
func (s *SQLStore) Search(ctx context.Context, term *Patient, index string) ([]*Patient, error) {
	search, err := s.codec.Search(ctx, fields.NewQuery(term).Equal(index))
	if err != nil {
		return nil, err
	}
	style := fields.SQLite
	if s.postgres {
		style = fields.Postgres
	}
	where, args, err := search.Where(style)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, "SELECT "+columns+" FROM patients WHERE "+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var candidates []*Patient
	for rows.Next() {
		p := &Patient{}
		if err := rows.Scan(p.fields()...); err != nil {
			return nil, err
		}
		candidates = append(candidates, p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return postFilter(ctx, s.codec, candidates, search)
}
