package testsvc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// mainModule is the module path whose go.mod marks the repository root.
const mainModule = "github.com/phicrypt/phicrypt"

// RepoRoot returns the folder holding the go.mod of module
// github.com/phicrypt/phicrypt, found by walking up from the working
// directory (a test's package folder) and, failing that, from this
// package's source folder.
func RepoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if isMainModule(filepath.Join(dir, "go.mod")) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("testsvc: no go.mod of module %s above the working directory", mainModule)
}

// isMainModule reports whether the go.mod at path declares mainModule.
func isMainModule(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == mainModule
		}
	}
	return false
}

// CacheDir returns the folder where built binaries are kept:
// $PHICRYPT_CACHE_DIR, or phicrypt in the user's cache folder
// ($XDG_CACHE_HOME or ~/.cache on Linux), so that every clone on a machine
// shares one build.
func CacheDir() (string, error) {
	if dir := os.Getenv(EnvCacheDir); dir != "" {
		return filepath.Abs(dir)
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("testsvc: set %s: %w", EnvCacheDir, err)
	}
	return filepath.Join(dir, "phicrypt"), nil
}

// binDir returns the cache's bin folder, where built services are kept.
func binDir() (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "bin"), nil
}

// readyBinary returns the path of binary name in the cache's bin folder
// when it is there and its stamp file holds stamp (it was built from the
// current sources). Otherwise it returns an [ErrUnavailable] error naming
// install, the command that builds it. Tests call this: they never build.
func readyBinary(name, stamp, install string) (string, error) {
	dir, err := binDir()
	if err != nil {
		return "", unavailable("%v: then run %s", err, install)
	}
	bin := filepath.Join(dir, name)
	if !fresh(bin, stamp) {
		return "", unavailable("testsvc: %s is not built (or is out of date) in %s: run %s", name, dir, install)
	}
	return bin, nil
}

// fresh reports whether bin is a regular file whose stamp file holds
// stamp.
func fresh(bin, stamp string) bool {
	got, err := os.ReadFile(bin + ".stamp")
	if err != nil || !bytes.Equal(got, []byte(stamp)) {
		return false
	}
	fi, err := os.Stat(bin)
	return err == nil && fi.Mode().IsRegular()
}

// buildBinary returns the path of binary name in the cache's bin folder,
// building it with build when it is missing or its stamp differs. build
// writes the binary into the temporary folder it is given; the result is
// then renamed into place, so a binary in the cache is always complete. A
// lock file serializes builds across processes, and waiting for it
// honours ctx. Only the services command calls this, never a test.
func buildBinary(ctx context.Context, name, stamp string, build func(ctx context.Context, tmpDir string) error) (string, error) {
	dir, err := binDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	if fresh(bin, stamp) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("testsvc: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, "."+name+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if fresh(bin, stamp) { // built by another process while we waited
		return bin, nil
	}
	tmpDir, err := os.MkdirTemp(dir, "."+name+"-build-")
	if err != nil {
		return "", fmt.Errorf("testsvc: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	if err := build(ctx, tmpDir); err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(tmpDir, name), bin); err != nil {
		return "", fmt.Errorf("testsvc: %w", err)
	}
	if err := os.WriteFile(bin+".stamp", []byte(stamp), 0o644); err != nil {
		return "", fmt.Errorf("testsvc: %w", err)
	}
	return bin, nil
}

// binaryFromEnv returns the binary named by the environment variable env,
// or "" when it is unset.
func binaryFromEnv(env string) (string, error) {
	path := os.Getenv(env)
	if path == "" {
		return "", nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("testsvc: %s: %w", env, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("testsvc: %s=%s is not an executable file", env, path)
	}
	return filepath.Abs(path)
}

// goTool returns the path of the go command, or an ErrUnavailable error.
func goTool() (string, error) {
	if path, err := exec.LookPath("go"); err == nil {
		return path, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		path := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
	}
	return "", unavailable("testsvc: the go command is not in PATH: install Go 1.26")
}

// errLockTimeout is returned when another build holds the lock too long.
var errLockTimeout = errors.New("testsvc: timed out waiting for another build's lock")

// lockWait bounds the wait for another process's build.
const lockWait = 20 * time.Minute
