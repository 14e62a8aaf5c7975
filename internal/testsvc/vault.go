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

// vaultHint says what to do when Vault cannot be had.
const vaultHint = "install Go 1.26 so that testsvc can build Vault from internal/vaultserver (go run ./internal/testsvc/cmd/prebuild), or set " + EnvVaultBin + " to a Vault binary"

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
// test ends. The first call on a machine builds Vault, which takes minutes
// (see [BuildVault]). When Go is missing or the build fails it calls
// [Missing].
func StartVault(t testing.TB) *Vault {
	t.Helper()
	return startForTest(t, NewVault)
}

// sharedVault is the server returned by SharedVault.
var sharedVault shared[*Vault]

// SharedVault returns the test binary's shared Vault dev server, starting
// it on the first call. It is safe to call from parallel tests. The
// package's TestMain must call [RunMain], which stops the server after the
// tests; tests keep apart by naming their own transit keys.
func SharedVault(t testing.TB) *Vault {
	t.Helper()
	return sharedVault.get(t, "Vault", NewVault)
}

// NewVault starts a Vault dev server, for callers without a testing.TB.
// The caller must call Close. The error wraps [ErrUnavailable] when Vault
// cannot be built.
func NewVault(ctx context.Context) (*Vault, error) {
	bin, err := BuildVault(ctx)
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

// BuildVault returns the path of a Vault binary: $PHICRYPT_VAULT_BIN when
// set, else bin/vault in the cache folder (see [CacheDir]), which it
// builds from the module in internal/vaultserver when missing or out of
// date. On a 2-core machine building takes about 1 minute with a warm Go
// build cache and 10-15 minutes with a cold one, and makes a binary of
// about 500 MB; concurrent callers, in this or other processes,
// wait for one build. The error wraps [ErrUnavailable] when Go is missing
// or the build fails.
func BuildVault(ctx context.Context) (string, error) {
	if bin, err := binaryFromEnv(EnvVaultBin); bin != "" || err != nil {
		return bin, err
	}
	root, err := RepoRoot()
	if err != nil {
		return "", unavailable("%v: %s", err, vaultHint)
	}
	src := filepath.Join(root, "internal", "vaultserver")
	h := sha256.New()
	for _, name := range []string{"go.mod", "go.sum", "main.go"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return "", unavailable("testsvc: vault source: %v: %s", err, vaultHint)
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	stamp := "vaultserver " + hex.EncodeToString(h.Sum(nil)) + "\n"
	return cachedBinary(ctx, "vault", stamp, func(ctx context.Context, tmpDir string) error {
		goBin, err := goTool()
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, goBin, "build", "-mod=mod", "-trimpath", "-o", filepath.Join(tmpDir, "vault"), ".")
		cmd.Dir = src
		cmd.Env = cleanEnv([]string{"GOWORK="}, "GOWORK=off")
		if _, err := runCommand(cmd); err != nil {
			return unavailable("testsvc: build vault: %s: %s", tail(err.Error(), 2048), vaultHint)
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
// body.
func (v *Vault) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
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
