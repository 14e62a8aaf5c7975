package migrate

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/internal/sqltx"
	"github.com/phicrypt/phicrypt/keys"
)

// Kind is what a job does to a table.
type Kind string

// Kinds of jobs.
const (
	// Encrypt encrypts legacy plaintext, in place or into Target columns,
	// and computes the blind indexes.
	Encrypt Kind = "encrypt"
	// Reencrypt re-encrypts values whose data key version is older than
	// the scope's active one, after a rotation. It works on the
	// ciphertexts: each is opened with its old key and sealed with the
	// active one under the same binding, in its own encoding (text armor
	// or binary), without decoding the plaintext; blind indexes are
	// recomputed only in rows whose index key changed too.
	Reencrypt Kind = "reencrypt"
	// Reindex recomputes blind index values made with an index key version
	// older than the active one, after an index key rotation.
	Reindex Kind = "reindex"
)

// Defaults of Config.
const (
	DefaultPartitionRows = 1000
	DefaultBatchRows     = 250
)

// Config configures a migration run.
type Config struct {
	// DB holds the table and the job's bookkeeping tables.
	DB *sql.DB
	// Dialect is keys.Postgres or keys.SQLite.
	Dialect keys.Dialect
	// Codec seals and opens rows; Keyring is the codec's keyring.
	Codec   *fields.Codec
	Keyring *keys.Keyring
	// Job names the job: workers that run the same Job share its work. A
	// job's kind and spec are fixed when it is created.
	Job  string
	Kind Kind
	Spec Spec
	// Worker identifies this worker in the job's status (host:pid by
	// default).
	Worker string
	// PartitionRows is the number of rows per partition: the unit of work,
	// claimed and committed in one transaction (DefaultPartitionRows).
	PartitionRows int
	// BatchRows is the number of rows read and written per statement
	// (DefaultBatchRows).
	BatchRows int
	// RateLimit caps the rows processed per second by this worker (zero:
	// no limit).
	RateLimit float64
	// Progress, if set, is called after each batch.
	Progress func(Progress)
	// PollInterval is how often a worker looks for partitions that other
	// workers hold, until the job is done (default 200ms).
	PollInterval time.Duration
	// DryRun reads the whole table and reports, in Written, how many rows
	// the job would change, without writing anything or creating the job.
	DryRun bool
	// CheckSchemaOnly makes Run check that the job bookkeeping tables are
	// at SchemaVersion (CheckSchema) instead of creating or upgrading
	// them (Migrate): for a database role that may read and write rows
	// but run no DDL. Install the tables from SchemaMigrations first.
	CheckSchemaOnly bool

	// recordPath makes Reencrypt jobs take the record path for every row
	// (tests and benchmarks compare the two).
	recordPath bool
}

// schema creates the bookkeeping tables, or only checks them.
func (cfg *Config) schema(ctx context.Context) error {
	if cfg.CheckSchemaOnly {
		return CheckSchema(ctx, cfg.DB, cfg.Dialect)
	}
	return Migrate(ctx, cfg.DB, cfg.Dialect)
}

// Progress reports a running job.
type Progress struct {
	Job string
	// Done counts the rows processed (by every worker, as of this
	// worker's last look), Total the rows when the job was created.
	Done, Total int64
	// Written counts the rows this worker changed.
	Written int64
	// Rate is this worker's rows per second; ETA the time left at that
	// rate.
	Rate float64
	ETA  time.Duration
}

// Report is what a worker did.
type Report struct {
	// Partitions is the number of partitions this worker completed.
	Partitions int
	// Scanned counts the rows read, Written the rows changed, Conflicts
	// the rows that concurrent writes kept changing between read and write
	// (after retries; left for a later run), Gone the rows deleted between
	// read and write (nothing of them is left to migrate). A row whose
	// update fails although it did not change is no conflict: Run stops
	// with ErrUnwritable.
	Scanned, Written, Conflicts, Gone int64
	// Legacy counts the legacy plaintext values encrypted (by an Encrypt
	// job; in a dry run, those it would encrypt).
	Legacy int64
}

// DefaultWorker is the name a worker gets by default: host:pid.
func DefaultWorker() string {
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(os.Getpid())
}

// ErrJobMismatch means a job of the same name exists with another kind or
// spec.
var ErrJobMismatch = errors.New("migrate: a job of this name exists with another kind or spec")

func (c *Config) defaults() error {
	if c.DB == nil || c.Codec == nil || c.Keyring == nil {
		return errors.New("migrate: Config needs a DB, a Codec and a Keyring")
	}
	if c.Dialect != keys.Postgres && c.Dialect != keys.SQLite {
		return fmt.Errorf("migrate: unknown dialect %v", c.Dialect)
	}
	switch c.Kind {
	case Encrypt, Reencrypt, Reindex:
	default:
		return fmt.Errorf("migrate: unknown kind %q", c.Kind)
	}
	if c.Job == "" {
		c.Job = string(c.Kind) + ":" + c.Spec.Table
	}
	if c.Worker == "" {
		c.Worker = DefaultWorker()
	}
	if c.PartitionRows <= 0 {
		c.PartitionRows = DefaultPartitionRows
	}
	if c.BatchRows <= 0 {
		c.BatchRows = DefaultBatchRows
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 200 * time.Millisecond
	}
	if err := c.Spec.Validate(); err != nil {
		return err
	}
	if c.Kind == Reindex && len(c.Spec.Indexes) == 0 {
		return fmt.Errorf("%w: a reindex job needs indexes", ErrSpec)
	}
	return c.Codec.Plan(reflect.New(c.Spec.rowType()).Interface())
}

// Run works on job Config.Job until every partition is done, then returns
// what this worker did. It creates the job on first use (splitting the
// table into partitions by primary key), and any number of workers, on any
// number of machines, may run it at once: each claims a partition with
// SELECT … FOR UPDATE SKIP LOCKED (on SQLite, which has one writer,
// partitions are taken in turn), processes its rows and marks it done in
// the same transaction. A worker killed at any point loses only its
// uncommitted partition, which the next worker redoes; rows already
// migrated are recognised and skipped, so nothing is encrypted twice.
//
// Every write is a compare-and-swap on what was read: on PostgreSQL the
// row version (UPDATE … WHERE id = … AND xmin = the xmin read), on SQLite
// the values (… AND column IS old), so an application write that lands in
// between is never overwritten: the row is read again and decided anew,
// and after repeated conflicts counted in Conflicts and left as the
// application wrote it (sealed, by fields). A row deleted in between is
// counted in Gone; a row whose update fails although it did not change
// stops the job with ErrUnwritable. Ids are compared as the driver
// returns them (integers, text, bytes, times); a NULL id stops the job
// with ErrRowID.
func Run(ctx context.Context, cfg Config) (Report, error) {
	var r Report
	if err := cfg.defaults(); err != nil {
		return r, err
	}
	if cfg.DryRun {
		return dryRun(ctx, &cfg)
	}
	if err := cfg.schema(ctx); err != nil {
		return r, err
	}
	total, textBounds, err := createJob(ctx, &cfg)
	if err != nil {
		return r, err
	}
	w := &worker{cfg: &cfg, total: total, textBounds: textBounds, started: time.Now(), typ: cfg.Spec.rowType()}
	if err := w.prepare(ctx); err != nil {
		return r, err
	}
	for {
		claimed, err := w.runPartition(ctx)
		if err != nil {
			return w.report, err
		}
		if claimed {
			continue
		}
		left, err := pendingParts(ctx, &cfg)
		if err != nil {
			return w.report, err
		}
		if left == 0 {
			if err := finishJob(ctx, &cfg); err != nil {
				return w.report, err
			}
			return w.report, checkpoint(ctx, &cfg)
		}
		// Others hold the remaining partitions; one may die and release
		// its own, so wait and look again.
		select {
		case <-ctx.Done():
			return w.report, ctx.Err()
		case <-time.After(cfg.PollInterval):
		}
	}
}

// dryRun decides every row of the table and counts the changes.
func dryRun(ctx context.Context, cfg *Config) (Report, error) {
	w := &worker{cfg: cfg, started: time.Now(), typ: cfg.Spec.rowType()}
	if err := w.prepareRead(ctx, cfg.DB); err != nil {
		return w.report, err
	}
	var last any
	for {
		batch, err := w.readBatch(ctx, cfg.DB, last, false, nil)
		if err != nil || len(batch) == 0 {
			return w.report, err
		}
		last = batch[len(batch)-1].key
		w.newBatch()
		for _, r := range batch {
			ch, err := w.decide(ctx, r)
			if err != nil {
				return w.report, err
			}
			if ch != nil {
				w.report.Written++
				w.report.Legacy += ch.legacy
			}
		}
		w.report.Scanned += int64(len(batch))
		w.total = w.report.Scanned
		w.progress(ctx)
	}
}

// jobSpec is the stored description of a job.
type jobSpec struct {
	Kind Kind `json:"kind"`
	Spec Spec `json:"spec"`
	// Bounds is "typed" when the partition bounds are encoded with their
	// type (encodeKey); earlier releases stored them as text.
	Bounds string `json:"bounds,omitempty"`
}

// createJob creates the job and its partitions unless they exist, and
// returns the job's row count and whether its partition bounds are the
// text of an earlier release's job.
func createJob(ctx context.Context, cfg *Config) (total int64, textBounds bool, err error) {
	want, err := json.Marshal(jobSpec{Kind: cfg.Kind, Spec: cfg.Spec, Bounds: "typed"})
	if err != nil {
		return 0, false, fmt.Errorf("migrate: %w", err)
	}
	old, err := json.Marshal(jobSpec{Kind: cfg.Kind, Spec: cfg.Spec})
	if err != nil {
		return 0, false, fmt.Errorf("migrate: %w", err)
	}
	d := cfg.Dialect
	err = sqltx.Write(ctx, cfg.DB, d == keys.Postgres, "migrate", func(q sqltx.Querier) error {
		if d == keys.Postgres {
			if _, err := q.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "phicrypt-migrate:"+cfg.Job); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
		}
		var spec string
		err := q.QueryRowContext(ctx, d.Rebind("SELECT spec, total FROM phicrypt_migration_jobs WHERE job = ?"), cfg.Job).Scan(&spec, &total)
		if err == nil {
			switch spec {
			case string(want):
			case string(old):
				textBounds = true
			default:
				return ErrJobMismatch
			}
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("migrate: %w", err)
		}
		s := &cfg.Spec
		if err := q.QueryRowContext(ctx, "SELECT count(*) FROM "+s.Table).Scan(&total); err != nil {
			return fmt.Errorf("migrate: count %s: %w", s.Table, err)
		}
		// Every PartitionRows-th key is a boundary, kept with its type (on
		// SQLite as stored: +id is not converted by the driver).
		key := s.ID
		if d == keys.SQLite {
			key = "+" + s.ID
		}
		rows, err := q.QueryContext(ctx, d.Rebind(fmt.Sprintf(
			"SELECT %[3]s FROM (SELECT %[1]s, row_number() OVER (ORDER BY %[1]s) AS rn FROM %[2]s) p WHERE rn %% ? = 1 AND rn > 1 ORDER BY %[1]s",
			s.ID, s.Table, key)), cfg.PartitionRows)
		if err != nil {
			return fmt.Errorf("migrate: partition %s: %w", s.Table, err)
		}
		var bounds []string
		for rows.Next() {
			var v any
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return fmt.Errorf("migrate: %w", err)
			}
			b, err := encodeKey(ownBytes(v))
			if err != nil {
				rows.Close()
				return fmt.Errorf("migrate: partition %s: %w", s.Table, err)
			}
			bounds = append(bounds, b)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if _, err := q.ExecContext(ctx, d.Rebind("INSERT INTO phicrypt_migration_jobs (job, kind, spec, total, created_at) VALUES (?, ?, ?, ?, ?)"),
			cfg.Job, string(cfg.Kind), string(want), total, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		// Partition i covers [bounds[i-1], bounds[i]); the first has no
		// lower bound and the last no upper bound, so rows inserted later
		// at either end are covered too.
		lo := sql.NullString{}
		for i := 0; i <= len(bounds); i++ {
			hi := sql.NullString{}
			if i < len(bounds) {
				hi = sql.NullString{String: bounds[i], Valid: true}
			}
			if _, err := q.ExecContext(ctx, d.Rebind("INSERT INTO phicrypt_migration_parts (job, part, lo, hi) VALUES (?, ?, ?, ?)"),
				cfg.Job, i, lo, hi); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
			lo = hi
		}
		return nil
	})
	return total, textBounds, err
}

func pendingParts(ctx context.Context, cfg *Config) (int, error) {
	var n int
	err := cfg.DB.QueryRowContext(ctx, cfg.Dialect.Rebind("SELECT count(*) FROM phicrypt_migration_parts WHERE job = ? AND done = 0"), cfg.Job).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	return n, nil
}

func finishJob(ctx context.Context, cfg *Config) error {
	_, err := cfg.DB.ExecContext(ctx, cfg.Dialect.Rebind("UPDATE phicrypt_migration_jobs SET finished_at = ? WHERE job = ? AND finished_at IS NULL"),
		time.Now().UnixNano(), cfg.Job)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// ErrCheckpointIncomplete means that a job on SQLite finished, but the
// older versions of the rows it rewrote (for an Encrypt job, the legacy
// plaintext) may remain in the database's write-ahead log, because a
// connection kept a read transaction open past the final checkpoint. Run
// the job again once that reader is done: a finished job only checkpoints
// again.
var ErrCheckpointIncomplete = errors.New("migrate: the job is done, but replaced values may remain in SQLite's write-ahead log")

// checkpoint ends a job on SQLite with a TRUNCATE checkpoint, so that the
// write-ahead log no longer holds the pages the job replaced: the rows
// the engine rewrote were written with secure_delete on, which zeroes
// their old bytes in the main file only when the new pages reach it.
func checkpoint(ctx context.Context, cfg *Config) error {
	if err := sqltx.TruncateCheckpoint(ctx, cfg.DB, cfg.Dialect == keys.Postgres); err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpointIncomplete, err)
	}
	return nil
}

// worker processes partitions.
type worker struct {
	cfg     *Config
	typ     reflect.Type // the record type of cfg.Spec
	total   int64
	started time.Time
	report  Report
	// casts are the PostgreSQL types of the columns written, for the
	// VALUES list of batched updates.
	casts map[string]string
	// scope, when set, limits reads to the rows of that scope (Verify's
	// VerifyConfig.Scope).
	scope string
	// rs is the Reencrypt fast path's state (reseal.go), made on first
	// use.
	rs *resealer
	// textBounds is set for a job of an earlier release, whose partition
	// bounds are stored as text (rowkey.go).
	textBounds bool
	// rawCols are the columns whose values the SQLite driver converts,
	// read a second time as stored (prepareRead).
	rawCols []string
}

// prepare reads the column types a batched update must cast to
// (PostgreSQL), or the columns to read as stored (SQLite, prepareRead).
func (w *worker) prepare(ctx context.Context) error {
	if w.cfg.Dialect != keys.Postgres {
		return w.prepareRead(ctx, w.cfg.DB)
	}
	s := &w.cfg.Spec
	w.casts = map[string]string{}
	cols := []string{s.ID}
	for _, c := range s.Columns {
		cols = append(cols, c.Name, c.target())
	}
	for _, ix := range s.Indexes {
		cols = append(cols, ix.Column)
	}
	for _, c := range cols {
		var typ string
		err := w.cfg.DB.QueryRowContext(ctx,
			"SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2 AND NOT attisdropped",
			s.Table, c).Scan(&typ)
		if err != nil {
			return fmt.Errorf("migrate: column %s.%s: %w", s.Table, c, err)
		}
		w.casts[c] = typ
	}
	return nil
}

// runPartition claims a partition and processes it. It reports false when
// no partition could be claimed.
//
// On PostgreSQL the claim (a row lock taken with SKIP LOCKED), the rows'
// updates and the partition's completion are one transaction: a worker
// that dies releases its claim with its connection, and its partition is
// redone from scratch. SQLite has one writer and no row locks: a partition
// is processed with a short write transaction per batch (the keyring must
// be able to write its keys in between), and a partition left half done
// is finished by the next worker, which skips the rows already migrated.
func (w *worker) runPartition(ctx context.Context) (bool, error) {
	cfg := w.cfg
	d := cfg.Dialect
	claim := func(q sqltx.Querier) (part int, lo, hi sql.NullString, ok bool, err error) {
		query := "SELECT part, lo, hi FROM phicrypt_migration_parts WHERE job = ? AND done = 0 ORDER BY part LIMIT 1"
		if d == keys.Postgres {
			query += " FOR UPDATE SKIP LOCKED"
		}
		err = q.QueryRowContext(ctx, d.Rebind(query), cfg.Job).Scan(&part, &lo, &hi)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, lo, hi, false, nil
		}
		if err != nil {
			return 0, lo, hi, false, fmt.Errorf("migrate: claim: %w", err)
		}
		return part, lo, hi, true, nil
	}
	finish := func(q sqltx.Querier, part int, n, written int64) error {
		_, err := q.ExecContext(ctx, d.Rebind("UPDATE phicrypt_migration_parts SET done = 1, rows_seen = ?, rows_written = ?, worker = ?, finished_at = ? WHERE job = ? AND part = ?"),
			n, written, cfg.Worker, time.Now().UnixNano(), cfg.Job, part)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		return nil
	}
	if d == keys.SQLite {
		part, lo, hi, ok, err := claim(cfg.DB)
		if err != nil || !ok {
			return false, err
		}
		n, written, err := w.processPart(ctx, cfg.DB, lo, hi)
		if err == nil {
			err = finish(cfg.DB, part, n, written)
		}
		if err == nil {
			w.report.Partitions++
		}
		return true, err
	}
	claimed := false
	err := sqltx.Write(ctx, cfg.DB, true, "migrate", func(q sqltx.Querier) error {
		part, lo, hi, ok, err := claim(q)
		if err != nil || !ok {
			return err
		}
		claimed = true
		n, written, err := w.processPart(ctx, q, lo, hi)
		if err != nil {
			return err
		}
		return finish(q, part, n, written)
	})
	if err == nil && claimed {
		w.report.Partitions++
	}
	return claimed, err
}

// processPart migrates the rows of the partition with stored bounds lo
// and hi.
func (w *worker) processPart(ctx context.Context, q sqltx.Querier, lo, hi sql.NullString) (int64, int64, error) {
	l, err := w.bound(lo)
	if err != nil {
		return 0, 0, err
	}
	h, err := w.bound(hi)
	if err != nil {
		return 0, 0, err
	}
	return w.processRange(ctx, q, l, h)
}

// processRange migrates the rows with lo <= id < hi (nil: unbounded),
// batch by batch.
func (w *worker) processRange(ctx context.Context, q sqltx.Querier, lo, hi any) (int64, int64, error) {
	var seen, written int64
	last := lo
	first := true
	for {
		batch, err := w.readBatch(ctx, q, last, first, hi)
		if err != nil {
			return seen, written, err
		}
		if len(batch) == 0 {
			return seen, written, nil
		}
		first = false
		last = batch[len(batch)-1].key
		n, err := w.migrateBatch(ctx, q, batch)
		if err != nil {
			return seen, written, err
		}
		seen += int64(len(batch))
		written += n
		w.report.Scanned += int64(len(batch))
		if err := w.pace(ctx); err != nil {
			return seen, written, err
		}
		w.progress(ctx)
	}
}

// row is one table row as read: its id, its scope, and the raw values of
// the spec's columns, target columns and index columns.
type row struct {
	// id is the record id (the id's text form, idText), key the id as
	// the driver returned it, which queries compare the id column with.
	id  string
	key any
	// raw holds, by column, the stored values of rawCols.
	raw   map[string]any
	scope string
	src   []any // per Column: the value of Name
	dst   []any // per Column: the value of target() (src again in place)
	idx   []any // per Index
	// ver is the row version read, on PostgreSQL (xmin): any write to
	// the row since it was read changes it.
	ver string
}

// columns returns the columns a row is read with.
func (s *Spec) columns() []string {
	cols := []string{s.ID}
	if s.ScopeColumn != "" {
		cols = append(cols, s.ScopeColumn)
	}
	for _, c := range s.Columns {
		cols = append(cols, c.Name)
		if c.Target != "" {
			cols = append(cols, c.Target)
		}
	}
	for _, ix := range s.Indexes {
		cols = append(cols, ix.Column)
	}
	return cols
}

// readBatch reads the next batch of rows after last (inclusive of lo on
// the partition's first read) and before hi; nil is unbounded.
func (w *worker) readBatch(ctx context.Context, q sqltx.Querier, last any, first bool, hi any) ([]*row, error) {
	s := &w.cfg.Spec
	var where []string
	var args []any
	if last != nil {
		op := ">"
		if first {
			op = ">="
		}
		where = append(where, s.ID+" "+op+" ?")
		args = append(args, last)
	}
	if hi != nil {
		where = append(where, s.ID+" < ?")
		args = append(args, hi)
	}
	if w.scope != "" && s.ScopeColumn != "" {
		where = append(where, s.ScopeColumn+" = ?")
		args = append(args, w.scope)
	}
	query := "SELECT " + w.selectList() + " FROM " + s.Table
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY " + s.ID + " LIMIT ?"
	args = append(args, w.cfg.BatchRows)
	return w.query(ctx, q, query, args)
}

// readRows reads the rows with the given ids (row.key).
func (w *worker) readRows(ctx context.Context, q sqltx.Querier, ids []any) ([]*row, error) {
	s := &w.cfg.Spec
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")
	args := ids
	return w.query(ctx, q, "SELECT "+w.selectList()+" FROM "+s.Table+" WHERE "+s.ID+" IN ("+marks+") ORDER BY "+s.ID, args)
}

// selectList is what a row is read with: the spec's columns, on SQLite
// the rawCols as stored, and on PostgreSQL the row version (xmin) that
// the compare-and-swap update checks.
func (w *worker) selectList() string {
	list := strings.Join(w.cfg.Spec.columns(), ", ")
	for _, c := range w.rawCols {
		list += ", +" + c
	}
	if w.cfg.Dialect == keys.Postgres {
		list += ", xmin::text"
	}
	return list
}

// query runs a row query over selectList and scans the rows.
func (w *worker) query(ctx context.Context, q sqltx.Querier, query string, args []any) ([]*row, error) {
	s := &w.cfg.Spec
	rows, err := q.QueryContext(ctx, w.cfg.Dialect.Rebind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("migrate: read %s: %w", s.Table, err)
	}
	defer rows.Close()
	var out []*row
	for rows.Next() {
		r := &row{src: make([]any, len(s.Columns)), dst: make([]any, len(s.Columns)), idx: make([]any, len(s.Indexes))}
		var id any
		dest := []any{&id}
		if s.ScopeColumn != "" {
			dest = append(dest, &r.scope)
		} else {
			r.scope = s.Scope
		}
		for i, c := range s.Columns {
			dest = append(dest, &r.src[i])
			if c.Target != "" {
				dest = append(dest, &r.dst[i])
			}
		}
		for i := range s.Indexes {
			dest = append(dest, &r.idx[i])
		}
		raw := make([]any, len(w.rawCols))
		for i := range raw {
			dest = append(dest, &raw[i])
		}
		if w.cfg.Dialect == keys.Postgres {
			dest = append(dest, &r.ver)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("migrate: read %s: %w", s.Table, err)
		}
		if len(raw) > 0 {
			r.raw = make(map[string]any, len(raw))
			for i, c := range w.rawCols {
				r.raw[c] = ownBytes(raw[i])
			}
		}
		id = ownBytes(id)
		var err error
		if r.id, err = idText(id); err != nil {
			return nil, fmt.Errorf("migrate: read %s: %w", s.Table, err)
		}
		r.key = r.stored(s.ID, id)
		for i, c := range s.Columns {
			r.src[i] = ownBytes(r.src[i])
			if c.Target == "" {
				r.dst[i] = r.src[i]
			} else {
				r.dst[i] = ownBytes(r.dst[i])
			}
		}
		for i := range r.idx {
			r.idx[i] = ownBytes(r.idx[i])
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ownBytes copies a []byte the driver may reuse. An empty value that is
// not NULL (a NULL scans as a nil interface) stays empty, not nil, which
// a driver would bind as NULL.
func ownBytes(v any) any {
	if b, ok := v.([]byte); ok {
		if b == nil {
			return []byte{}
		}
		return bytes.Clone(b)
	}
	return v
}

// isCiphertext reports whether a raw column value looks like a phicrypt
// ciphertext: it starts with the binary magic byte or the armor prefix.
// Nothing is authenticated here; Open does that, and Verify reports
// malformed values.
func isCiphertext(v any) bool {
	switch x := v.(type) {
	case []byte:
		return len(x) > 0 && x[0] == 0xF5 || strings.HasPrefix(string(x), envelope.ArmorPrefix)
	case string:
		return len(x) > 0 && x[0] == 0xF5 || strings.HasPrefix(x, envelope.ArmorPrefix)
	}
	return false
}

// change is one row's update: new values per written column, with the
// values read (as stored), for the compare-and-swap, and the columns only
// compared (SQLite; PostgreSQL compares the row version read, row.ver).
type change struct {
	row     *row // the row read
	cols    []string
	olds    []any
	news    []any
	cmpCols []string
	cmpOlds []any
	// legacy counts the legacy plaintext values the change encrypts.
	legacy int64
	// done is set when the update was written.
	done bool
}

// maxRetries bounds how often a row is re-read after a concurrent write
// changed it between the read and the compare-and-swap.
const maxRetries = 5

// migrateBatch decides and writes the batch's changes. A row that a
// concurrent write changed first is read again and decided anew, so the
// application's value stays and the row's other columns still get
// migrated; after maxRetries it is left for a later run (Conflicts).
func (w *worker) migrateBatch(ctx context.Context, q sqltx.Querier, batch []*row) (int64, error) {
	var written int64
	for attempt := 0; len(batch) > 0; attempt++ {
		var changes []*change
		w.newBatch()
		for _, r := range batch {
			ch, err := w.decide(ctx, r)
			if err != nil {
				return written, err
			}
			if ch != nil {
				changes = append(changes, ch)
			}
		}
		if len(changes) == 0 {
			break
		}
		if err := w.writeChanges(ctx, q, changes); err != nil {
			return written, err
		}
		var retry []*change
		for _, ch := range changes {
			if ch.done {
				written++
				w.report.Legacy += ch.legacy
			} else {
				retry = append(retry, ch)
			}
		}
		if len(retry) == 0 {
			break
		}
		if attempt == maxRetries {
			w.report.Conflicts += int64(len(retry))
			break
		}
		ids := make([]any, len(retry))
		for i, ch := range retry {
			ids[i] = ch.row.key
		}
		var err error
		if batch, err = w.readRows(ctx, q, ids); err != nil {
			return written, err
		}
		if err := w.checkRetry(retry, batch); err != nil {
			return written, err
		}
	}
	w.report.Written += written
	return written, nil
}

// checkRetry looks at the rows read again after their updates failed: a
// row that is gone was deleted (Gone), and a row read back unchanged
// failed its own compare-and-swap, which no retry mends (ErrUnwritable).
func (w *worker) checkRetry(retry []*change, again []*row) error {
	found := make(map[string]*row, len(again))
	for _, r := range again {
		k, err := encodeKey(r.key)
		if err != nil {
			return err
		}
		found[k] = r
	}
	for _, ch := range retry {
		k, err := encodeKey(ch.row.key)
		if err != nil {
			return err
		}
		r, ok := found[k]
		if !ok {
			w.report.Gone++
			continue
		}
		if sameRow(ch.row, r) {
			return fmt.Errorf("%w: row %s of %s", ErrUnwritable, ch.row.id, w.cfg.Spec.Table)
		}
	}
	return nil
}

// writeChanges writes changes within q (PostgreSQL: the partition's
// transaction) or in a short write transaction of its own (SQLite), and
// marks those written done.
func (w *worker) writeChanges(ctx context.Context, q sqltx.Querier, changes []*change) error {
	if w.cfg.Dialect != keys.SQLite {
		return w.write(ctx, q, changes)
	}
	return sqltx.Write(ctx, w.cfg.DB, false, "migrate", func(tq sqltx.Querier) error {
		for _, ch := range changes {
			ch.done = false // a retried transaction writes them again
		}
		// The plaintext (or old ciphertext and index values) replaced
		// must not stay behind in the pages' free space.
		if err := sqltx.SecureDelete(ctx, tq, false); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		return w.write(ctx, tq, changes)
	})
}

// decide returns the change a row needs for the job, or nil. Reencrypt
// jobs work on the ciphertexts (decideReencrypt); the others, and
// re-encrypted rows whose blind indexes are stale, go through the fields
// package with a typed record (decideRecord).
func (w *worker) decide(ctx context.Context, r *row) (*change, error) {
	if w.cfg.Kind == Reencrypt && !w.cfg.recordPath {
		return w.decideReencrypt(ctx, r)
	}
	return w.decideRecord(ctx, r)
}

// newBatch starts a batch: key versions cached for the previous one are
// looked up again.
func (w *worker) newBatch() {
	if w.rs != nil {
		w.rs.newBatch()
	}
}

// decideRecord is decide through a typed record: Open, then Seal.
func (w *worker) decideRecord(ctx context.Context, r *row) (*change, error) {
	s := &w.cfg.Spec
	rec := reflect.New(w.typ)
	rv := rec.Elem()
	rv.Field(0).SetString(r.id)
	rv.Field(1).SetString(r.scope)
	if r.scope == "" {
		return nil, fmt.Errorf("migrate: row %s has an empty scope", r.id)
	}
	// needs[i] says column i must be written.
	needs := make([]bool, len(s.Columns))
	anyNeeded := false
	for i := range s.Columns {
		field := rv.Field(2 + i).Addr().Interface().(interface{ Scan(any) error })
		switch w.cfg.Kind {
		case Encrypt:
			switch {
			case r.dst[i] != nil && isCiphertext(r.dst[i]):
				field.Scan(r.dst[i]) // done already
			case r.src[i] == nil:
			default:
				field.Scan(r.src[i]) // legacy plaintext: Open decodes it
				needs[i], anyNeeded = true, true
			}
		case Reencrypt, Reindex:
			field.Scan(r.dst[i])
			if w.cfg.Kind == Reencrypt && r.dst[i] != nil && isCiphertext(r.dst[i]) {
				old, err := w.olderKey(ctx, i, r)
				if err != nil {
					return nil, err
				}
				needs[i] = old
				anyNeeded = anyNeeded || old
			}
		}
	}
	for i := range s.Indexes {
		rv.Field(2 + len(s.Columns) + i).Addr().Interface().(interface{ Scan(any) error }).Scan(r.idx[i])
	}
	if w.cfg.Kind == Reindex {
		stale, err := w.staleIndexes(ctx, r)
		if err != nil {
			return nil, err
		}
		if !stale {
			return nil, nil
		}
	} else if !anyNeeded {
		return nil, nil
	}

	if err := w.cfg.Codec.Open(ctx, rec.Interface()); err != nil {
		return nil, fmt.Errorf("migrate: row %s: %w", r.id, err)
	}
	if err := w.cfg.Codec.Seal(ctx, rec.Interface()); err != nil {
		return nil, fmt.Errorf("migrate: row %s: %w", r.id, err)
	}
	ch := &change{row: r}
	for i, c := range s.Columns {
		if !needs[i] {
			continue
		}
		v, err := rv.Field(2 + i).Interface().(driver.Valuer).Value()
		if err != nil {
			return nil, fmt.Errorf("migrate: row %s column %s: %w", r.id, c.Name, err)
		}
		ch.cols, ch.olds, ch.news = append(ch.cols, c.target()), append(ch.olds, r.stored(c.target(), r.dst[i])), append(ch.news, v)
		if w.cfg.Kind == Encrypt {
			ch.legacy++
		}
		if w.cfg.Kind == Encrypt && c.Target != "" {
			// Also compare the source, as stored, without writing it: a
			// concurrent write there must not be encrypted from a stale
			// read.
			ch.cmpCols, ch.cmpOlds = append(ch.cmpCols, c.Name), append(ch.cmpOlds, r.stored(c.Name, r.src[i]))
		}
	}
	for i, ix := range s.Indexes {
		v, err := rv.Field(2 + len(s.Columns) + i).Interface().(driver.Valuer).Value()
		if err != nil {
			return nil, fmt.Errorf("migrate: row %s index %s: %w", r.id, ix.Column, err)
		}
		if sameValue(v, r.idx[i]) {
			continue
		}
		ch.cols, ch.olds, ch.news = append(ch.cols, ix.Column), append(ch.olds, r.stored(ix.Column, r.idx[i])), append(ch.news, v)
	}
	if len(ch.cols) == 0 {
		return nil, nil
	}
	return ch, nil
}

func sameValue(a, b any) bool {
	ab, aok := a.([]byte)
	bb, bok := b.([]byte)
	if aok && bok {
		return bytes.Equal(ab, bb)
	}
	if as, ok := a.(string); ok && bok {
		return as == string(bb)
	}
	return a == b
}

// olderKey reports whether the ciphertext of column i of r was made with an
// older data key version than its scope's active one.
func (w *worker) olderKey(ctx context.Context, i int, r *row) (bool, error) {
	c := w.cfg.Spec.Columns[i]
	info, err := envelope.Inspect(rawBytes(r.dst[i]))
	if err != nil || info.Form != envelope.CompactForm {
		return false, nil // malformed values are Verify's business
	}
	id := keys.DataKey(r.scope)
	if c.Deterministic {
		id = keys.ID{Scope: r.scope, Name: keys.DeterministicKeyName}
	}
	active, err := w.cfg.Keyring.ActiveVersion(ctx, id)
	if err != nil {
		return false, err
	}
	return info.KeyVersion < active, nil
}

func rawBytes(v any) []byte {
	switch x := v.(type) {
	case []byte:
		return x
	case string:
		return []byte(x)
	}
	return nil
}

// staleIndexes reports whether a row's blind indexes were computed with an
// older index key version than the active one, or are missing.
func (w *worker) staleIndexes(ctx context.Context, r *row) (bool, error) {
	s := &w.cfg.Spec
	for i, ix := range s.Indexes {
		var stored fields.BlindIndex
		if err := stored.Scan(r.idx[i]); err != nil {
			return true, nil
		}
		id, err := keys.IndexKeyID(r.scope, s.Table, ix.Column)
		if err != nil {
			return false, err
		}
		active, err := w.cfg.Keyring.ActiveVersion(ctx, id)
		if err != nil {
			return false, err
		}
		if stored.IsNull() || stored.Version() < active {
			return true, nil
		}
	}
	return false, nil
}

// pace sleeps as needed to keep this worker under RateLimit.
func (w *worker) pace(ctx context.Context) error {
	if w.cfg.RateLimit <= 0 {
		return nil
	}
	due := time.Duration(float64(w.report.Scanned) / w.cfg.RateLimit * float64(time.Second))
	if wait := due - time.Since(w.started); wait > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	return nil
}

func (w *worker) progress(ctx context.Context) {
	if w.cfg.Progress == nil {
		return
	}
	done := w.report.Scanned
	if !w.cfg.DryRun {
		w.cfg.DB.QueryRowContext(ctx, w.cfg.Dialect.Rebind("SELECT coalesce(sum(rows_seen), 0) FROM phicrypt_migration_parts WHERE job = ? AND done = 1"), w.cfg.Job).Scan(&done)
	}
	p := Progress{Job: w.cfg.Job, Done: done, Total: w.total, Written: w.report.Written}
	if el := time.Since(w.started).Seconds(); el > 0 {
		p.Rate = float64(w.report.Scanned) / el
	}
	if p.Rate > 0 && p.Total > p.Done {
		p.ETA = time.Duration(float64(p.Total-p.Done) / p.Rate * float64(time.Second))
	}
	w.cfg.Progress(p)
}
