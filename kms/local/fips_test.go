package local_test

import (
	"context"
	"crypto/fips140"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/local"
)

// sealedFixture is a key file sealed with sealedPassphrase (Argon2id at
// its cheapest), made outside FIPS mode, so that FIPS-mode tests have a
// sealed file to refuse.
const (
	sealedFixture = `{
  "format": "phicrypt-local-kek/v1",
  "key_id": "local:sealed-fixture",
  "kdf": {
    "algorithm": "argon2id",
    "salt": "1Jwq2oIeMr572U5IilBBxg==",
    "time": 1,
    "memory_kib": 64,
    "threads": 1
  },
  "sealed": "1vLmZtHLCYvfdAOi6rvhqT9jP7SP0Y8S33yMU00ELTVITcqfkcK39dKXfaH+wZ0ElFGQgoqWjuTxVqTJ53GCysbzjt9mAjSOlmsS/2t+UmSzW5qo5gRu/vg4ljUyvxeeI2eYZPXqBBAQMCovGq0BRPx0/KUO0VYoJzmBJV6kaU9Q7ZOK"
}`
	sealedPassphrase = "correct horse battery staple"
)

// skipInFIPSMode skips tests of passphrase-sealed key files, which FIPS
// mode refuses (TestFIPSRefusesSealedKeyFiles checks that).
func skipInFIPSMode(t *testing.T) {
	t.Helper()
	if fips140.Enabled() {
		t.Skip("passphrase-sealed key files are refused in FIPS 140-3 mode")
	}
}

// TestSealedFixture checks that the fixture is a valid sealed file, so
// that its refusal in FIPS mode is the mode's doing.
func TestSealedFixture(t *testing.T) {
	skipInFIPSMode(t)
	k, err := local.New(local.Config{Data: []byte(sealedFixture), Passphrase: []byte(sealedPassphrase)})
	require.NoError(t, err)
	assert.Equal(t, "local:sealed-fixture", k.KeyID())
}

// TestFIPSRefusesSealedKeyFiles runs in FIPS 140-3 mode only (CI's
// GODEBUG=fips140=only run, and TestFIPSRefusalInSubprocess): every way to
// make or open a passphrase-sealed key file fails with ErrNotApproved,
// and unsealed key files still work.
func TestFIPSRefusesSealedKeyFiles(t *testing.T) {
	if !fips140.Enabled() {
		t.Skip("needs FIPS 140-3 mode (GODEBUG=fips140=only); TestFIPSRefusalInSubprocess runs it so")
	}
	ctx := context.Background()
	dir := t.TempDir()
	opts := cheap
	opts.KeyID = "local:fips"
	opts.Passphrase = []byte(sealedPassphrase)

	_, err := local.Generate(opts)
	assert.ErrorIs(t, err, local.ErrNotApproved)
	path := filepath.Join(dir, "new.json")
	_, err = local.Create(path, opts)
	assert.ErrorIs(t, err, local.ErrNotApproved)
	assert.NoFileExists(t, path)

	for _, pass := range []string{sealedPassphrase, "wrong", ""} {
		_, err = local.New(local.Config{Data: []byte(sealedFixture), Passphrase: []byte(pass)})
		assert.ErrorIs(t, err, local.ErrNotApproved, "passphrase %q", pass)
	}
	sealed := filepath.Join(dir, "sealed.json")
	require.NoError(t, os.WriteFile(sealed, []byte(sealedFixture), 0o600))
	_, err = local.New(local.Config{Path: sealed, Passphrase: []byte(sealedPassphrase)})
	assert.ErrorIs(t, err, local.ErrNotApproved)
	_, err = local.Rotate(sealed, local.Options{Passphrase: []byte(sealedPassphrase)})
	assert.ErrorIs(t, err, local.ErrNotApproved)
	after, err := os.ReadFile(sealed)
	require.NoError(t, err)
	assert.Equal(t, sealedFixture, string(after), "Rotate left the file alone")

	t.Setenv("PHICRYPT_FIPS_KEK", sealedFixture)
	t.Setenv(local.DefaultPassphraseEnv, sealedPassphrase)
	_, err = kms.Open(ctx, "local:?env=PHICRYPT_FIPS_KEK", map[string]kms.Opener{local.Scheme: local.Open})
	assert.ErrorIs(t, err, local.ErrNotApproved)

	// Unsealed key files use AES-256-GCM only: they work.
	plain := filepath.Join(dir, "plain.json")
	k, err := local.Create(plain, local.Options{KeyID: "local:fips"})
	require.NoError(t, err)
	wk, err := k.Wrap(ctx, make([]byte, 32), []byte("aad"))
	require.NoError(t, err)
	k2, err := local.Rotate(plain, local.Options{})
	require.NoError(t, err)
	dek, err := k2.Unwrap(ctx, wk, []byte("aad"))
	require.NoError(t, err)
	assert.Len(t, dek, 32)
}

// TestFIPSRefusalInSubprocess runs TestFIPSRefusesSealedKeyFiles in a
// copy of the test binary under GODEBUG=fips140=only, so that a run
// outside FIPS mode checks the refusal too.
func TestFIPSRefusalInSubprocess(t *testing.T) {
	if fips140.Enabled() {
		t.Skip("FIPS mode is on: TestFIPSRefusesSealedKeyFiles runs directly")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^TestFIPSRefusesSealedKeyFiles$", "-test.v", "-test.count=1")
	godebug := "fips140=only"
	if v := os.Getenv("GODEBUG"); v != "" {
		godebug = v + "," + godebug
	}
	cmd.Env = append(os.Environ(), "GODEBUG="+godebug)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.True(t, strings.Contains(string(out), "--- PASS: TestFIPSRefusesSealedKeyFiles"), "the test ran and passed, not skipped:\n%s", out)
}
