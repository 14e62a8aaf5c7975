package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
	_ "modernc.org/sqlite"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmsopen"
)

// common holds the settings most commands share.
type common struct {
	kek, keysDSN string
	// create lets the command create what it needs: the key store, and
	// key sets. Only commands with a --create flag set it (keys init
	// always creates the store).
	create bool
	// guardKeys makes the keyring refuse to create key sets unless
	// create: set by the commands with a --create flag. Commands without
	// one (encrypt, decrypt) create the keys of the scopes they encrypt,
	// in a key store that must exist.
	guardKeys bool
	// impliedStore says that keysDSN was not given but defaults to the
	// tables' database (the migrate commands): the key store there must
	// exist, even with create, which then creates key sets only.
	impliedStore bool
}

// flags returns a flag set for cmd that prints its usage to e.stderr.
func (e *env) flags(cmd, synopsis, examples string) *flag.FlagSet {
	fs := flag.NewFlagSet("phicrypt "+cmd, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: phicrypt %s %s\n\nFlags:\n", cmd, synopsis)
		fs.PrintDefaults()
		if examples != "" {
			fmt.Fprintf(e.stderr, "\nExamples:\n%s", examples)
		}
	}
	return fs
}

// commonFlags registers --kek and --keys-dsn (storeFlags), --audit-file
// and --quiet, defaulting to the environment.
func (e *env) commonFlags(fs *flag.FlagSet) *common {
	c := e.storeFlags(fs)
	fs.StringVar(&e.auditFile, "audit-file", e.getenv("PHICRYPT_AUDIT_FILE"), "append key events to this file as JSON lines (env PHICRYPT_AUDIT_FILE; - for standard error)")
	fs.BoolVar(&e.quiet, "quiet", false, "no progress bar and no summaries on standard error (errors and audit events still go there)")
	return c
}

// storeFlags registers --kek and --keys-dsn, defaulting to the
// environment.
func (e *env) storeFlags(fs *flag.FlagSet) *common {
	c := &common{}
	fs.StringVar(&c.kek, "kek", e.getenv("PHICRYPT_KEK"), "the KEK's URI (env PHICRYPT_KEK), e.g. local:///etc/phicrypt/kek.json")
	fs.StringVar(&c.keysDSN, "keys-dsn", e.getenv("PHICRYPT_KEYS_DSN"), "the key store's database (env PHICRYPT_KEYS_DSN): postgres://… or sqlite:path")
	return c
}

// createFlag registers --create on a command that otherwise refuses a key
// store, scope or index that does not exist.
func (c *common) createFlag(fs *flag.FlagSet) {
	c.guardKeys = true
	fs.BoolVar(&c.create, "create", false, "create the key store, scope or index keys if they do not exist (without it, a name that does not exist is an error: a typo never creates keys)")
}

// parse parses args and turns flag errors into usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return nil
}

// noDatabaseError means a SQLite database file does not exist. It
// matches os.ErrNotExist.
type noDatabaseError struct{ path string }

func (e *noDatabaseError) Error() string        { return "no such database file: " + e.path }
func (e *noDatabaseError) Is(target error) bool { return target == os.ErrNotExist }

// openDB opens a DSN: a PostgreSQL URL, or a SQLite file. A SQLite file
// that does not exist is refused (a *noDatabaseError, matching
// os.ErrNotExist) unless create: SQLite would otherwise create an empty
// database for a mistyped path.
func openDB(dsn string, create bool) (*sql.DB, keys.Dialect, error) {
	switch {
	case dsn == "":
		return nil, 0, usagef("no database: give a DSN")
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		db, err := sql.Open("pgx", dsn)
		return db, keys.Postgres, err
	case strings.HasPrefix(dsn, "sqlite:"), strings.HasPrefix(dsn, "file:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if !strings.HasPrefix(path, "file:") {
			path = "file:" + path
		}
		file, query, _ := strings.Cut(strings.TrimPrefix(path, "file:"), "?")
		if ephemeralSQLite(file, query) {
			// SQLite would open a private temporary or in-memory
			// database, which vanishes when phicrypt exits with the keys
			// it created: ciphertexts written under them could never be
			// decrypted. An unset variable in sqlite:$DB gives one.
			return nil, 0, usagef("the DSN %q names no database file (an empty path, :memory: or mode=memory): keys and tables must outlive the command", redactDSN(dsn))
		}
		if query == "" {
			path += "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
		}
		if create {
			// A new database is readable by its owner only, as the KEK
			// file is: it holds wrapped keys and the audit log (whose
			// scopes name patients), or ciphertexts. SQLite gives its
			// write-ahead log and shared-memory files the database's
			// permissions. An empty file is an empty database.
			if f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
				f.Close()
			} else if !errors.Is(err, os.ErrExist) {
				return nil, 0, err
			}
		} else {
			if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
				return nil, 0, &noDatabaseError{file}
			} else if err != nil {
				return nil, 0, err
			}
			// Read-write, never create: the file may not vanish and
			// reappear empty between the check and the open.
			if !strings.Contains(query, "mode=") {
				path += "&mode=rw"
			}
		}
		db, err := sql.Open("sqlite", path)
		return db, keys.SQLite, err
	}
	return nil, 0, usagef("unknown DSN %q: want postgres://… or sqlite:path", redactDSN(dsn))
}

// ephemeralSQLite reports whether a SQLite file name and URI query name a
// database that lives only as long as its connections: an empty name
// (SQLite's private temporary database), ":memory:", or mode=memory or
// vfs=memdb in the query.
func ephemeralSQLite(file, query string) bool {
	if file == "" || file == ":memory:" {
		return true
	}
	q, err := url.ParseQuery(query)
	return err == nil && (q.Get("mode") == "memory" || q.Get("vfs") == "memdb")
}

// redactDSN hides a DSN's password.
func redactDSN(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if at := strings.Index(dsn[i+3:], "@"); at >= 0 {
			return dsn[:i+3] + "…@" + dsn[i+3+at+1:]
		}
	}
	return dsn
}

// session is an open KEK, key store and keyring.
type session struct {
	e       *env
	kek     kms.KEK
	db      *sql.DB
	dialect keys.Dialect
	store   *keys.SQLStore
	keyring *keys.Keyring
	// audit is where the keyring's events go (the key store database's
	// tamper-evident audit log, when it has one), counted for the summary
	// Close prints; nil when the session does not audit.
	audit *auditSinks
}

// Close closes the session and prints the audit summary.
func (s *session) Close() {
	if s.audit != nil {
		s.audit.close(s.e)
	}
	if c, ok := s.kek.(io.Closer); ok {
		c.Close()
	}
	if s.db != nil {
		s.db.Close()
	}
}

// openOptions say how to open a session.
type openOptions struct {
	// audit sends the keyring's events to the audit sinks (see
	// env.sinks); without it, the keyring audits nothing (keys status).
	audit bool
	// tune adjusts the keyring's configuration.
	tune []func(*keys.Config)
}

// open opens the KEK and the key store of c, and a keyring over them. The
// key store must exist unless c.create; with c.guardKeys and not
// c.create, the keyring creates no key set (see noCreateStore).
func (e *env) open(ctx context.Context, c *common, o openOptions) (*session, error) {
	s, err := e.openStore(ctx, c)
	if err != nil {
		return nil, err
	}
	cfg := keys.Config{KEK: s.kek, Store: s.store}
	if c.guardKeys && !c.create {
		cfg.Store = noCreateStore{s.store}
	}
	if o.audit {
		if s.audit, err = e.sinks(ctx, s.db, s.dialect, s.kek); err != nil {
			s.Close()
			return nil, err
		}
		cfg.Auditor, cfg.AuditFailClosed = s.audit, s.audit.durable()
	}
	for _, f := range o.tune {
		f(&cfg)
	}
	if s.keyring, err = keys.New(cfg); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// openStore opens the KEK and the key store of c, without a keyring. The
// key store must exist (keys.ErrNoStore otherwise) unless c.create.
func (e *env) openStore(ctx context.Context, c *common) (*session, error) {
	if c.kek == "" {
		return nil, usagef("no KEK: give --kek or PHICRYPT_KEK")
	}
	s := &session{e: e}
	createStore := c.create && !c.impliedStore
	var err error
	if s.db, s.dialect, err = openKeysDB(c.keysDSN, createStore); err != nil {
		return nil, err
	}
	// kmsopen.Open puts the backend behind kms.Resilient (retries with
	// backoff, a circuit breaker, a timeout per attempt): backends make
	// one attempt per call, and a KMS that throttles a migration or a
	// bulk rewrap must slow it down, not stop it.
	if s.kek, err = kmsopen.Open(ctx, c.kek); err != nil {
		s.Close()
		return nil, fmt.Errorf("open KEK: %w", err)
	}
	switch {
	case createStore:
		s.store, err = keys.NewSQLStore(ctx, s.db, s.dialect)
	case c.impliedStore:
		s.store, err = keys.OpenSQLStore(ctx, s.db, s.dialect)
		if errors.Is(err, keys.ErrNoStore) {
			err = fmt.Errorf("no --keys-dsn (or PHICRYPT_KEYS_DSN), and the tables' database %s holds no key store: name the key store with --keys-dsn (--create never creates one there unnamed): %w", redactDSN(c.keysDSN), err)
		}
	default:
		s.store, err = openExistingStore(ctx, s.db, s.dialect, c.keysDSN)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// openExistingStore opens the key store in db, which must exist
// (keys.ErrNoStore, with a message naming dsn, otherwise).
func openExistingStore(ctx context.Context, db *sql.DB, dialect keys.Dialect, dsn string) (*keys.SQLStore, error) {
	s, err := keys.OpenSQLStore(ctx, db, dialect)
	if errors.Is(err, keys.ErrNoStore) {
		return nil, fmt.Errorf("%s holds no key store (create it with phicrypt keys init, or pass --create): %w", redactDSN(dsn), err)
	}
	return s, err
}

// openKeysDB opens the key store's database; a SQLite file that does not
// exist is refused with keys.ErrNoStore unless create.
func openKeysDB(dsn string, create bool) (*sql.DB, keys.Dialect, error) {
	db, dialect, err := openDB(dsn, create)
	var nd *noDatabaseError
	if errors.As(err, &nd) {
		return nil, 0, fmt.Errorf("%s does not exist (create the key store with phicrypt keys init, or pass --create): %w", nd.path, keys.ErrNoStore)
	}
	return db, dialect, err
}

// noCreateStore is a key store through which no key set is created: an
// Update of a key set without versions fails with keys.ErrKeyNotFound, and
// stores nothing. Commands with a --create flag use it without the flag,
// so that a mistyped scope or index fails instead of creating keys.
type noCreateStore struct{ keys.Store }

// Update implements keys.Store.
func (s noCreateStore) Update(ctx context.Context, id keys.ID, fn func(ks *keys.KeySet) error) (*keys.KeySet, error) {
	if strings.HasPrefix(id.Scope, keys.ReservedScopePrefix) {
		// phicrypt's own key sets (the metadata MAC key) are not the
		// caller's to mistype.
		return s.Store.Update(ctx, id, fn)
	}
	return s.Store.Update(ctx, id, func(ks *keys.KeySet) error {
		if len(ks.Versions) == 0 {
			// The scope may be a patient's: the message names the key only.
			return fmt.Errorf("%w: the %s of a scope does not exist (pass --create to create the keys of new scopes)", keys.ErrKeyNotFound, keyKind(id))
		}
		return fn(ks)
	})
}

// keyKind names the key set id without its scope: "data key", "index key
// Patient.ssn_index".
func keyKind(id keys.ID) string {
	if rest, ok := strings.CutPrefix(id.Name, "index/"); ok {
		return "index key " + strings.Replace(rest, "/", ".", 1)
	}
	return id.Name + " key"
}

// codec returns a fields codec over the session's keyring.
func (s *session) codec(binary bool) (*fields.Codec, error) {
	return fields.NewCodec(fields.Config{Keyring: s.keyring, Binary: binary})
}

// bar returns a progress bar on stderr for total units ("rows", "keys",
// "bytes"; -1 when unknown). It is invisible when stderr is not a
// terminal, with --quiet, and when audit events go to stderr (they would
// break its line). Invisible, not progressbar.DefaultSilent: a silent bar
// of unknown length runs a spinner goroutine that reads the bar's state
// without its lock (a data race inside progressbar v3.19.1).
//
// The rate is measured from the bar's creation (not from its first
// update, which would show millions per second), in bytes per second for
// bytes, and the bar erases itself when finished: the summary that
// follows starts on a clean line.
func (e *env) bar(total int64, what, unit string) *progressbar.ProgressBar {
	if !e.interactive || e.quiet || e.auditOnStderr {
		return progressbar.NewOptions64(total, progressbar.OptionSetVisibility(false), progressbar.OptionSetWriter(io.Discard))
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(e.stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowTotalBytes(total >= 0),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionClearOnFinish(),
	}
	if unit == "bytes" {
		// The bytes rate (MB/s) is the rate: no "it/s" beside it.
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionShowIts(), progressbar.OptionSetItsString(unit))
	}
	bar := progressbar.NewOptions64(total, opts...)
	bar.StartWithoutRender()
	return bar
}

// isTerminal reports whether f is a terminal. A character device is not
// necessarily one (/dev/null is a character device), so ask the terminal
// driver, as golang.org/x/term does on every platform.
func isTerminal(f *os.File) bool {
	return term.IsTerminal(int(f.Fd()))
}
