package testsvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The services, as named in messages and in the report (see [EnvReport]).
const (
	ServicePostgres = "PostgreSQL"
	ServiceVault    = "Vault"
	ServiceLocalKMS = "local-kms"
	ServiceSoftHSM  = "SoftHSM2"
)

// Environment variables read by this package.
const (
	// EnvRequireIntegration, set to "1", makes [Missing] fail tests
	// instead of skipping them.
	EnvRequireIntegration = "PHICRYPT_REQUIRE_INTEGRATION"
	// EnvCacheDir overrides the cache folder (default: .cache under the
	// repository root).
	EnvCacheDir = "PHICRYPT_CACHE_DIR"
	// EnvVaultBin names a Vault binary to use instead of the one in the
	// cache folder.
	EnvVaultBin = "PHICRYPT_VAULT_BIN"
	// EnvLocalKMSBin names a local-kms binary to use instead of the one in
	// the cache folder.
	EnvLocalKMSBin = "PHICRYPT_LOCAL_KMS_BIN"
	// EnvFull, set to "1", makes tests run at full size (see [Full]).
	EnvFull = "PHICRYPT_FULL_TESTS"
)

// Full reports whether PHICRYPT_FULL_TESTS=1 asks for full-size runs: the
// 100,000-row crash test, the 100 MiB stream, the scale tests. Without it
// those tests check the same properties on smaller inputs, so that go test
// ./... stays within its default timeout on a small machine. CI sets it.
func Full() bool { return os.Getenv(EnvFull) == "1" }

// ErrUnavailable reports that a service cannot be started on this machine
// because a program it needs is not installed or not built. The error's
// text names the one command that provides it. Start functions turn it into a call to
// [Missing]; every other error fails the test.
var ErrUnavailable = errors.New("testsvc: service unavailable")

// unavailable returns an error wrapping [ErrUnavailable] whose text is the
// formatted message, which should say what to install.
func unavailable(format string, args ...any) error {
	return &unavailableError{msg: fmt.Sprintf(format, args...)}
}

type unavailableError struct{ msg string }

func (e *unavailableError) Error() string { return e.msg }
func (e *unavailableError) Unwrap() error { return ErrUnavailable }

// Missing reports a service that a test needs but this machine lacks. It
// skips the test with the formatted message, which should name the command
// that provides the service; when PHICRYPT_REQUIRE_INTEGRATION=1 it fails
// the test with the same message instead. Either way the outcome goes to
// the report file named by [EnvReport]. Like Skipf and Fatalf, it must be
// called from the goroutine running the test and does not return.
func Missing(t testing.TB, service, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(EnvRequireIntegration) == "1" {
		record(service, OutcomeFailed, msg)
		t.Fatalf("%s (%s=1)", msg, EnvRequireIntegration)
		return
	}
	record(service, OutcomeSkipped, msg)
	t.Skipf("%s", msg)
}

// fail reports err from starting a service: [Missing] for [ErrUnavailable],
// a fatal error otherwise.
func fail(t testing.TB, service string, err error) {
	t.Helper()
	if errors.Is(err, ErrUnavailable) {
		Missing(t, service, "%v", err)
		return
	}
	record(service, OutcomeFailed, err.Error())
	t.Fatalf("%v", err)
}

// RunMain runs the tests of m, then stops the services started by the
// Shared functions, and returns the exit code for os.Exit. A package whose
// tests use a Shared function calls it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testsvc.RunMain(m)) }
func RunMain(m *testing.M) int {
	mainActive.Store(true)
	code := m.Run()
	for _, s := range []interface{ stop() error }{&sharedPostgres, &sharedVault} {
		if err := s.stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	return code
}

// mainActive is set by RunMain: only then may services be shared, since
// nothing else would stop them.
var mainActive atomic.Bool

// shared holds one lazily started service for the whole test binary.
type shared[S interface{ Close() error }] struct {
	mu      sync.Mutex
	started bool
	svc     S
	err     error
}

// get returns the service, starting it on the first call. A failed start
// is remembered so that later tests fail or skip at once.
func (s *shared[S]) get(t testing.TB, name string, start func(context.Context) (S, error)) S {
	t.Helper()
	if !mainActive.Load() {
		t.Fatalf("testsvc: a shared %s needs the package's TestMain to call testsvc.RunMain, which stops shared services: func TestMain(m *testing.M) { os.Exit(testsvc.RunMain(m)) }", name)
	}
	s.mu.Lock()
	if !s.started {
		s.started = true
		s.svc, s.err = start(context.Background())
	}
	svc, err := s.svc, s.err
	s.mu.Unlock()
	if err != nil {
		fail(t, name, err)
	}
	record(name, OutcomeRan, "")
	return svc
}

func (s *shared[S]) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started || s.err != nil {
		return nil
	}
	s.started = false
	return s.svc.Close()
}

// freePort returns a TCP port that is free on host at the time of the call.
// Another process may take it before the caller's server binds it, so
// starters retry with a new port when the server cannot bind.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("testsvc: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startAttempts is how many ports a starter tries before giving up.
const startAttempts = 3

// readyTimeout bounds how long a starter waits for a server to answer.
const readyTimeout = 60 * time.Second

// cleanEnv returns the environment without the variables whose names start
// with one of the prefixes, plus extra. GODEBUG is always dropped: it tunes
// the test binary (GODEBUG=fips140=only, say), not the services, which are
// programs of their own (Vault refuses to start under fips140=only).
func cleanEnv(prefixes []string, extra ...string) []string {
	var env []string
	prefixes = append(prefixes, "GODEBUG=")
outer:
	for _, kv := range os.Environ() {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				continue outer
			}
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// ownerFile, in each temporary folder, holds the id of the process that
// made it, so that folders left by a killed test binary can be swept.
const ownerFile = ".phicrypt-owner"

var sweepOnce sync.Once

// tempDir makes a temporary folder for one service, named
// phicrypt-KIND-*, with a short path (a Unix socket path must fit in 107
// bytes). The folder is handed to the reaper (see [reap]), which removes
// it if the process dies without doing so. The first call in a process
// also removes the folders of test binaries that died before the reaper
// existed.
func tempDir(kind string) (string, error) {
	sweepOnce.Do(sweepStale)
	dir, err := os.MkdirTemp("", "phicrypt-"+kind+"-")
	if err != nil {
		return "", fmt.Errorf("testsvc: %s: %w", kind, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("testsvc: %s: %w", kind, err)
	}
	reap(dir)
	return dir, nil
}

// sweepStale removes the temporary folders whose owner process is gone.
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "phicrypt-*-*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

// startForTest starts the service named name with start and closes it
// when the test ends. When start fails it calls [fail] and returns the
// zero S.
func startForTest[S interface{ Close() error }](t testing.TB, name string, start func(context.Context) (S, error)) S {
	t.Helper()
	svc, err := start(context.Background())
	if err != nil {
		fail(t, name, err)
		var zero S
		return zero
	}
	record(name, OutcomeRan, "")
	t.Cleanup(func() {
		if err := svc.Close(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return svc
}

// PostgresReady reports, without starting anything, whether tests will
// find PostgreSQL: nil, or an [ErrUnavailable] error naming the command
// that provides it.
func PostgresReady() error {
	_, err := postgresBinDir(context.Background())
	return err
}

// SoftHSMReady is [PostgresReady] for SoftHSM2.
func SoftHSMReady() error {
	_, _, err := softHSMPrograms()
	return err
}

// VaultReady is [PostgresReady] for Vault.
func VaultReady() error {
	_, err := vaultBinary()
	return err
}

// LocalKMSReady is [PostgresReady] for local-kms.
func LocalKMSReady() error {
	_, err := localKMSBinary()
	return err
}
