package testsvc

import (
	"context"
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

// LocalKMSModule is the local-kms version that [InstallLocalKMS] installs.
const LocalKMSModule = "github.com/nsmithuk/local-kms@v0.0.0-20260228092603-2a5e92d09ab6"

// LocalKMS is an AWS KMS emulator (nsmithuk/local-kms) speaking the KMS
// JSON protocol (X-Amz-Target: TrentService.*). It accepts any
// credentials and keeps its keys in a temporary folder. It listens on all
// interfaces (it cannot be told otherwise); clients use [LocalKMS.Endpoint]
// on 127.0.0.1.
type LocalKMS struct {
	// Endpoint is the URL clients use: http://127.0.0.1:PORT.
	Endpoint string
	// Region is the AWS region in the key ARNs: eu-west-2.
	Region string
	// AccountID is the AWS account in the key ARNs: 111122223333.
	AccountID string

	dir  string // temporary folder: data and log
	proc *process

	closeOnce sync.Once
	closeErr  error
}

// StartLocalKMS starts local-kms for the test and stops it when the test
// ends. When local-kms is not installed it calls [Missing]: tests never
// install it (see [InstallLocalKMS]).
func StartLocalKMS(t testing.TB) *LocalKMS {
	t.Helper()
	return startForTest(t, ServiceLocalKMS, NewLocalKMS)
}

// NewLocalKMS starts local-kms, for callers without a testing.TB. The
// caller must call Close. The error wraps [ErrUnavailable] when local-kms
// is not installed.
func NewLocalKMS(ctx context.Context) (*LocalKMS, error) {
	bin, err := localKMSBinary()
	if err != nil {
		return nil, err
	}
	dir, err := tempDir("kms")
	if err != nil {
		return nil, err
	}
	k := &LocalKMS{Region: "eu-west-2", AccountID: "111122223333", dir: dir}
	if err := k.start(ctx, bin); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return k, nil
}

// localKMSBinary returns $PHICRYPT_LOCAL_KMS_BIN when set, else the
// local-kms binary that [InstallLocalKMS] left in the cache folder.
func localKMSBinary() (string, error) {
	if bin, err := binaryFromEnv(EnvLocalKMSBin); bin != "" || err != nil {
		return bin, err
	}
	return readyBinary("local-kms", LocalKMSModule+"\n", InstallCommand+" local-kms")
}

// InstallLocalKMS installs [LocalKMSModule] with go install into the cache
// folder (see [CacheDir]) when it is missing or of another version, and
// returns its path. The services command calls it; tests never do.
func InstallLocalKMS(ctx context.Context) (string, error) {
	return buildBinary(ctx, "local-kms", LocalKMSModule+"\n", func(ctx context.Context, tmpDir string) error {
		goBin, err := goTool()
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, goBin, "install", "-trimpath", LocalKMSModule)
		cmd.Dir = tmpDir // outside any module
		cmd.Env = cleanEnv([]string{"GOBIN=", "GOWORK=", "GOFLAGS="}, "GOBIN="+tmpDir, "GOWORK=off")
		if _, err := runCommand(cmd); err != nil {
			return fmt.Errorf("testsvc: install local-kms: %s", tail(err.Error(), 2048))
		}
		return nil
	})
}

// start runs the server on a free port, retrying with another port when
// the chosen one was taken meanwhile.
func (k *LocalKMS) start(ctx context.Context, bin string) error {
	var lastErr error
	for range startAttempts {
		// local-kms binds all interfaces, so the port must be free on all.
		port, err := freePort("")
		if err != nil {
			return err
		}
		cmd := exec.Command(bin)
		cmd.Dir = k.dir
		cmd.Env = cleanEnv([]string{"PORT=", "KMS_", "ACCOUNT_ID=", "REGION=", "DATA_PATH=", "SEED_PATH="},
			"PORT="+strconv.Itoa(port),
			"KMS_ACCOUNT_ID="+k.AccountID,
			"KMS_REGION="+k.Region,
			"KMS_DATA_PATH="+filepath.Join(k.dir, "data"),
			// No seed file: never read the default /init/seed.yaml.
			"KMS_SEED_PATH="+filepath.Join(k.dir, "no-seed.yaml"))
		proc, err := startProcess("local-kms", cmd, filepath.Join(k.dir, "local-kms.log"), syscall.SIGKILL)
		if err != nil {
			return err
		}
		k.Endpoint = "http://127.0.0.1:" + strconv.Itoa(port)
		lastErr = proc.waitReady(ctx, func(ctx context.Context) bool {
			code, err := k.listKeys(ctx)
			return err == nil && code == http.StatusOK
		})
		if lastErr == nil {
			k.proc = proc
			return nil
		}
		_ = proc.stop(syscall.SIGKILL, 5*time.Second)
		if !strings.Contains(proc.logTail(), "address already in use") {
			break
		}
	}
	return lastErr
}

// listKeys calls TrentService.ListKeys and returns the status.
func (k *LocalKMS) listKeys(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.Endpoint+"/", strings.NewReader("{}"))
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Amz-Target", "TrentService.ListKeys")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// Close stops the server and removes its files. It is safe to call more
// than once.
func (k *LocalKMS) Close() error {
	k.closeOnce.Do(func() {
		if k.proc != nil {
			k.closeErr = k.proc.stop(syscall.SIGTERM, 5*time.Second)
		}
		if err := os.RemoveAll(k.dir); err != nil && k.closeErr == nil {
			k.closeErr = fmt.Errorf("testsvc: local-kms: %w", err)
		}
	})
	return k.closeErr
}
