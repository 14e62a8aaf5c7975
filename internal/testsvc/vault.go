package testsvc

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InstallCommand is the one command that provides the services that
// tests cannot find: it installs PostgreSQL 15 and SoftHSM2 from Debian's
// packages and builds Vault and local-kms into the cache folder. Name one
// service to install only that one.
const InstallCommand = "go run ./internal/testsvc/cmd/services install"

// Vault is a HashiCorp Vault dev server: in memory, unsealed, listening
// on 127.0.0.1 over plain HTTP, with the transit secrets engine mounted at
// transit/. For tests only.
type Vault struct {
	// Addr is the server's URL: http://127.0.0.1:PORT.
	Addr string
	// Token is the root token.
	Token string

	dir  string // temporary folder: HOME and log
	proc *process

	closeOnce sync.Once
	closeErr  error
}

// StartVault starts a Vault dev server for the test and stops it when the
// test ends. When Vault is not built it calls [Missing]: tests never build
// it (see [BuildVault]).
func StartVault(t testing.TB) *Vault {
	t.Helper()
	return startForTest(t, ServiceVault, NewVault)
}

// sharedVault is the server returned by SharedVault.
var sharedVault shared[*Vault]

// SharedVault returns the test binary's shared Vault dev server, starting
// it on the first call. It is safe to call from parallel tests. The
// package's TestMain must call [RunMain], which stops the server after the
// tests; tests keep apart by naming their own transit keys.
func SharedVault(t testing.TB) *Vault {
	t.Helper()
	return sharedVault.get(t, ServiceVault, NewVault)
}

// NewVault starts a Vault dev server, for callers without a testing.TB.
// The caller must call Close. The error wraps [ErrUnavailable] when Vault
// is not built.
func NewVault(ctx context.Context) (*Vault, error) {
	bin, err := vaultBinary()
	if err != nil {
		return nil, err
	}
	token, err := randomToken()
	if err != nil {
		return nil, err
	}
	dir, err := tempDir("vault")
	if err != nil {
		return nil, err
	}
	v := &Vault{Token: token, dir: dir}
	if err := v.start(ctx, bin); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return v, nil
}

// vaultBinary returns $PHICRYPT_VAULT_BIN when set, else the Vault binary
// that [BuildVault] left in the cache folder, built from the current
// sources of internal/vaultserver.
func vaultBinary() (string, error) {
	if bin, err := binaryFromEnv(EnvVaultBin); bin != "" || err != nil {
		return bin, err
	}
	stamp, err := vaultStamp()
	if err != nil {
		return "", err
	}
	return readyBinary("vault", stamp, InstallCommand+" vault")
}

// vaultStamp identifies the sources of internal/vaultserver: a hash of
// its go.mod, go.sum and Go files.
func vaultStamp() (string, error) {
	src, err := vaultSource()
	if err != nil {
		return "", err
	}
	names, err := filepath.Glob(filepath.Join(src, "*.go"))
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, path := range append([]string{filepath.Join(src, "go.mod"), filepath.Join(src, "go.sum")}, names...) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", unavailable("testsvc: vault source: %v: run %s vault from a clone of the repository", err, InstallCommand)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(path), len(b))
		h.Write(b)
	}
	return "vaultserver " + hex.EncodeToString(h.Sum(nil)) + "\n", nil
}

// vaultSource returns the folder of the internal/vaultserver module.
func vaultSource() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", unavailable("%v: run %s vault from a clone of the repository", err, InstallCommand)
	}
	return filepath.Join(root, "internal", "vaultserver"), nil
}

// BuildVault builds Vault from the module in internal/vaultserver into
// the cache folder (see [CacheDir]) when it is missing or out of date, and
// returns its path. The services command calls it; tests never do. The
// build takes minutes with a cold Go build cache (see the closing note of
// internal/vaultserver's doc). Concurrent callers, in this or other
// processes, wait for one build.
func BuildVault(ctx context.Context) (string, error) {
	src, err := vaultSource()
	if err != nil {
		return "", err
	}
	stamp, err := vaultStamp()
	if err != nil {
		return "", err
	}
	return buildBinary(ctx, "vault", stamp, func(ctx context.Context, tmpDir string) error {
		goBin, err := goTool()
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, goBin, "build", "-mod=mod", "-trimpath", "-o", filepath.Join(tmpDir, "vault"), ".")
		cmd.Dir = src
		cmd.Env = cleanEnv([]string{"GOWORK="}, "GOWORK=off")
		if _, err := runCommand(cmd); err != nil {
			return fmt.Errorf("testsvc: build vault: %s", tail(err.Error(), 2048))
		}
		return nil
	})
}

// start runs the server on a free port, retrying with another port when
// the chosen one was taken meanwhile, then mounts transit.
func (v *Vault) start(ctx context.Context, bin string) error {
	var lastErr error
	for range startAttempts {
		port, err := freePort("127.0.0.1")
		if err != nil {
			return err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		cmd := exec.Command(bin, "server", "-dev",
			"-dev-listen-address="+addr,
			"-dev-root-token-id="+v.Token,
			"-dev-no-store-token")
		cmd.Dir = v.dir
		// A HOME of its own keeps any token helper away from ~/.vault-token.
		cmd.Env = cleanEnv([]string{"VAULT_", "HOME="}, "HOME="+v.dir)
		proc, err := startProcess("vault", cmd, filepath.Join(v.dir, "vault.log"), syscall.SIGKILL)
		if err != nil {
			return err
		}
		v.Addr = "http://" + addr
		lastErr = proc.waitReady(ctx, func(ctx context.Context) bool {
			code, _, err := v.do(ctx, http.MethodGet, "/v1/sys/health", nil)
			return err == nil && code == http.StatusOK
		})
		if lastErr == nil {
			v.proc = proc
			break
		}
		_ = proc.stop(syscall.SIGKILL, 5*time.Second)
		if !strings.Contains(proc.logTail(), "address already in use") {
			return lastErr
		}
	}
	if lastErr != nil {
		return lastErr
	}
	code, body, err := v.do(ctx, http.MethodPost, "/v1/sys/mounts/transit", []byte(`{"type":"transit"}`))
	if err == nil && code/100 != 2 {
		err = fmt.Errorf("status %d: %s", code, body)
	}
	if err != nil {
		_ = v.Close()
		return fmt.Errorf("testsvc: vault: mount transit: %w", err)
	}
	return nil
}

// do sends one request with the root token and returns the status and
// body. Mounting transit took over 5 s on a 2-core machine with a load
// average of 20, hence the generous bound.
func (v *Vault) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, v.Addr+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("X-Vault-Token", v.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// Close stops the server and removes its files. It is safe to call more
// than once.
func (v *Vault) Close() error {
	v.closeOnce.Do(func() {
		if v.proc != nil {
			v.closeErr = v.proc.stop(syscall.SIGKILL, 5*time.Second)
		}
		if err := os.RemoveAll(v.dir); err != nil && v.closeErr == nil {
			v.closeErr = fmt.Errorf("testsvc: vault: %w", err)
		}
	})
	return v.closeErr
}

// randomToken returns a fresh root token.
func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("testsvc: %w", err)
	}
	return "phicrypt-test-" + hex.EncodeToString(b), nil
}

// tail returns up to the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
