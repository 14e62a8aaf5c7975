package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
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

// commonFlags registers --kek and --keys-dsn, defaulting to the
// environment.
func (e *env) commonFlags(fs *flag.FlagSet) *common {
	c := &common{}
	fs.StringVar(&c.kek, "kek", e.getenv("PHICRYPT_KEK"), "the KEK's URI (env PHICRYPT_KEK), e.g. local:///etc/phicrypt/kek.json")
	fs.StringVar(&c.keysDSN, "keys-dsn", e.getenv("PHICRYPT_KEYS_DSN"), "the key store's database (env PHICRYPT_KEYS_DSN): postgres://… or sqlite:path")
	return c
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

// openDB opens a DSN: a PostgreSQL URL, or a SQLite file.
func openDB(dsn string) (*sql.DB, keys.Dialect, error) {
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
		if !strings.Contains(path, "?") {
			path += "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
		}
		db, err := sql.Open("sqlite", path)
		return db, keys.SQLite, err
	}
	return nil, 0, usagef("unknown DSN %q: want postgres://… or sqlite:path", redactDSN(dsn))
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
	kek     kms.KEK
	db      *sql.DB
	dialect keys.Dialect
	store   *keys.SQLStore
	keyring *keys.Keyring
	// auditLog is the key store database's tamper-evident audit log, when
	// it has one and the session was opened for a key operation.
	auditLog *keys.AuditLog
}

func (s *session) Close() {
	if c, ok := s.kek.(io.Closer); ok {
		c.Close()
	}
	if s.db != nil {
		s.db.Close()
	}
}

// open opens the KEK and the key store of c, and a keyring over them with
// cfg (its KEK and Store set here).
func (e *env) open(ctx context.Context, c *common, cfg keys.Config) (*session, error) {
	s, err := e.openStore(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := s.newKeyring(cfg); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// newKeyring sets the session's keyring, with cfg over its KEK and store.
func (s *session) newKeyring(cfg keys.Config) error {
	cfg.KEK, cfg.Store = s.kek, s.store
	var err error
	s.keyring, err = keys.New(cfg)
	return err
}

// openStore opens the KEK and the key store of c, without a keyring.
func (e *env) openStore(ctx context.Context, c *common) (*session, error) {
	if c.kek == "" {
		return nil, usagef("no KEK: give --kek or PHICRYPT_KEK")
	}
	s := &session{}
	var err error
	// kmsopen.Open puts the backend behind kms.Resilient (retries with
	// backoff, a circuit breaker, a timeout per attempt): backends make
	// one attempt per call, and a KMS that throttles a migration or a
	// bulk rewrap must slow it down, not stop it.
	if s.kek, err = kmsopen.Open(ctx, c.kek); err != nil {
		return nil, fmt.Errorf("open KEK: %w", err)
	}
	if s.db, s.dialect, err = openDB(c.keysDSN); err != nil {
		s.Close()
		return nil, err
	}
	if s.store, err = keys.NewSQLStore(ctx, s.db, s.dialect); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// codec returns a fields codec over the session's keyring.
func (s *session) codec(binary bool) (*fields.Codec, error) {
	return fields.NewCodec(fields.Config{Keyring: s.keyring, Binary: binary})
}

// bar returns a progress bar on stderr for total units ("rows", "keys",
// "bytes"; -1 when unknown), or an invisible one when stderr is not a
// terminal. Invisible, not progressbar.DefaultSilent: a silent bar of
// unknown length runs a spinner goroutine that reads the bar's state
// without its lock (a data race inside progressbar v3.19.1).
func (e *env) bar(total int64, what, unit string) *progressbar.ProgressBar {
	if !e.interactive {
		return progressbar.NewOptions64(total, progressbar.OptionSetVisibility(false), progressbar.OptionSetWriter(io.Discard))
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(e.stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(e.stderr) }),
	}
	if unit == "bytes" {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionSetItsString(unit))
	}
	return progressbar.NewOptions64(total, opts...)
}

// isTerminal reports whether f is a terminal. A character device is not
// necessarily one (/dev/null is a character device), so ask the terminal
// driver, as golang.org/x/term does on every platform.
func isTerminal(f *os.File) bool {
	return term.IsTerminal(int(f.Fd()))
}
