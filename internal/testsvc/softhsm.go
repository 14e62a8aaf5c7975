package testsvc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// softHSMHint names the command that installs SoftHSM2.
const softHSMHint = "install it: apt-get install -y softhsm2"

// softHSMModules are where distributions put SoftHSM2's PKCS#11 module.
var softHSMModules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
}

// SoftHSM is a SoftHSM2 token initialized in a temporary token folder of
// its own. PKCS#11 clients load ModulePath, which finds the token through
// the configuration file named by the SOFTHSM2_CONF environment variable,
// and open the token by TokenLabel with PIN.
type SoftHSM struct {
	// ModulePath is the PKCS#11 module to load.
	ModulePath string
	// ConfPath is the SoftHSM2 configuration file; SOFTHSM2_CONF must name
	// it when the module is initialized.
	ConfPath string
	// TokenLabel is the token's label: phicrypt-test.
	TokenLabel string
	// PIN is the user PIN.
	PIN string
	// SOPIN is the security officer PIN.
	SOPIN string

	dir string
}

// StartSoftHSM initializes a token for the test, sets SOFTHSM2_CONF for
// the rest of the test with t.Setenv, and removes the token when the test
// ends. Since t.Setenv panics in parallel tests, tests using it cannot call
// t.Parallel. The SoftHSM2 module reads SOFTHSM2_CONF when it is
// initialized (C_Initialize), so a test must finalize the module before it
// ends, and a module initialized before StartSoftHSM does not see the
// token. When SoftHSM2 is not installed it calls [Missing].
func StartSoftHSM(t testing.TB) *SoftHSM {
	t.Helper()
	h := startForTest(t, ServiceSoftHSM, NewSoftHSM)
	if h == nil {
		return nil
	}
	t.Setenv("SOFTHSM2_CONF", h.ConfPath)
	return h
}

// NewSoftHSM initializes a token in a new temporary folder, for callers
// without a testing.TB; they set SOFTHSM2_CONF to ConfPath (in the
// environment of the process loading the module) themselves and call
// Close when done. The error wraps [ErrUnavailable] when SoftHSM2 is not
// installed.
func NewSoftHSM(ctx context.Context) (*SoftHSM, error) {
	util, module, err := softHSMPrograms()
	if err != nil {
		return nil, err
	}
	dir, err := tempDir("softhsm")
	if err != nil {
		return nil, err
	}
	h := &SoftHSM{
		ModulePath: module,
		ConfPath:   filepath.Join(dir, "softhsm2.conf"),
		TokenLabel: "phicrypt-test",
		PIN:        "1234",
		SOPIN:      "12345678",
		dir:        dir,
	}
	if err := h.init(ctx, util); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return h, nil
}

// softHSMPrograms finds softhsm2-util and SoftHSM2's PKCS#11 module.
func softHSMPrograms() (util, module string, err error) {
	util, err = exec.LookPath("softhsm2-util")
	if err != nil {
		return "", "", unavailable("testsvc: softhsm2-util is not in PATH: %s", softHSMHint)
	}
	for _, path := range softHSMModules {
		if _, err := os.Stat(path); err == nil {
			return util, path, nil
		}
	}
	return "", "", unavailable("testsvc: SoftHSM2's PKCS#11 module libsofthsm2.so is not in %v: %s", softHSMModules, softHSMHint)
}

// init writes the configuration and initializes the token.
func (h *SoftHSM) init(ctx context.Context, util string) error {
	tokens := filepath.Join(h.dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return fmt.Errorf("testsvc: softhsm: %w", err)
	}
	conf := "directories.tokendir = " + tokens + "\n" +
		"objectstore.backend = file\n" +
		"log.level = ERROR\n" +
		"slots.removable = false\n"
	if err := os.WriteFile(h.ConfPath, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("testsvc: softhsm: %w", err)
	}
	cmd := exec.CommandContext(ctx, util, "--init-token", "--free",
		"--label", h.TokenLabel, "--so-pin", h.SOPIN, "--pin", h.PIN)
	cmd.Env = append(cleanEnv([]string{"SOFTHSM2_CONF="}), "SOFTHSM2_CONF="+h.ConfPath)
	_, err := runCommand(cmd)
	return err
}

// Close removes the token. It is safe to call more than once.
func (h *SoftHSM) Close() error {
	if err := os.RemoveAll(h.dir); err != nil {
		return fmt.Errorf("testsvc: softhsm: %w", err)
	}
	return nil
}
