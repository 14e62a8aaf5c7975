package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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
  phicrypt keys shred --scope tenant:st-mary --yes   # the tenant and every patient of it
First the blind index values of the scope's rows in the --spec tables are set to NULL
(they would otherwise still match under a tenant-wide index key), then every key of the
scope is destroyed and its wrapped copies erased from the store (on SQLite, from the
write-ahead log and free space too), then the tables are swept once more. Its data
becomes unreadable. Interrupted or failed, it can be run again. Backups of the key store
still hold the keys (see docs/SHREDDING.md).
The scopes under SCOPE (SCOPE/…, such as a tenant's per-patient scopes) are shredded
with it, each the same way, after SCOPE itself: shredding a tenant shreds its patients,
whether their keys are wrapped under the tenant's parent key or by the KEK, and the
output says how many scopes and key sets that was.
`)
	c := e.commonFlags(fs)
	scope := fs.String("scope", "", "the scope to destroy, with the scopes under it (SCOPE/…)")
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
	// The keyring knows the key hierarchy, as keys rewrap --to-parents
	// does: a tenant's patients are its children, even those whose keys
	// the KEK still wraps.
	s, err := e.openKeyOp(ctx, c, func(cfg *keys.Config) { cfg.Parent = keys.TenantParent })
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
	// The scope first, then each scope under it. A scope without keys,
	// and without scopes under it that have some, is refused before
	// anything is erased: a typo must not erase a real patient's indexes
	// while destroying nothing.
	ids, err := s.store.Under(ctx, *scope)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return fmt.Errorf("scope %s has no keys, and no scope under it has any: %w", *scope, keys.ErrKeyNotFound)
	}
	scopes := []string{*scope}
	underSets := 0
	for _, id := range ids {
		if id.Scope == *scope {
			continue
		}
		underSets++
		if scopes[len(scopes)-1] != id.Scope { // Under sorts by scope
			scopes = append(scopes, id.Scope)
		}
	}
	var opts keys.ShredOptions
	for _, sp := range specs {
		opts.Erasers = append(opts.Erasers, &migrate.Eraser{DB: db, Dialect: dialect, Spec: sp})
	}

	var purgeErr error
	bar := e.bar(int64(len(scopes)), "shredding", "scopes")
	summary := shredSummary{scope: *scope, scopes: len(scopes), underSets: underSets, tables: len(specs)}
	for i, sc := range scopes {
		report, err := s.keyring.Shred(ctx, sc, opts)
		bar.Add(1)
		summary.versions += report.Versions
		summary.rows += report.IndexRowsErased
		if i == 0 {
			summary.sets = report.KeySets
		}
		// Each Shred purges the whole store: only the last one's purge
		// says whether copies of destroyed keys remain.
		purgeErr = nil
		if errors.Is(err, keys.ErrPurgeIncomplete) {
			purgeErr, err = err, nil
		}
		if errors.Is(err, keys.ErrReservedScope) {
			bar.Finish()
			return err // refused, and audited: nothing to run again
		}
		if err != nil {
			bar.Finish()
			summary.print(e.stdout)
			fmt.Fprint(e.stderr, shredNote)
			return fmt.Errorf("shredding %s: %w; the shred is incomplete: run it again", sc, err)
		}
		summary.shredded++
	}
	bar.Finish()
	summary.print(e.stdout)
	fmt.Fprint(e.stderr, shredNote)
	if purgeErr != nil {
		return fmt.Errorf("%w; run keys shred again when no other connection holds a long read transaction", purgeErr)
	}
	return nil
}

// shredSummary is what keys shred did to scope and the scopes under it.
type shredSummary struct {
	scope string
	// scopes counts scope and the scopes under it, shredded those
	// shredded without error; underSets counts the key sets of the
	// scopes under scope.
	scopes, shredded, underSets int
	// versions counts the key versions destroyed, sets the key sets of
	// scope, rows the index rows erased in tables --spec tables.
	versions, sets, tables int
	rows                   int64
}

// print writes the summary: the key versions and sets destroyed, how many
// scopes under scope were shredded, and the index rows erased.
func (s *shredSummary) print(w io.Writer) {
	under := s.scopes - 1
	switch {
	case s.shredded < s.scopes:
		fmt.Fprintf(w, "destroyed %d key versions before an error: shredded %d of %d scopes (%s and the scopes under it)\n",
			s.versions, s.shredded, s.scopes, s.scope)
	case under > 0:
		fmt.Fprintf(w, "destroyed %d key versions in %d key sets of %s and %d key sets of %s under it (%s/…, such as its patients)\n",
			s.versions, s.sets, s.scope, s.underSets, plural(under, "scope"), s.scope)
	case s.versions > 0 || s.sets > 0:
		fmt.Fprintf(w, "destroyed %d key versions in %d key sets of %s\n", s.versions, s.sets, s.scope)
	}
	if s.tables > 0 {
		fmt.Fprintf(w, "erased the blind index values of %d rows in %d tables\n", s.rows, s.tables)
	}
}
