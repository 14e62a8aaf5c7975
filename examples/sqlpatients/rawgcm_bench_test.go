package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The floor under the encrypted reads: the same rows, encrypted by code
// that calls crypto/cipher itself. raw_patients has the columns of
// PostgresSchema's table, with values of the same sizes: each PHI column
// is AES-256-GCM under one key (random nonce, no phicrypt header: 8 bytes
// shorter), bound to tenant, table, column and id as Codec binds them, and
// each index column holds as many bytes as a BlindIndex of 8 bits. A read
// scans the ciphertexts, then opens them with the hand-written loop of
// package fields' BenchmarkRecord10 (raw/Open) and decodes the plaintext
// into Go values, as Open does. No key store, no key lookup, no format
// checks: what no library can do better than.
const rawSchema = `
CREATE TABLE IF NOT EXISTS raw_patients (
	id text PRIMARY KEY, tenant_id text NOT NULL,
	mrn bytea, ssn bytea, first bytea, last bytea, birth_date bytea, address bytea,
	gender text, ssn_index bytea, mrn_index bytea, name_dob bytea);`

// rawColumns are raw_patients' encrypted columns, in the order of
// rawPatient.ct.
var rawColumns = [6]string{"mrn", "ssn", "first", "last", "birth_date", "address"}

// rawPatient is a row of raw_patients: ct as scanned, the rest as opened.
type rawPatient struct {
	ID, TenantID                   string
	ct                             [6][]byte
	MRN, SSN, First, Last, Address string
	BirthDate                      time.Time
	Gender                         string
	SSNIndex, MRNIndex, NameDOB    []byte
}

func (p *rawPatient) fields() []any {
	return []any{&p.ID, &p.TenantID, &p.ct[0], &p.ct[1], &p.ct[2], &p.ct[3], &p.ct[4], &p.ct[5], &p.Gender,
		&p.SSNIndex, &p.MRNIndex, &p.NameDOB}
}

// rawGCM is the hand-written encryption of raw_patients.
type rawGCM struct{ aead cipher.AEAD }

func newRawGCM() rawGCM {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic(err)
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(blk)
	if err != nil {
		panic(err)
	}
	return rawGCM{aead}
}

// aad binds a value to its row and column, each string length-prefixed.
func (rawGCM) aad(dst []byte, tenant, column, id string) []byte {
	for _, s := range [...]string{tenant, "raw_patients", column, id} {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

// values returns p's row of raw_patients, for Exec.
func (g rawGCM) values(p *plainPatient) []any {
	var ad [256]byte
	pt := [6]string{p.MRN, p.SSN, p.First, p.Last, p.BirthDate, p.Address}
	row := []any{p.ID, p.TenantID}
	for i, v := range pt {
		row = append(row, g.aead.Seal(nil, nil, []byte(v), g.aad(ad[:0], p.TenantID, rawColumns[i], p.ID)))
	}
	index := func() []byte { return []byte{1, byte(len(p.ID))} } // a version and 8 bits
	return append(row, p.Gender, index(), index(), index())
}

// open decrypts p's ciphertexts into its plaintext fields.
func (g rawGCM) open(p *rawPatient) error {
	var ad [256]byte
	var buf [256]byte
	var out [6]string
	for i, ct := range p.ct {
		pt, err := g.aead.Open(buf[:0], nil, ct, g.aad(ad[:0], p.TenantID, rawColumns[i], p.ID))
		if err != nil {
			return fmt.Errorf("raw_patients %s of %s: %w", rawColumns[i], p.ID, err)
		}
		out[i] = string(pt)
	}
	p.MRN, p.SSN, p.First, p.Last, p.Address = out[0], out[1], out[2], out[3], out[5]
	var err error
	p.BirthDate, err = time.Parse(time.DateOnly, out[4])
	return err
}

func pgxInsertRaw(ctx context.Context, pool *pgxpool.Pool, g rawGCM, plain []*plainPatient) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		for _, p := range plain {
			batch.Queue("INSERT INTO raw_patients ("+columns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)", g.values(p)...)
		}
		return tx.SendBatch(ctx, batch).Close()
	})
}

func sqlInsertRaw(ctx context.Context, db *sql.DB, g rawGCM, plain []*plainPatient) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, p := range plain {
		if _, err := tx.ExecContext(ctx, "INSERT INTO raw_patients ("+columns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)", g.values(p)...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// pgxSelectRaw reads and opens every row of raw_patients as the
// encrypted pgx read does: collect the rows, then open them.
func pgxSelectRaw(ctx context.Context, pool *pgxpool.Pool, g rawGCM) (int, error) {
	r, err := pool.Query(ctx, "SELECT "+columns+" FROM raw_patients")
	if err != nil {
		return 0, err
	}
	ps, err := pgx.CollectRows(r, func(row pgx.CollectableRow) (*rawPatient, error) {
		p := &rawPatient{}
		return p, row.Scan(p.fields()...)
	})
	if err != nil {
		return 0, err
	}
	return len(ps), openRaw(g, ps)
}

// sqlSelectRaw is pgxSelectRaw through database/sql.
func sqlSelectRaw(ctx context.Context, db *sql.DB, g rawGCM) (int, error) {
	r, err := db.QueryContext(ctx, "SELECT "+columns+" FROM raw_patients")
	if err != nil {
		return 0, err
	}
	defer r.Close()
	var ps []*rawPatient
	for r.Next() {
		p := &rawPatient{}
		if err := r.Scan(p.fields()...); err != nil {
			return 0, err
		}
		ps = append(ps, p)
	}
	if err := r.Err(); err != nil {
		return 0, err
	}
	return len(ps), openRaw(g, ps)
}

func openRaw(g rawGCM, ps []*rawPatient) error {
	for _, p := range ps {
		if err := g.open(p); err != nil {
			return err
		}
	}
	return nil
}
