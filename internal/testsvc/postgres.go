package testsvc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// postgresHint names the command that installs PostgreSQL.
const postgresHint = "install it: apt-get install -y postgresql-15"

// Postgres is a throwaway PostgreSQL cluster: its own data folder in a
// temporary folder, the superuser postgres with trust authentication (no
// password), TCP on 127.0.0.1 only, and fsync off. It is for tests only:
// a crash loses its data.
type Postgres struct {
	// Host is the address the server listens on: 127.0.0.1.
	Host string
	// Port is the server's TCP port.
	Port int
	// User is the superuser's name: postgres. It has no password.
	User string
	// DSN is the URL of database postgres, in the form
	// postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable.
	DSN string

	dir    string // temporary folder holding data, socket and log
	binDir string // PostgreSQL's programs
	proc   *process

	closeOnce sync.Once
	closeErr  error
}

// StartPostgres creates and starts a cluster for the test and stops it,
// removing its files, when the test ends. When PostgreSQL is not installed
// it calls [Missing]. Creating a cluster takes a few seconds: tests of a
// package that all need one should share it with [SharedPostgres].
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	return startForTest(t, ServicePostgres, NewPostgres)
}

// sharedPostgres is the cluster returned by SharedPostgres.
var sharedPostgres shared[*Postgres]

// SharedPostgres returns the test binary's shared cluster, creating it on
// the first call. It is safe to call from parallel tests. The package's
// TestMain must call [RunMain], which stops the cluster after the tests;
// tests keep apart by each using its own database from
// [Postgres.CreateDatabase]. When PostgreSQL is not installed it calls
// [Missing].
func SharedPostgres(t testing.TB) *Postgres {
	t.Helper()
	return sharedPostgres.get(t, ServicePostgres, NewPostgres)
}

// NewPostgres creates and starts a cluster, for callers without a
// testing.TB (TestMain, examples). The caller must call Close. The error
// wraps [ErrUnavailable] when PostgreSQL is not installed.
func NewPostgres(ctx context.Context) (*Postgres, error) {
	binDir, err := postgresBinDir(ctx)
	if err != nil {
		return nil, err
	}
	owner, err := dropRoot("postgres")
	if err != nil {
		return nil, err
	}
	dir, err := tempDir("pg")
	if err != nil {
		return nil, err
	}
	p := &Postgres{Host: "127.0.0.1", User: "postgres", dir: dir, binDir: binDir}
	if err := p.start(ctx, owner); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// postgresBinDir finds PostgreSQL's programs: pg_config --bindir, then
// Debian's folder for PostgreSQL 15.
func postgresBinDir(ctx context.Context) (string, error) {
	var dirs []string
	if out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	dirs = append(dirs, "/usr/lib/postgresql/15/bin")
	for _, dir := range dirs {
		ok := true
		for _, prog := range []string{"initdb", "postgres", "createdb", "dropdb", "psql"} {
			if _, err := os.Stat(filepath.Join(dir, prog)); err != nil {
				ok = false
				break
			}
		}
		if ok {
			return dir, nil
		}
	}
	return "", unavailable("testsvc: PostgreSQL's initdb, postgres, createdb, dropdb and psql are not in %s: %s", strings.Join(dirs, " or "), postgresHint)
}

// start runs initdb, then the server on a free port, retrying with another
// port when the chosen one was taken meanwhile.
func (p *Postgres) start(ctx context.Context, owner *systemUser) error {
	data := filepath.Join(p.dir, "data")
	sock := filepath.Join(p.dir, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		return fmt.Errorf("testsvc: postgres: %w", err)
	}
	for _, path := range []string{p.dir, sock} {
		if err := owner.chown(path); err != nil {
			return err
		}
	}
	initdb := exec.CommandContext(ctx, filepath.Join(p.binDir, "initdb"),
		"-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8",
		"--locale=C", "--no-sync", "--no-instructions")
	p.prepare(initdb, owner)
	if _, err := runCommand(initdb); err != nil {
		return err
	}

	var lastErr error
	for range startAttempts {
		port, err := freePort(p.Host)
		if err != nil {
			return err
		}
		cmd := exec.Command(filepath.Join(p.binDir, "postgres"),
			"-D", data, "-p", strconv.Itoa(port), "-k", sock,
			"-c", "listen_addresses="+p.Host,
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off")
		p.prepare(cmd, owner)
		// SIGQUIT is PostgreSQL's immediate shutdown (pg_ctl stop -m immediate).
		proc, err := startProcess("postgres", cmd, filepath.Join(p.dir, "postgres.log"), syscall.SIGQUIT)
		if err != nil {
			return err
		}
		lastErr = proc.waitReady(ctx, func(context.Context) bool { return postmasterReady(data) })
		if lastErr == nil {
			p.proc = proc
			p.Port = port
			p.DSN = p.DatabaseDSN("postgres")
			return nil
		}
		_ = proc.stop(syscall.SIGQUIT, 5*time.Second)
		if !strings.Contains(proc.logTail(), "could not bind") && !strings.Contains(proc.logTail(), "could not create any TCP/IP sockets") {
			break
		}
	}
	return lastErr
}

// prepare sets a PostgreSQL program's folder, environment and user.
func (p *Postgres) prepare(cmd *exec.Cmd, owner *systemUser) {
	cmd.Dir = p.dir
	cmd.Env = cleanEnv([]string{"PG"}, "PGCONNECT_TIMEOUT=10")
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	owner.apply(cmd.SysProcAttr)
}

// postmasterReady reports whether postmaster.pid says the server accepts
// connections: its 8th line is "ready", as pg_ctl -w checks.
func postmasterReady(data string) bool {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return false
	}
	lines := strings.Split(string(b), "\n")
	return len(lines) >= 8 && strings.TrimSpace(lines[7]) == "ready"
}

// dbName is what CreateDatabase accepts: a lowercase SQL identifier that
// needs no quoting.
var dbName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// CreateDatabase creates the database name, empty, and returns its DSN.
// The database is dropped, with its open connections closed, when the
// test ends. name must be a lowercase identifier of at most 63 bytes
// ([a-z_][a-z0-9_]*) not already in use.
func (p *Postgres) CreateDatabase(t testing.TB, name string) string {
	t.Helper()
	dsn, err := p.NewDatabase(context.Background(), name)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := p.DropDatabase(context.Background(), name); err != nil {
			t.Logf("%v", err)
		}
	})
	return dsn
}

// NewDatabase creates the database name, empty, and returns its DSN. name
// must be as for [Postgres.CreateDatabase].
func (p *Postgres) NewDatabase(ctx context.Context, name string) (string, error) {
	if !dbName.MatchString(name) {
		return "", fmt.Errorf("testsvc: database name %q is not a lowercase identifier of at most 63 bytes", name)
	}
	if _, err := runCommand(p.client(ctx, "createdb", name)); err != nil {
		return "", err
	}
	return p.DatabaseDSN(name), nil
}

// DropDatabase drops the database name, closing its connections first. A
// missing database is not an error.
func (p *Postgres) DropDatabase(ctx context.Context, name string) error {
	if !dbName.MatchString(name) {
		return fmt.Errorf("testsvc: database name %q is not a lowercase identifier of at most 63 bytes", name)
	}
	_, err := runCommand(p.client(ctx, "dropdb", "--if-exists", "--force", name))
	return err
}

// DatabaseDSN returns the URL of database name on this cluster.
func (p *Postgres) DatabaseDSN(name string) string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", p.User, p.Host, p.Port, name)
}

// Psql runs psql with the given arguments against database name and
// returns its output; for test set-up and checks, such as
// p.Psql(ctx, "postgres", "-tAc", "select 1").
func (p *Postgres) Psql(ctx context.Context, name string, args ...string) (string, error) {
	out, err := runCommand(p.client(ctx, "psql", append([]string{"-X", "-v", "ON_ERROR_STOP=1", "-d", name}, args...)...))
	return string(out), err
}

// client returns a command running one of PostgreSQL's client programs
// against this cluster over TCP.
func (p *Postgres) client(ctx context.Context, prog string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(p.binDir, prog),
		append([]string{"-h", p.Host, "-p", strconv.Itoa(p.Port), "-U", p.User, "-w"}, args...)...)
	cmd.Env = cleanEnv([]string{"PG"}, "PGCONNECT_TIMEOUT=10")
	return cmd
}

// Close stops the server at once (an immediate shutdown) and removes its
// files. It is safe to call more than once.
func (p *Postgres) Close() error {
	p.closeOnce.Do(func() {
		if p.proc != nil {
			p.closeErr = p.proc.stop(syscall.SIGQUIT, 10*time.Second)
		}
		if err := os.RemoveAll(p.dir); err != nil && p.closeErr == nil {
			p.closeErr = fmt.Errorf("testsvc: postgres: %w", err)
		}
	})
	return p.closeErr
}
