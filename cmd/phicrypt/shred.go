package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/migrate"
)

// specFlags reads the tables a key command works on: --dsn and --spec
// FILE (repeatable), each a migrate.Spec as JSON (the fields of
// migrate.Spec, e.g. {"Table": "patients", "ID": "id", "ScopeColumn":
// "patient_scope", "Columns": [...], "Indexes": [...]}).
type specFlags struct {
	dsn   string
	files listFlag
}

func (e *env) specFlags(fs *flag.FlagSet, what string) *specFlags {
	t := &specFlags{}
	fs.StringVar(&t.dsn, "dsn", e.getenv("PHICRYPT_DSN"), "the database of the --spec tables (env PHICRYPT_DSN): postgres://… or sqlite:path")
	fs.Var(&t.files, "spec", "a JSON file describing a table (a migrate.Spec: Table, ID, ScopeColumn or Scope, Columns, Indexes) "+what+" (repeat)")
	return t
}

// specs reads the spec files.
func (t *specFlags) specs() ([]migrate.Spec, error) {
	var out []migrate.Spec
	for _, f := range t.files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var s migrate.Spec
		if err := json.Unmarshal(data, &s); err != nil {
			return nil, usagef("--spec %s: %v", f, err)
		}
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("%w: --spec %s: %v", errUsage, f, err)
		}
		out = append(out, s)
	}
	if len(out) > 0 && t.dsn == "" {
		return nil, usagef("--spec needs the tables' database: give --dsn or PHICRYPT_DSN")
	}
	return out, nil
}

// open opens the tables' database, or returns nil without specs.
func (t *specFlags) open(specs []migrate.Spec) (*sql.DB, keys.Dialect, error) {
	if len(specs) == 0 {
		return nil, 0, nil
	}
	return openDB(t.dsn, false)
}

// shredNote is what keys shred cannot erase, said every time.
const shredNote = `note: blind index values outside the --spec tables are not erased: NDJSON files written with
"phicrypt encrypt --index" keep them (under the tenant's index key they still confirm a guessed
SSN or MRN of this patient): delete or re-export those files. See docs/SHREDDING.md.
`

func keysShred(ctx context.Context, e *env, args []string) error {
	fs := e.flags("keys shred", "--scope SCOPE --yes [--dsn DSN --spec FILE…]", `  phicrypt keys shred --scope tenant:st-mary/patient/7c747494 --yes \
      --dsn postgres://ehr@db/ehr --spec patients.json --spec notes.json
First the blind index values of the scope's rows in the --spec tables are set to NULL
(they would otherwise still match under a tenant-wide index key), then every key of the
scope is destroyed and its wrapped copies erased from the store (on SQLite, from the
write-ahead log and free space too), then the tables are swept once more. Its data
becomes unreadable. Interrupted or failed, it can be run again. Backups of the key store
still hold the keys (see docs/SHREDDING.md).
`)
	c := e.commonFlags(fs)
	scope := fs.String("scope", "", "the scope to destroy")
	yes := fs.Bool("yes", false, "confirm: this cannot be undone")
	t := e.specFlags(fs, "whose blind index values of the scope to erase")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *scope == "" {
		return usagef("--scope is required")
	}
	if !*yes {
		return usagef("shredding cannot be undone: add --yes")
	}
	specs, err := t.specs()
	if err != nil {
		return err
	}
	ctx = e.keyOpContext(ctx, "shred")
	s, err := e.openKeyOp(ctx, c)
	if err != nil {
		return err
	}
	defer s.Close()
	db, dialect, err := t.open(specs)
	if err != nil {
		return err
	}
	if db != nil {
		defer db.Close()
	}
	// A scope without keys is refused before anything is erased: a typo
	// must not erase a real patient's indexes while destroying nothing.
	sets, err := s.keyring.Status(ctx, *scope)
	if err != nil {
		return err
	}
	if len(sets) == 0 {
		return fmt.Errorf("scope %s has no keys: %w", *scope, keys.ErrKeyNotFound)
	}
	var opts keys.ShredOptions
	for _, sp := range specs {
		opts.Erasers = append(opts.Erasers, &migrate.Eraser{DB: db, Dialect: dialect, Spec: sp})
	}
	report, err := s.keyring.Shred(ctx, *scope, opts)
	if report.Versions > 0 || report.KeySets > 0 {
		fmt.Fprintf(e.stdout, "destroyed %d key versions in %d key sets of %s\n", report.Versions, report.KeySets, *scope)
	}
	if report.ChildKeySets > 0 {
		fmt.Fprintf(e.stdout, "its parent key destroyed, and with it the %d key sets of its children (such as its patients)\n", report.ChildKeySets)
	}
	if len(specs) > 0 {
		fmt.Fprintf(e.stdout, "erased the blind index values of %d rows in %d tables\n", report.IndexRowsErased, len(specs))
	}
	fmt.Fprint(e.stderr, shredNote)
	if err != nil {
		if errors.Is(err, keys.ErrPurgeIncomplete) {
			return fmt.Errorf("%w; run keys shred again when no other connection holds a long read transaction", err)
		}
		return fmt.Errorf("%w; the shred is incomplete: run it again", err)
	}
	return nil
}
