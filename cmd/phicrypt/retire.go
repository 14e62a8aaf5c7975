package main

import (
	"context"
	"fmt"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/migrate"
)

func keysRetire(ctx context.Context, e *env, args []string) error {
	fs := e.flags("keys retire", "--scope SCOPE [--index TABLE.COLUMN] --below V --dsn DSN --spec FILE… [--destroy]", `  phicrypt keys retire --scope tenant:st-mary --below 3 --dsn postgres://ehr@db/ehr --spec patients.json
  phicrypt keys retire --scope tenant:st-mary --index patients.ssn_index --below 2 --spec patients.json --destroy
The versions below V stop decrypting (the key set's minimum decryption version), and with
--destroy are destroyed, only once the --spec tables prove that no row of the scope still uses
them (as "migrate verify" counts them); otherwise nothing changes and the command names the
oldest version in use and its row count. List every table whose values use the key.
`)
	c := e.commonFlags(fs)
	scope := fs.String("scope", "", "the scope of the key set")
	index := fs.String("index", "", "retire versions of the blind index key of TABLE.COLUMN instead of the data key")
	deterministic := fs.Bool("deterministic", false, "retire versions of the deterministic data key instead")
	below := fs.Uint("below", 0, "retire the versions below this one")
	destroy := fs.Bool("destroy", false, "also destroy the retired versions (their key material is erased)")
	cacheAge := fs.Duration("cache-max-age", keys.DefaultCacheMaxAge, "the applications' keys.Config.CacheMaxAge: a version active less than this long ago is not retired, since replicas may still encrypt under it")
	t := e.specFlags(fs, "whose rows must no longer use the versions")
	if err := parse(fs, args); err != nil {
		return err
	}
	id, err := keySetID(*scope, *index)
	if err != nil {
		return err
	}
	if *deterministic {
		if *index != "" {
			return usagef("--deterministic and --index name different keys: give one")
		}
		id.Name = keys.DeterministicKeyName
	}
	if *below < 2 || *below > 1<<32-1 {
		return usagef("--below must be a version from 2 (nothing is older than version 1)")
	}
	specs, err := t.specs()
	if err != nil {
		return err
	}
	if len(specs) == 0 {
		return usagef("--spec is required: retirement needs proof that no row uses the versions")
	}
	ctx = e.keyOpContext(ctx, "retire")
	if *cacheAge <= 0 {
		return usagef("--cache-max-age must be positive")
	}
	s, err := e.openKeyOp(ctx, c, func(cfg *keys.Config) { cfg.CacheMaxAge = *cacheAge })
	if err != nil {
		return err
	}
	defer s.Close()
	db, dialect, err := t.open(specs)
	if err != nil {
		return err
	}
	defer db.Close()
	check := &migrate.Usage{DB: db, Dialect: dialect, Specs: specs}
	v := uint32(*below)
	if err := s.keyring.Retire(ctx, id, v, check); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s of %s: versions below %d retired (no row of the %d tables uses them)\n", id.Name, id.Scope, v, len(specs))
	if !*destroy {
		return nil
	}
	sets, err := s.keyring.Status(ctx, id.Scope)
	if err != nil {
		return err
	}
	n := 0
	for _, ks := range sets {
		if ks.ID != id {
			continue
		}
		for _, r := range ks.Versions {
			if r.Version >= v || r.State == keys.Destroyed {
				continue
			}
			if err := s.keyring.DestroyVersion(ctx, id, r.Version, check); err != nil {
				return fmt.Errorf("destroyed %d versions, then: %w", n, err)
			}
			n++
		}
	}
	fmt.Fprintf(e.stdout, "%s of %s: destroyed %d versions below %d\n", id.Name, id.Scope, n, v)
	return nil
}
