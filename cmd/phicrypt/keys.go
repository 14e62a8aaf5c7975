package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/phicrypt/phicrypt/keys"
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

// auditor returns a slog auditor on stderr (JSON), the operator's trail of
// key operations. Key operations (rotate, rotate-kek, rewrap, shred) are
// also recorded in the key store's tamper-evident audit log when its
// database has one (see openKeyOp).
func (e *env) auditor() keys.Auditor {
	return &keys.SlogAuditor{Logger: slog.New(slog.NewJSONHandler(e.stderr, nil))}
}

func keysInit(ctx context.Context, e *env, args []string) error {
	fs := e.flags("keys init", "--kek URI --keys-dsn DSN [--create [--key-id ID]]", `  phicrypt keys init --kek local:///etc/phicrypt/kek.json --create --keys-dsn sqlite:/var/lib/ehr/keys.db
  phicrypt keys init --kek vault://vault:8200/transit/keys/phi --keys-dsn postgres://ehr@db/ehr --audit-log
`)
	c := e.commonFlags(fs)
	create := fs.Bool("create", false, "create the local KEK file the local:/// URI names (mode 0600); a passphrase comes from PHICRYPT_KEK_PASSPHRASE")
	keyID := fs.String("key-id", "", "the key id of a created KEK (default local:<random>)")
	auditLog := fs.Bool("audit-log", false, "also create the tamper-evident audit log in the key store's database: key operations of this tool are then recorded there")
	if err := parse(fs, args); err != nil {
		return err
	}
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
	}
	s, err := e.open(ctx, c, keys.Config{})
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
	fmt.Fprintf(e.stdout, "key store ready (schema version %d) in %s; KEK %s works\n", keys.SchemaVersion, redactDSN(c.keysDSN), wk.KeyID)
	if *auditLog {
		if _, err := keys.NewAuditLog(ctx, s.db, s.dialect, s.kek); err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		fmt.Fprintln(e.stdout, "audit log ready: key operations are recorded in it")
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
	fs := e.flags("keys rotate", "--scope SCOPE [--index TABLE.COLUMN]", `  phicrypt keys rotate --scope tenant:st-mary
  phicrypt keys rotate --scope tenant:st-mary --index patients.ssn_index
Then run "phicrypt migrate reencrypt" (or reindex) to move the data to the new version.
`)
	c := e.commonFlags(fs)
	scope := fs.String("scope", "", "the scope whose key to rotate")
	index := fs.String("index", "", "rotate the blind index key of TABLE.COLUMN instead of the data key")
	if err := parse(fs, args); err != nil {
		return err
	}
	id, err := keySetID(*scope, *index)
	if err != nil {
		return err
	}
	ctx = e.keyOpContext(ctx, "rotate")
	s, err := e.openKeyOp(ctx, c)
	if err != nil {
		return err
	}
	defer s.Close()
	v, err := s.keyring.Rotate(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s of %s: version %d is active\n", id.Name, id.Scope, v)
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

func keysRewrap(ctx context.Context, e *env, args []string) error {
	fs := e.flags("keys rewrap", "[--wrapped-before RFC3339] [--batch N]", `  phicrypt keys rewrap
  phicrypt keys rewrap --wrapped-before 2026-11-29T08:00:00Z   # resume an interrupted run
`)
	c := e.commonFlags(fs)
	before := fs.String("wrapped-before", "", "rewrap the keys last wrapped before this time (default: now); pass the time an interrupted run printed to resume it")
	batch := fs.Int("batch", 100, "keys per KMS batch")
	if err := parse(fs, args); err != nil {
		return err
	}
	opts := keys.RewrapOptions{BatchSize: *batch}
	if *before != "" {
		t, err := time.Parse(time.RFC3339Nano, *before)
		if err != nil {
			return usagef("--wrapped-before: %v", err)
		}
		opts.WrappedBefore = t
	}
	ctx = e.keyOpContext(ctx, "rewrap")
	s, err := e.openKeyOp(ctx, c)
	if err != nil {
		return err
	}
	defer s.Close()
	bar := e.bar(-1, "rewrapping", "keys")
	opts.Progress = func(r keys.RewrapReport) { bar.Set64(int64(r.Scanned)) }
	report, err := s.keyring.Rewrap(ctx, opts)
	bar.Finish()
	fmt.Fprintf(e.stdout, "rewrapped %d, skipped %d, failed %d of %d key versions\n", report.Rewrapped, report.Skipped, report.Failed, report.Scanned)
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
	s, err := e.open(ctx, c, keys.Config{})
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
	if len(out) == 0 && *scope != "" {
		return fmt.Errorf("scope %s has no keys: %w", *scope, keys.ErrKeyNotFound)
	}
	return tw.Flush()
}
