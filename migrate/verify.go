package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
)

// VerifyConfig configures Verify.
type VerifyConfig struct {
	DB      *sql.DB
	Dialect keys.Dialect
	Spec    Spec
	// Codec, if set, decrypts every row as well, counting the rows that
	// fail (a tampered value, a destroyed key).
	Codec *fields.Codec
	// BatchRows is the number of rows read per query (1000 by default).
	BatchRows int
	// Scope, if set, limits the report to the rows of that scope: none
	// when the Spec's fixed Scope is another one.
	Scope string
}

// ColumnReport describes one encrypted column of a table.
type ColumnReport struct {
	Column string
	// Null, Plaintext and Malformed count those rows; Versions counts the
	// ciphertexts per data key version (compact form). With a Target
	// column, a row whose target is NULL while its source is not is not
	// migrated yet: it counts as Plaintext.
	Null, Plaintext, Malformed int64
	Versions                   map[uint32]int64
}

// IndexReport describes one blind index column.
type IndexReport struct {
	Column string
	// Null counts rows without a value; Versions counts the values per
	// index key version.
	Null     int64
	Versions map[uint32]int64
}

// VerifyReport is the state of a table.
type VerifyReport struct {
	Rows    int64
	Columns []ColumnReport
	Indexes []IndexReport
	// Undecryptable counts the rows that failed to open (with a Codec),
	// by error class (keys.ErrorClass).
	Undecryptable map[string]int64
}

// Complete reports whether every value is encrypted: no plaintext and no
// malformed value is left, and (when checked) every row decrypts. It is
// the condition for switching the application's fields to strict mode.
func (r *VerifyReport) Complete() bool {
	for _, c := range r.Columns {
		if c.Plaintext > 0 || c.Malformed > 0 {
			return false
		}
	}
	return len(r.Undecryptable) == 0
}

// Referenced returns, for each column, the data key versions its values
// still use, ascending: versions below the smallest may be retired
// (keys.SetMinDecryptVersion) once no other table uses them. Usage makes
// that check for keys.Keyring.Retire and DestroyVersion.
func (r *VerifyReport) Referenced() map[string][]uint32 {
	out := map[string][]uint32{}
	for _, c := range r.Columns {
		var vs []uint32
		for v, n := range c.Versions {
			if n > 0 {
				vs = append(vs, v)
			}
		}
		sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
		out[c.Column] = vs
	}
	return out
}

// String summarizes the report, one line per column and index.
func (r *VerifyReport) String() string {
	var b strings.Builder
	if r.Rows == 1 {
		b.WriteString("1 row\n")
	} else {
		fmt.Fprintf(&b, "%d rows\n", r.Rows)
	}
	for _, c := range r.Columns {
		fmt.Fprintf(&b, "column %s: %d plaintext, %d null, %d malformed, by key version %s\n", c.Column, c.Plaintext, c.Null, c.Malformed, versions(c.Versions))
	}
	for _, ix := range r.Indexes {
		fmt.Fprintf(&b, "index %s: %d null, by index key version %s\n", ix.Column, ix.Null, versions(ix.Versions))
	}
	if len(r.Undecryptable) > 0 {
		fmt.Fprintf(&b, "undecryptable rows: %v\n", r.Undecryptable)
	}
	return b.String()
}

func versions(m map[uint32]int64) string {
	var vs []uint32
	for v := range m {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
	var parts []string
	for _, v := range vs {
		parts = append(parts, fmt.Sprintf("v%d=%d", v, m[v]))
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, " ")
}

// Verify reads a whole table and counts, per encrypted column, the
// plaintext values left and the ciphertexts per data key version, and per
// blind index the values per index key version; with a Codec it also
// decrypts every row. It writes nothing.
func Verify(ctx context.Context, cfg VerifyConfig) (*VerifyReport, error) {
	s := &cfg.Spec
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if cfg.BatchRows <= 0 {
		cfg.BatchRows = 1000
	}
	r := &VerifyReport{Undecryptable: map[string]int64{}}
	for _, c := range s.Columns {
		r.Columns = append(r.Columns, ColumnReport{Column: c.target(), Versions: map[uint32]int64{}})
	}
	for _, ix := range s.Indexes {
		r.Indexes = append(r.Indexes, IndexReport{Column: ix.Column, Versions: map[uint32]int64{}})
	}
	w := &worker{cfg: &Config{DB: cfg.DB, Dialect: cfg.Dialect, Spec: cfg.Spec, BatchRows: cfg.BatchRows}, typ: cfg.Spec.rowType(), scope: cfg.Scope}
	if cfg.Scope != "" && s.ScopeColumn == "" && cfg.Scope != s.Scope {
		return r, nil
	}
	if err := w.prepareRead(ctx, cfg.DB); err != nil {
		return nil, err
	}
	var last any
	for {
		batch, err := w.readBatch(ctx, cfg.DB, last, false, nil)
		if err != nil {
			return nil, err
		}
		if len(batch) == 0 {
			return r, nil
		}
		last = batch[len(batch)-1].key
		for _, row := range batch {
			r.Rows++
			for i, col := range s.Columns {
				c := &r.Columns[i]
				v := row.dst[i]
				if v == nil {
					if col.Target != "" && row.src[i] != nil {
						// Not migrated: the source still holds the
						// plaintext.
						c.Plaintext++
					} else {
						c.Null++
					}
					continue
				}
				info, err := envelope.Inspect(rawBytes(v))
				switch {
				case errors.Is(err, envelope.ErrNotEncrypted):
					c.Plaintext++
				case err != nil:
					c.Malformed++
				default:
					c.Versions[info.KeyVersion]++
				}
			}
			for i := range s.Indexes {
				var x fields.BlindIndex
				if err := x.Scan(row.idx[i]); err != nil || x.IsNull() {
					r.Indexes[i].Null++
					continue
				}
				r.Indexes[i].Versions[x.Version()]++
			}
			if cfg.Codec != nil {
				if err := openRow(ctx, cfg.Codec, w.typ, s, row); err != nil {
					r.Undecryptable[keys.ErrorClass(err)]++
				}
			}
		}
	}
}

// openRow decrypts a row's ciphertexts through the row type.
func openRow(ctx context.Context, c *fields.Codec, typ reflect.Type, s *Spec, r *row) error {
	rec := reflect.New(typ)
	rv := rec.Elem()
	rv.Field(0).SetString(r.id)
	rv.Field(1).SetString(r.scope)
	for i := range s.Columns {
		if r.dst[i] == nil || !isCiphertext(r.dst[i]) {
			continue
		}
		rv.Field(2 + i).Addr().Interface().(interface{ Scan(any) error }).Scan(r.dst[i])
	}
	return c.Open(ctx, rec.Interface())
}

// JobStatus is the state of a job.
type JobStatus struct {
	Job, Kind string
	// Total is the row count when the job was created.
	Total int64
	// Partitions and PartitionsDone count the partitions; RowsDone and
	// RowsWritten the rows of the done ones.
	Partitions, PartitionsDone int
	RowsDone, RowsWritten      int64
	Created                    time.Time
	// Finished is zero until the job is done.
	Finished time.Time
	// Workers lists the workers that completed partitions.
	Workers []string
}

// ErrNoJob means no job has the name.
var ErrNoJob = errors.New("migrate: no such job")

// Status returns the state of job. It only reads: a database without the
// bookkeeping tables has no job (ErrNoJob); tables at another schema
// version fail with a *keys.SchemaError.
func Status(ctx context.Context, db *sql.DB, d keys.Dialect, job string) (*JobStatus, error) {
	if err := CheckSchema(ctx, db, d); err != nil {
		if se := (*keys.SchemaError)(nil); errors.As(err, &se) && se.Have == 0 {
			return nil, ErrNoJob
		}
		return nil, err
	}
	st := &JobStatus{Job: job}
	var created int64
	var finished sql.NullInt64
	err := db.QueryRowContext(ctx, d.Rebind("SELECT kind, total, created_at, finished_at FROM phicrypt_migration_jobs WHERE job = ?"), job).
		Scan(&st.Kind, &st.Total, &created, &finished)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNoJob, job)
	}
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	st.Created = time.Unix(0, created).UTC()
	if finished.Valid {
		st.Finished = time.Unix(0, finished.Int64).UTC()
	}
	err = db.QueryRowContext(ctx, d.Rebind(`SELECT count(*), coalesce(sum(done), 0), coalesce(sum(rows_seen), 0), coalesce(sum(rows_written), 0)
		FROM phicrypt_migration_parts WHERE job = ?`), job).Scan(&st.Partitions, &st.PartitionsDone, &st.RowsDone, &st.RowsWritten)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	rows, err := db.QueryContext(ctx, d.Rebind("SELECT DISTINCT worker FROM phicrypt_migration_parts WHERE job = ? AND worker IS NOT NULL ORDER BY worker"), job)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var wk string
		if err := rows.Scan(&wk); err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
		st.Workers = append(st.Workers, wk)
	}
	return st, rows.Err()
}
