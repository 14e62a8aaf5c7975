package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/local"
)

func runKeys(ctx context.Context, e *env, args []string) error {
	subs := map[string]func(context.Context, *env, []string) error{
		"init":       keysInit,
		"rotate":     keysRotate,
		"rotate-kek": keysRotateKEK,
		"rewrap":     keysRewrap,
		"retire":     keysRetire,
		"shred":      keysShred,
		"status":     keysStatus,
	}
	if len(args) == 0 || subs[args[0]] == nil {
		fmt.Fprint(e.stderr, `Usage: phicrypt keys SUBCOMMAND [flags]

Subcommands:
  init        create the key store's tables and check the KEK (--create makes a local KEK file)
  rotate      make a new data key (or index key) version of a scope active
  rotate-kek  add a version to a local KEK file (other KMSs rotate on their side)
  rewrap      rewrap every stored key under the KEK's current version
  retire      retire old key versions of a scope once no row uses them (--destroy: destroy them)
  shred       destroy every key of a scope and erase its blind index values (crypto-shredding)
  status      list key sets, versions and states
`)
		return subcommandError(args)
	}
	return subs[args[0]](ctx, e, args[1:])
}

// subcommandError is what a command without a valid subcommand returns
// after printing its usage: nothing for an explicit request for help, a
// usage error otherwise.
func subcommandError(args []string) error {
	switch {
	case len(args) == 0:
		return usagef("a subcommand is needed")
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		return flag.ErrHelp
	}
	return usagef("unknown subcommand %q", args[0])
}

func keysInit(ctx context.Context, e *env, args []string) error {
	fs := e.flags("keys init", "--kek URI --keys-dsn DSN [--create [--key-id ID]]", `  phicrypt keys init --kek local:///etc/phicrypt/kek.json --create --keys-dsn sqlite:/var/lib/ehr/keys.db
  phicrypt keys init --kek vault://vault:8200/transit/keys/phi --keys-dsn postgres://ehr@db/ehr
`)
	c := e.commonFlags(fs)
	create := fs.Bool("create", false, "create the local KEK file the local:/// URI names (mode 0600); a passphrase comes from PHICRYPT_KEK_PASSPHRASE")
	keyID := fs.String("key-id", "", "the key id of a created KEK (default local:<random>)")
	auditLog := fs.Bool("audit-log", true, "also create the tamper-evident audit log in the key store's database, where this tool then records key operations (--audit-log=false leaves it out: key events then go to --audit-file, or one JSON line each on standard error)")
	if err := parse(fs, args); err != nil {
		return err
	}
	c.create = true // init is what creates the key store
	createdKEK := ""
	if *create {
		u, err := url.Parse(c.kek)
		if err != nil || u.Scheme != local.Scheme || u.Path == "" {
			return usagef("--create needs a local:///path/to/kek.json URI")
		}
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o700); err != nil {
			return err
		}
		opts := local.Options{KeyID: *keyID}
		if p := e.getenv(local.DefaultPassphraseEnv); p != "" {
			opts.Passphrase = []byte(p)
		}
		kek, err := local.Create(u.Path, opts)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "created KEK %s in %s\n", kek.KeyID(), u.Path)
		createdKEK = u.Path
	}
	s, err := e.open(ctx, c, openOptions{})
	if err != nil {
		return err
	}
	defer s.Close()
	// A round trip proves the KEK is usable with these credentials.
	probe := make([]byte, 32)
	rand.Read(probe)
	wk, err := s.kek.Wrap(ctx, probe, []byte("phicrypt keys init"))
	if err != nil {
		return fmt.Errorf("KEK check: %w", err)
	}
	if _, err := s.kek.Unwrap(ctx, wk, []byte("phicrypt keys init")); err != nil {
		return fmt.Errorf("KEK check: %w", err)
	}
	// And, on a key store that holds keys, that it is the store's KEK.
	if err := s.kekUnwrapsStore(ctx); err != nil {
		if createdKEK != "" {
			// Created by this run, which nothing used: a typo's KEK.
			os.Remove(createdKEK)
			fmt.Fprintf(e.stdout, "removed KEK %s\n", createdKEK)
		}
		if errors.Is(err, kms.ErrKeyNotFound) || errors.Is(err, kms.ErrUnwrapFailed) {
			return fmt.Errorf("KEK check: %s does not unwrap the keys this key store holds (another KEK, or a mistyped --kek?): %w", wk.KeyID, err)
		}
		return fmt.Errorf("key store check: %w", err)
	}
	fmt.Fprintf(e.stdout, "key store ready (schema version %d) in %s; KEK %s works\n", keys.SchemaVersion, redactDSN(c.keysDSN), wk.KeyID)
	if *auditLog {
		if _, err := keys.NewAuditLog(ctx, s.db, s.dialect, s.kek); err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		fmt.Fprintln(e.stdout, "audit log ready: key operations are recorded in it")
	}
	return nil
}

// kekUnwrapsStore fails if the key store already holds keys that the
// session's KEK does not unwrap: the metadata key, which the keyring
// unwraps to read the first key set of a scope of the caller's, and the
// chain key of the audit log, if there is one. Otherwise keys init with
// another KEK (a mistyped --kek) would report it working, and create the
// audit log's chain key under it: the store's own KEK could then not open
// the log, and every key command would refuse to run.
func (s *session) kekUnwrapsStore(ctx context.Context) error {
	const page = 100
	for after := (keys.ID{}); ; {
		sets, err := s.store.List(ctx, "", after, page)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(sets, func(ks *keys.KeySet) bool {
			return !strings.HasPrefix(ks.ID.Scope, keys.ReservedScopePrefix) && len(ks.Versions) > 0
		})
		if i >= 0 {
			if _, err := s.keyring.Status(ctx, sets[i].ID.Scope); err != nil {
				return err
			}
			break
		}
		if len(sets) < page {
			break
		}
		after = sets[len(sets)-1].ID
	}
	if _, err := keys.OpenAuditLog(ctx, s.db, s.dialect, s.kek); err != nil && !errors.Is(err, keys.ErrNoAuditLog) {
		return err
	}
	return nil
}

// keySetID reads a key set from --scope and optionally --index
// TABLE.COLUMN.
func keySetID(scope, index string) (keys.ID, error) {
	if scope == "" {
		return keys.ID{}, usagef("--scope is required")
	}
	if index == "" {
		return keys.DataKey(scope), nil
	}
	table, column, ok := strings.Cut(index, ".")
	if !ok {
		return keys.ID{}, usagef("--index wants TABLE.COLUMN")
	}
	id, err := keys.IndexKeyID(scope, table, column)
	if err != nil {
		return keys.ID{}, usagef("%v", err)
	}
	return id, nil
}

func keysRotate(ctx context.Context, e *env, args []string) error {
	fs := e.flags("keys rotate", "--scope SCOPE [--index TABLE.COLUMN | --parent | --all] [--create]", `  phicrypt keys rotate --scope tenant:st-mary
  phicrypt keys rotate --scope tenant:st-mary --index Patient.ssn_index
  phicrypt keys rotate --scope tenant:st-mary --parent  # the key its patients' keys are wrapped under
  phicrypt keys rotate --scope tenant:st-mary --all     # also its per-patient scopes
Then run "phicrypt migrate reencrypt" (or reindex) to move the data to the new version,
or, after --parent, "phicrypt keys rewrap" to rewrap the patients' keys under it.
A scope or index without keys is an error: keys are created by encryption, or with --create.
`)
	c := e.commonFlags(fs)
	c.createFlag(fs)
	scope := fs.String("scope", "", "the scope whose key to rotate")
	index := fs.String("index", "", "rotate the blind index key of TABLE.COLUMN instead of the data key")
	all := fs.Bool("all", false, "rotate every key of the scope and of the scopes under it (SCOPE/…, such as per-patient scopes): data, deterministic and index keys")
	parent := fs.Bool("parent", false, "rotate the scope's parent key, which wraps its children's keys (see keys rewrap)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *all && (*index != "" || c.create) {
		return usagef("--all rotates the keys that exist: it takes neither --index nor --create")
	}
	if *parent && (*index != "" || *all) {
		return usagef("--parent takes neither --index nor --all")
	}
	id, err := keySetID(*scope, *index)
	if err != nil {
		return err
	}
	if *parent {
		id = keys.ParentKey(*scope)
	}
	ctx = e.keyOpContext(ctx, "rotate")
	s, err := e.openKeyOp(ctx, c)
	if err != nil {
		return err
	}
	defer s.Close()
	if *all {
		return s.rotateAll(ctx, *scope)
	}
	if !c.create {
		if err := s.mustExist(ctx, id); err != nil {
			return err
		}
	}
	v, err := s.keyring.Rotate(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s of %s: version %d is active\n", id.Name, id.Scope, v)
	return nil
}

// mustExist fails with an error matching keys.ErrKeyNotFound if key set
// id does not exist, saying what the scope has instead: its index keys
// for a mistyped index, the scopes under it for a tenant whose patients
// have keys of their own. Reserved scopes are left to the keyring, which
// refuses them (keys.ErrReservedScope).
func (s *session) mustExist(ctx context.Context, id keys.ID) error {
	if strings.HasPrefix(id.Scope, keys.ReservedScopePrefix) {
		return nil
	}
	_, err := s.store.Get(ctx, id)
	if !errors.Is(err, keys.ErrKeyNotFound) {
		return err
	}
	ids, err := s.store.Under(ctx, id.Scope)
	if err != nil {
		return err
	}
	var own []string
	under := map[string]bool{}
	for _, x := range ids {
		if x.Scope == id.Scope {
			own = append(own, keyKind(x))
		} else {
			under[x.Scope] = true
		}
	}
	hint := " (pass --create to create it)"
	if len(own) > 0 {
		hint += fmt.Sprintf("; it has: %s", strings.Join(own, ", "))
	}
	if len(under) > 0 {
		hint += fmt.Sprintf("; %s under it (%s/…) %s keys: rotate them with --all", plural(len(under), "scope"), id.Scope, pluralVerb(len(under), "has", "have"))
	}
	return fmt.Errorf("scope %s has no %s%s: %w", id.Scope, keyKind(id), hint, keys.ErrKeyNotFound)
}

// scopeExists fails with an error matching keys.ErrKeyNotFound if neither
// scope nor any scope under it (scope/…, a tenant's patients) has keys:
// encrypting into a mistyped tenant would otherwise create its keys.
func (s *session) scopeExists(ctx context.Context, scope string) error {
	ids, err := s.store.Under(ctx, scope)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return fmt.Errorf("scope %s has no keys, and no scope under it has any (pass --create to encrypt into a new scope): %w", scope, keys.ErrKeyNotFound)
	}
	return nil
}

// rotateAll rotates every key set of scope and of the scopes under it,
// skipping the crypto-shredded ones, and says how many it rotated.
func (s *session) rotateAll(ctx context.Context, scope string) error {
	ids, err := s.store.Under(ctx, scope)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return fmt.Errorf("scope %s has no keys, and no scope under it has any: %w", scope, keys.ErrKeyNotFound)
	}
	bar := s.e.bar(int64(len(ids)), "rotating", "keys")
	rotated, shredded := 0, 0
	scopes := map[string]bool{}
	for _, id := range ids {
		_, err := s.keyring.Rotate(ctx, id)
		bar.Add(1)
		switch {
		case errors.Is(err, keys.ErrKeyDestroyed):
			shredded++
			continue
		case err != nil:
			bar.Finish()
			fmt.Fprintf(s.e.stdout, "rotated %s of %d under %s before an error\n", plural(rotated, "key set"), len(ids), scope)
			return err
		}
		rotated++
		scopes[id.Scope] = true
	}
	bar.Finish()
	if rotated == 0 {
		// Like keys rotate of one shredded key set: nothing was rotated,
		// which is no success.
		return fmt.Errorf("every key set of %s and of the scopes under it was shredded (%d): nothing to rotate: %w", scope, shredded, keys.ErrKeyDestroyed)
	}
	fmt.Fprintf(s.e.stdout, "rotated %s in %s under %s", plural(rotated, "key set"), plural(len(scopes), "scope"), scope)
	if shredded > 0 {
		fmt.Fprintf(s.e.stdout, "; skipped %s that %s shredded", plural(shredded, "key set"), pluralVerb(shredded, "was", "were"))
	}
	fmt.Fprintln(s.e.stdout)
	return nil
}

func keysRotateKEK(ctx context.Context, e *env, args []string) error {
	fs := e.flags("keys rotate-kek", "--kek local:///path [--keys-dsn DSN]", `  phicrypt keys rotate-kek --kek local:///etc/phicrypt/kek.json
Then run "phicrypt keys rewrap" to move the stored keys to the new version.
The rotation is recorded in the key store's audit log when --keys-dsn names one.
`)
	c := e.commonFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	u, err := url.Parse(c.kek)
	if err != nil || u.Scheme != local.Scheme || u.Path == "" {
		return usagef("rotate-kek works on local:///path key files; rotate other KEKs in their KMS, then run keys rewrap")
	}
	opts := local.Options{}
	if p := e.getenv(local.DefaultPassphraseEnv); p != "" {
		opts.Passphrase = []byte(p)
	}
	ctx = e.keyOpContext(ctx, "rotate-kek")
	if c.keysDSN != "" {
		// A key store that does not exist, or whose audit log cannot
		// record the rotation, fails before the KEK changes.
		if err := e.checkAuditable(ctx, c); err != nil {
			return err
		}
	}
	kek, err := local.Rotate(u.Path, opts)
	if err != nil {
		if aerr := e.recordKEKRotation(ctx, c, nil, "", 0, err); aerr != nil {
			return errors.Join(err, aerr)
		}
		return err
	}
	fmt.Fprintf(e.stdout, "KEK %s: version %d wraps from now on\n", kek.KeyID(), kek.Version())
	if err := e.recordKEKRotation(ctx, c, kek, kek.KeyID(), kek.Version(), nil); err != nil {
		return fmt.Errorf("the KEK was rotated, but not recorded: %w", err)
	}
	return nil
}

// checkAuditable fails if the key store of c does not exist, or if its
// audit sinks cannot be opened (a tampered audit log): what
// recordKEKRotation needs, checked before the KEK changes.
func (e *env) checkAuditable(ctx context.Context, c *common) error {
	s, err := e.openStore(ctx, c)
	if err != nil {
		return err
	}
	defer s.Close()
	sinks, err := e.sinks(ctx, s.db, s.dialect, s.kek)
	if err != nil {
		return err
	}
	if sinks.file != nil {
		sinks.file.Close()
	}
	return nil
}

func keysRewrap(ctx context.Context, e *env, args []string) error {
	fs := e.flags("keys rewrap", "[--wrapped-before RFC3339] [--batch N] [--to-parents]", `  phicrypt keys rewrap
  phicrypt keys rewrap --wrapped-before 2026-11-29T08:00:00Z   # resume an interrupted run
  phicrypt keys rewrap --to-parents   # move tenant:X/patient/Y keys under tenant:X's parent key
Keys wrapped under a parent key are not sent to the KMS; those wrapped under an older
version of their parent key (after keys rotate --parent) are rewrapped locally.
`)
	c := e.commonFlags(fs)
	before := fs.String("wrapped-before", "", "rewrap the keys last wrapped before this time (default: now); pass the time an interrupted run printed to resume it")
	batch := fs.Int("batch", 100, "keys per KMS batch")
	toParents := fs.Bool("to-parents", false, "migrate to the key hierarchy: rewrap the keys of each tenant:X/patient/Y still wrapped by the KEK under tenant:X's parent key (one KMS unwrap each, once)")
	if err := parse(fs, args); err != nil {
		return err
	}
	opts := keys.RewrapOptions{BatchSize: *batch, ToParents: *toParents}
	var tune []func(*keys.Config)
	if *toParents {
		tune = append(tune, func(cfg *keys.Config) { cfg.Parent = keys.TenantParent })
	}
	if *before != "" {
		t, err := time.Parse(time.RFC3339Nano, *before)
		if err != nil {
			return usagef("--wrapped-before: %v", err)
		}
		opts.WrappedBefore = t
	}
	ctx = e.keyOpContext(ctx, "rewrap")
	s, err := e.openKeyOp(ctx, c, tune...)
	if err != nil {
		return err
	}
	defer s.Close()
	bar := e.bar(-1, "rewrapping", "keys")
	opts.Progress = func(r keys.RewrapReport) { bar.Set64(int64(r.Scanned)) }
	report, err := s.keyring.Rewrap(ctx, opts)
	bar.Finish()
	fmt.Fprintf(e.stdout, "rewrapped %d, skipped %d, failed %d of %d key versions\n", report.Rewrapped, report.Skipped, report.Failed, report.Scanned)
	if report.Local+report.Migrated > 0 {
		fmt.Fprintf(e.stdout, "rewrapped %d locally under their parent key's new version, moved %d under their parent key\n", report.Local, report.Migrated)
	}
	if err != nil {
		fmt.Fprintf(e.stdout, "interrupted: resume with --wrapped-before %s\n", report.Started.UTC().Format(time.RFC3339Nano))
		return err
	}
	if report.Failed > 0 {
		return fmt.Errorf("%d key versions failed to unwrap (see the audit events)", report.Failed)
	}
	return nil
}

func keysStatus(ctx context.Context, e *env, args []string) error {
	fs := e.flags("keys status", "[--scope SCOPE] [--json]", `  phicrypt keys status
  phicrypt keys status --scope tenant:st-mary --json
`)
	c := e.commonFlags(fs)
	scope := fs.String("scope", "", "one scope only")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	s, err := e.open(ctx, c, openOptions{})
	if err != nil {
		return err
	}
	defer s.Close()
	sets, err := s.keyring.Status(ctx, *scope)
	if err != nil {
		return err
	}
	type version struct {
		Version  uint32 `json:"version"`
		State    string `json:"state"`
		KEK      string `json:"kek,omitempty"`
		Created  string `json:"created"`
		Reserved uint64 `json:"reserved_messages"`
	}
	type set struct {
		Scope             string    `json:"scope"`
		Key               string    `json:"key"`
		MinDecryptVersion uint32    `json:"min_decrypt_version,omitempty"`
		Versions          []version `json:"versions"`
	}
	if len(sets) == 0 && *scope != "" {
		// Before any output, --json included: a mistyped scope is an
		// error, never an empty list.
		return fmt.Errorf("scope %s has no keys: %w", *scope, keys.ErrKeyNotFound)
	}
	var out []set
	for _, ks := range sets {
		st := set{Scope: ks.ID.Scope, Key: ks.ID.Name, MinDecryptVersion: ks.MinDecryptVersion}
		for _, r := range ks.Versions {
			st.Versions = append(st.Versions, version{r.Version, r.State.String(), r.Wrapped.KeyID, r.Created.Format(time.RFC3339), r.Reserved})
		}
		out = append(out, st)
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE\tKEY\tVERSION\tSTATE\tKEK\tCREATED")
	for _, st := range out {
		for _, v := range st.Versions {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", st.Scope, st.Key, v.Version, v.State, v.KEK, v.Created)
		}
	}
	return tw.Flush()
}
