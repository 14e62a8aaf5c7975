package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/migrate"
)

const migrateUsage = `Usage: phicrypt migrate SUBCOMMAND [flags]

Subcommands:
  encrypt    encrypt a table's legacy plaintext columns and compute its blind indexes
  reencrypt  re-encrypt values under the active data key versions, after "keys rotate"
  reindex    recompute blind indexes with the active index key versions
  verify     count plaintext values and ciphertexts per key version (exit 3 if work is left)
  status     show a job's progress

The table is described by a spec file generated from the application's type,
  --spec patients.json
which a program in the application's module writes (see "go doc migrate.SpecFor"):
  spec, err := migrate.SpecFor(&Patient{})      // from the phi struct tags
  out, err := json.MarshalIndent(spec, "", "  ") // then: go run ./tools/phispec > patients.json
or by flags that must match the application's struct tags:
  --table patients --id id --scope-column tenant_id (or --scope tenant:st-mary)
  --column NAME:TYPE[:TARGET][:deterministic]   TYPE is string, bytes, int, float, bool or time;
                                                TARGET is a new column for the ciphertext
  --index COLUMN=SRC[+SRC...]:NORMALIZERS:BITS[:text]
Either way, the table must have the spec's columns, in text or binary SQL types
where ciphertexts and index values go, or the job stops before any work.

The key store must exist (phicrypt keys init), and so must the keys of every
scope met, unless --create is given: a first "migrate encrypt" creates the
keys of the scopes it encrypts with --create; later runs without it stop at
a scope that has no keys (a typo, or a row of a tenant never encrypted).
Without --keys-dsn, the key store is the one in the --dsn database, which
must exist: --create creates a key store only where --keys-dsn names it.

Examples:
  phicrypt keys rotate --scope tenant:st-mary
  phicrypt migrate reencrypt --spec patients.json --dsn postgres://ehr@db/ehr --kek vault://vault:8200/transit/keys/phi

  phicrypt migrate encrypt --create --dsn postgres://ehr@db/ehr --keys-dsn postgres://ehr@db/ehr \
    --kek vault://vault:8200/transit/keys/phi \
    --table patients --id id --scope-column tenant_id \
    --column ssn:string --column last_name:string --column birth_date:time \
    --index ssn_index=ssn:digits:16 --index name_dob=last_name+birth_date:trim+fold+nfc:16 \
    --workers 4
`

func runMigrate(ctx context.Context, e *env, args []string) error {
	kinds := map[string]migrate.Kind{"encrypt": migrate.Encrypt, "reencrypt": migrate.Reencrypt, "reindex": migrate.Reindex}
	if len(args) > 0 {
		if kind, ok := kinds[args[0]]; ok {
			return migrateRun(ctx, e, kind, args[1:])
		}
		switch args[0] {
		case "verify":
			return migrateVerify(ctx, e, args[1:])
		case "status":
			return migrateStatus(ctx, e, args[1:])
		}
	}
	fmt.Fprint(e.stderr, migrateUsage)
	return subcommandError(args)
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// tableFlags registers the flags describing a table.
type tableFlags struct {
	dsn, specFile, table, id, scopeColumn, scope string
	columns, indexes                             listFlag
	stdin                                        io.Reader
}

func (e *env) tableFlags(fs *flag.FlagSet) *tableFlags {
	t := &tableFlags{stdin: e.stdin}
	fs.StringVar(&t.dsn, "dsn", e.getenv("PHICRYPT_DSN"), "the table's database (env PHICRYPT_DSN): postgres://… or sqlite:path")
	fs.StringVar(&t.specFile, "spec", "", "a JSON spec of the table (json.Marshal of migrate.SpecFor(&Type{})), - for standard input; instead of the flags below")
	fs.StringVar(&t.table, "table", "", "the table")
	fs.StringVar(&t.id, "id", "", `the primary key column (the record id bound to every value; default "id")`)
	fs.StringVar(&t.scopeColumn, "scope-column", "", "the column holding each row's scope")
	fs.StringVar(&t.scope, "scope", "", "the scope of every row, instead of --scope-column")
	fs.Var(&t.columns, "column", "an encrypted column NAME:TYPE[:TARGET][:deterministic] (repeat)")
	fs.Var(&t.indexes, "index", "a blind index COLUMN=SRC[+SRC]:NORMALIZERS:BITS[:text] (repeat)")
	return t
}

// spec builds the migration spec from the spec file or the flags.
func (t *tableFlags) spec() (migrate.Spec, error) {
	if t.specFile != "" {
		return t.readSpec()
	}
	if t.id == "" {
		t.id = "id"
	}
	s := migrate.Spec{Table: t.table, ID: t.id, ScopeColumn: t.scopeColumn, Scope: t.scope}
	for _, c := range t.columns {
		parts := strings.Split(c, ":")
		if len(parts) < 2 || len(parts) > 4 {
			return s, usagef("--column %q: want NAME:TYPE[:TARGET][:deterministic]", c)
		}
		col := migrate.Column{Name: parts[0], Type: parts[1]}
		for _, p := range parts[2:] {
			if p == "deterministic" {
				col.Deterministic = true
			} else {
				col.Target = p
			}
		}
		s.Columns = append(s.Columns, col)
	}
	for _, ix := range t.indexes {
		column, def, ok := strings.Cut(ix, "=")
		parts := strings.Split(def, ":")
		if !ok || len(parts) < 3 || len(parts) > 4 || (len(parts) == 4 && parts[3] != "text") {
			return s, usagef("--index %q: want COLUMN=SRC[+SRC]:NORMALIZERS:BITS[:text]", ix)
		}
		bits, err := strconv.Atoi(parts[2])
		if err != nil {
			return s, usagef("--index %q: bits: %v", ix, err)
		}
		s.Indexes = append(s.Indexes, migrate.Index{Column: column, Of: strings.Split(parts[0], "+"), Normalize: parts[1], Bits: bits, Text: len(parts) == 4})
	}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("%w: %v", errUsage, err)
	}
	return s, nil
}

func migrateRun(ctx context.Context, e *env, kind migrate.Kind, args []string) error {
	fs := e.flags("migrate "+string(kind), "--dsn DSN --table T --column … [--create] [flags]", "")
	c := e.commonFlags(fs)
	c.createFlag(fs)
	t := e.tableFlags(fs)
	job := fs.String("job", "", "the job's name, shared by the workers of one job (default KIND:TABLE)")
	workers := fs.Int("workers", 1, "workers in this process (other processes may join the same job)")
	partition := fs.Int("partition", migrate.DefaultPartitionRows, "rows per partition (one transaction)")
	batch := fs.Int("batch", migrate.DefaultBatchRows, "rows per statement")
	rate := fs.Float64("rate", 0, "rows per second per worker, at most (0: no limit)")
	binary := fs.Bool("binary", false, "write binary ciphertexts (bytea/BLOB columns) instead of text armor")
	dryRun := fs.Bool("dry-run", false, "count the rows the job would change, write no row (new scopes still need --create, which creates their keys)")
	if err := parse(fs, args); err != nil {
		return err
	}
	spec, err := t.spec()
	if err != nil {
		return err
	}
	if *workers < 1 {
		return usagef("--workers must be at least 1")
	}
	db, dialect, err := openDB(t.dsn, false)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := spec.CheckTable(ctx, db, dialect); err != nil {
		return err
	}
	if c.keysDSN == "" {
		c.keysDSN, c.impliedStore = t.dsn, true
	}
	s, err := e.open(ctx, c, openOptions{audit: true})
	if err != nil {
		return err
	}
	defer s.Close()
	if spec.Scope != "" && !c.create {
		if err := s.mustExist(ctx, keys.DataKey(spec.Scope)); err != nil {
			return err
		}
	}
	codec, err := s.codec(*binary)
	if err != nil {
		return err
	}
	cfg := migrate.Config{DB: db, Dialect: dialect, Codec: codec, Keyring: s.keyring, Job: *job, Kind: kind, Spec: spec,
		PartitionRows: *partition, BatchRows: *batch, RateLimit: *rate, DryRun: *dryRun}
	bar := e.bar(-1, string(kind)+" "+spec.Table, "rows")
	var mu sync.Mutex
	cfg.Progress = func(p migrate.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if bar.GetMax64() != p.Total && p.Total > 0 {
			bar.ChangeMax64(p.Total)
		}
		bar.Set64(p.Done)
	}
	start := time.Now()
	reports := make([]migrate.Report, *workers)
	errs := make([]error, *workers)
	var wg sync.WaitGroup
	for i := range reports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wc := cfg
			if *workers > 1 {
				wc.Worker = fmt.Sprintf("%s#%d", migrate.DefaultWorker(), i)
			}
			reports[i], errs[i] = migrate.Run(ctx, wc)
		}()
		if *dryRun {
			wg.Wait()
			break
		}
	}
	wg.Wait()
	bar.Finish()
	var total migrate.Report
	for _, r := range reports {
		total.Partitions += r.Partitions
		total.Scanned += r.Scanned
		total.Written += r.Written
		total.Conflicts += r.Conflicts
		total.Gone += r.Gone
		total.Legacy += r.Legacy
	}
	verb := "changed"
	if *dryRun {
		verb = "would change"
	}
	el := time.Since(start)
	changed := fmt.Sprintf("%s %d", verb, total.Written)
	if total.Legacy > 0 {
		changed += fmt.Sprintf(" (%s)", plural(total.Legacy, "legacy plaintext value"))
	}
	fmt.Fprintf(e.stdout, "%s %s: scanned %s, %s, %d left by concurrent writes, %d deleted meanwhile, in %s (%.0f rows/s)\n",
		kind, spec.Table, plural(total.Scanned, "row"), changed, total.Conflicts, total.Gone, el.Round(time.Millisecond), float64(total.Scanned)/el.Seconds())
	for _, err := range errs {
		if errors.Is(err, migrate.ErrCheckpointIncomplete) {
			return fmt.Errorf("%w; run the job again when no other connection holds a long read transaction", err)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func migrateVerify(ctx context.Context, e *env, args []string) error {
	fs := e.flags("migrate verify", "--dsn DSN --table T --column … [--decrypt]", "")
	c := e.commonFlags(fs)
	t := e.tableFlags(fs)
	decrypt := fs.Bool("decrypt", false, "also decrypt every row (needs the KEK and the key store)")
	if err := parse(fs, args); err != nil {
		return err
	}
	spec, err := t.spec()
	if err != nil {
		return err
	}
	db, dialect, err := openDB(t.dsn, false)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := spec.CheckTable(ctx, db, dialect); err != nil {
		return err
	}
	vc := migrate.VerifyConfig{DB: db, Dialect: dialect, Spec: spec}
	if *decrypt {
		if c.keysDSN == "" {
			c.keysDSN, c.impliedStore = t.dsn, true
		}
		s, err := e.open(ctx, c, openOptions{audit: true})
		if err != nil {
			return err
		}
		defer s.Close()
		if spec.Scope != "" {
			if err := s.mustExist(ctx, keys.DataKey(spec.Scope)); err != nil {
				return err
			}
		}
		if vc.Codec, err = s.codec(false); err != nil {
			return err
		}
	}
	report, err := migrate.Verify(ctx, vc)
	if err != nil {
		return err
	}
	fmt.Fprint(e.stdout, report.String())
	if !report.Complete() {
		fmt.Fprintln(e.stdout, "incomplete: plaintext or undecryptable values are left")
		return errIncomplete
	}
	fmt.Fprintln(e.stdout, "complete: every value is encrypted")
	refs := report.Referenced()
	for _, c := range report.Columns {
		if vs := refs[c.Column]; len(vs) > 0 {
			fmt.Fprintf(e.stdout, "column %s uses data key versions %v\n", c.Column, vs)
		}
	}
	return nil
}

func migrateStatus(ctx context.Context, e *env, args []string) error {
	fs := e.flags("migrate status", "--dsn DSN --job NAME", "")
	dsn := fs.String("dsn", e.getenv("PHICRYPT_DSN"), "the table's database (env PHICRYPT_DSN)")
	job := fs.String("job", "", "the job (e.g. encrypt:patients)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *job == "" {
		return usagef("--job is required")
	}
	db, dialect, err := openDB(*dsn, false)
	if err != nil {
		return err
	}
	defer db.Close()
	st, err := migrate.Status(ctx, db, dialect, *job)
	if err != nil {
		return err
	}
	state := "running"
	if !st.Finished.IsZero() {
		state = "complete at " + st.Finished.Format(time.RFC3339)
	}
	fmt.Fprintf(e.stdout, "job %s (%s): %s\npartitions %d/%d, rows %d of %d done, %d written\nworkers: %s\n",
		st.Job, st.Kind, state, st.PartitionsDone, st.Partitions, st.RowsDone, st.Total, st.RowsWritten, strings.Join(st.Workers, ", "))
	return nil
}

// readSpec reads the --spec file, which replaces the flags describing the
// table: giving both is a usage error, as is a spec that ReadSpec refuses.
func (t *tableFlags) readSpec() (migrate.Spec, error) {
	if t.table != "" || t.id != "" || t.scopeColumn != "" || t.scope != "" || len(t.columns) > 0 || len(t.indexes) > 0 {
		return migrate.Spec{}, usagef("--spec describes the table: give no --table, --id, --scope-column, --scope, --column or --index with it")
	}
	r := t.stdin
	if t.specFile != "-" {
		f, err := os.Open(t.specFile)
		if err != nil {
			return migrate.Spec{}, usagef("--spec: %v", err)
		}
		defer f.Close()
		r = f
	}
	s, err := migrate.ReadSpec(r)
	if errors.Is(err, migrate.ErrSpec) {
		return s, fmt.Errorf("%w: --spec %s: %w", errUsage, t.specFile, err)
	}
	return s, err
}
