package main

import (
	"context"
	"errors"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
)

// PgxStore keeps patients in PostgreSQL through pgx's native API. pgx
// encodes the Encrypted and BlindIndex arguments through their Value
// methods and scans into them through their Scan methods.
type PgxStore struct {
	pool  *pgxpool.Pool
	codec *fields.Codec
}

var _ Store = (*PgxStore)(nil)

// OpenPgx connects to dsn and creates the patients table if needed, with
// binary ciphertexts in bytea columns.
func OpenPgx(ctx context.Context, dsn string, keyring *keys.Keyring) (*PgxStore, io.Closer, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	codec, err := fields.NewCodec(fields.Config{Keyring: keyring, Binary: true})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	if _, err := pool.Exec(ctx, PostgresSchema); err != nil {
		pool.Close()
		return nil, nil, err
	}
	return &PgxStore{pool: pool, codec: codec}, closerFunc(pool.Close), nil
}

type closerFunc func()

func (f closerFunc) Close() error { f(); return nil }

// Insert implements Store: one Seal for the batch, then the rows in one
// pgx.Batch (one round trip).
func (s *PgxStore) Insert(ctx context.Context, patients []*Patient) error {
	if err := s.codec.Seal(ctx, patients); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, p := range patients {
			b.Queue("INSERT INTO patients ("+columns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)", p.values()...)
		}
		return tx.SendBatch(ctx, b).Close()
	})
}

// Get implements Store with QueryRow().Scan, then Open.
func (s *PgxStore) Get(ctx context.Context, tenant, id string) (*Patient, error) {
	p := &Patient{}
	err := s.pool.QueryRow(ctx, "SELECT "+columns+" FROM patients WHERE tenant_id = $1 AND id = $2", tenant, id).Scan(p.fields()...)
	if errors.Is(err, pgx.ErrNoRows) {
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

// Search implements Store: codec.Search computes the terms and Where
// writes the condition with $n placeholders for pgx; the rows are
// opened, then post-filtered.
func (s *PgxStore) Search(ctx context.Context, term *Patient, index string) ([]*Patient, error) {
	search, err := s.codec.Search(ctx, fields.NewQuery(term).Equal(index))
	if err != nil {
		return nil, err
	}
	where, args, err := search.Where(fields.Postgres)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, "SELECT "+columns+" FROM patients WHERE "+where, args...)
	if err != nil {
		return nil, err
	}
	candidates, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Patient, error) {
		p := &Patient{}
		return p, row.Scan(p.fields()...)
	})
	if err != nil {
		return nil, err
	}
	return postFilter(ctx, s.codec, candidates, search)
}
