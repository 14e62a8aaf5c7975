//go:build cgo

package pkcs11_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/testsvc"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
	"github.com/phicrypt/phicrypt/kms/pkcs11"
)

// These tests run against a real SoftHSM2 token. testsvc.StartSoftHSM sets
// SOFTHSM2_CONF with t.Setenv, so they cannot be parallel, and each test
// closes its KEKs (finalizing the module) before its token is removed.

// startToken starts a token and checks, when the test ends, that every
// KEK was closed and the module finalized.
func startToken(t *testing.T) *testsvc.SoftHSM {
	t.Helper()
	h := testsvc.StartSoftHSM(t)
	t.Cleanup(func() {
		assert.Zero(t, pkcs11.LoadedModules(), "a KEK was not closed: the module is still initialized")
	})
	return h
}

func config(h *testsvc.SoftHSM, keyLabel string) pkcs11.Config {
	return pkcs11.Config{ModulePath: h.ModulePath, TokenLabel: h.TokenLabel, PIN: h.PIN, KeyLabel: keyLabel}
}

func generate(t *testing.T, cfg pkcs11.Config) uint32 {
	t.Helper()
	v, err := pkcs11.GenerateKey(context.Background(), cfg)
	require.NoError(t, err)
	return v
}

// open opens a KEK that is closed when the test ends.
func open(t *testing.T, cfg pkcs11.Config) *pkcs11.KEK {
	t.Helper()
	k, err := pkcs11.New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, k.Close()) })
	return k
}

func TestConformance(t *testing.T) {
	for _, mech := range []pkcs11.Mechanism{pkcs11.MechanismGCM, pkcs11.MechanismKWP} {
		t.Run(mech.String(), func(t *testing.T) {
			h := startToken(t)
			a, b := config(h, "kek-a"), config(h, "kek-b")
			a.Mechanism, b.Mechanism = mech, mech
			generate(t, a)
			generate(t, b)
			ka, kb := open(t, a), open(t, b)
			require.Equal(t, mech, ka.Mechanism())
			assert.Equal(t, "pkcs11:token=phicrypt-test;object=kek-a", ka.KeyID())
			kmstest.Run(t, kmstest.Config{KEK: ka, Other: kb, Concurrency: 32})
		})
	}
}

func TestAutoPrefersGCM(t *testing.T) {
	h := startToken(t)
	cfg := config(h, "kek")
	generate(t, cfg)
	k := open(t, cfg)
	assert.Equal(t, pkcs11.MechanismGCM, k.Mechanism(), "SoftHSM2 offers CKM_AES_GCM")
}

func TestRotation(t *testing.T) {
	ctx := context.Background()
	h := startToken(t)
	cfg := config(h, "kek")
	cfg.Mechanism = pkcs11.MechanismKWP
	require.Equal(t, uint32(1), generate(t, cfg))
	old := open(t, cfg)
	dek := bytes.Repeat([]byte{1}, 32)
	w1, err := old.Wrap(ctx, dek, []byte("aad"))
	require.NoError(t, err)

	// The next version uses GCM: a KEK unwraps either mechanism.
	cfg.Mechanism = pkcs11.MechanismAuto
	require.Equal(t, uint32(2), generate(t, cfg))
	require.Equal(t, uint32(3), generate(t, cfg))
	rotated := open(t, cfg)
	assert.Equal(t, uint32(3), rotated.Version())
	assert.Equal(t, pkcs11.MechanismGCM, rotated.Mechanism())
	assert.Equal(t, old.KeyID(), rotated.KeyID(), "versions share the key id")

	got, err := rotated.Unwrap(ctx, w1, []byte("aad"))
	require.NoError(t, err, "the rotated KEK unwraps version 1")
	assert.Equal(t, dek, got)

	w3, err := rotated.Wrap(ctx, dek, []byte("aad"))
	require.NoError(t, err)
	got, err = old.Unwrap(ctx, w3, []byte("aad"))
	require.NoError(t, err, "a KEK opened before the rotation finds version 3 on the token")
	assert.Equal(t, dek, got)
	assert.Equal(t, uint32(1), old.Version(), "but keeps wrapping with the version it opened")

	other := config(h, "other")
	generate(t, other)
	kmstest.Run(t, kmstest.Config{KEK: rotated, Other: open(t, other)})
}

func TestWrongPIN(t *testing.T) {
	h := startToken(t)
	cfg := config(h, "kek")
	generate(t, cfg)
	bad := cfg
	bad.PIN = "0000"
	_, err := pkcs11.New(context.Background(), bad)
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)
	assert.False(t, kms.IsTransient(err))
	assert.NotContains(t, err.Error(), h.PIN)

	// PKCS#11 login state belongs to the process: once a KEK is logged
	// in, a KEK with another PIN must still be refused.
	_ = open(t, cfg)
	_, err = pkcs11.New(context.Background(), bad)
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)
	_, err = pkcs11.GenerateKey(context.Background(), bad)
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)
}

func TestNotFound(t *testing.T) {
	ctx := context.Background()
	h := startToken(t)
	generate(t, config(h, "kek"))
	_, err := pkcs11.New(ctx, config(h, "missing"))
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)

	cfg := config(h, "kek")
	cfg.TokenLabel = "no-such-token"
	_, err = pkcs11.New(ctx, cfg)
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)

	slot := uint(424242)
	cfg.TokenLabel, cfg.Slot = "", &slot
	_, err = pkcs11.New(ctx, cfg)
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)

	// A version a wrapped key names but the token lacks looks like
	// tampering.
	k := open(t, config(h, "kek"))
	wk, err := k.Wrap(ctx, make([]byte, 32), nil)
	require.NoError(t, err)
	wk.Ciphertext[4] = 9
	_, err = k.Unwrap(ctx, wk, nil)
	assert.ErrorIs(t, err, kms.ErrUnwrapFailed)
}

func TestInvalidConfig(t *testing.T) {
	h := startToken(t)
	good := config(h, "kek")
	generate(t, good)
	slot := uint(0)
	for name, change := range map[string]func(*pkcs11.Config){
		"no module":        func(c *pkcs11.Config) { c.ModulePath = "" },
		"relative module":  func(c *pkcs11.Config) { c.ModulePath = "libsofthsm2.so" },
		"missing module":   func(c *pkcs11.Config) { c.ModulePath = "/nonexistent/libp11.so" },
		"token and slot":   func(c *pkcs11.Config) { c.Slot = &slot },
		"no PIN":           func(c *pkcs11.Config) { c.PIN = "" },
		"two PINs":         func(c *pkcs11.Config) { c.PINEnv = "X" },
		"no key label":     func(c *pkcs11.Config) { c.KeyLabel = "" },
		"versioned label":  func(c *pkcs11.Config) { c.KeyLabel = "kek.v2" },
		"bad key id":       func(c *pkcs11.Config) { c.KeyID = "no scheme" },
		"sessions":         func(c *pkcs11.Config) { c.MaxSessions = -1 },
		"mechanism":        func(c *pkcs11.Config) { c.Mechanism = 7 },
		"wrong mechanism":  func(c *pkcs11.Config) { c.Mechanism = pkcs11.MechanismKWP }, // the key is a GCM key
		"unset PIN env":    func(c *pkcs11.Config) { c.PIN, c.PINEnv = "", "PHICRYPT_TEST_UNSET_PIN" },
		"missing PIN file": func(c *pkcs11.Config) { c.PIN, c.PINFile = "", "/nonexistent/pin" },
	} {
		cfg := good
		change(&cfg)
		_, err := pkcs11.New(context.Background(), cfg)
		assert.ErrorIs(t, err, kms.ErrInvalidInput, name)
	}
}

func TestPINSources(t *testing.T) {
	ctx := context.Background()
	h := startToken(t)
	generate(t, config(h, "kek"))

	path := filepath.Join(t.TempDir(), "pin")
	require.NoError(t, os.WriteFile(path, []byte(h.PIN+"\n"), 0o600))
	cfg := config(h, "kek")
	cfg.PIN, cfg.PINFile = "", path
	open(t, cfg)

	require.NoError(t, os.Chmod(path, 0o644))
	_, err := pkcs11.New(ctx, cfg)
	assert.ErrorIs(t, err, kms.ErrInvalidInput, "a PIN file others can read is refused")

	t.Setenv("PHICRYPT_TEST_PIN", h.PIN)
	cfg.PINFile, cfg.PINEnv = "", "PHICRYPT_TEST_PIN"
	open(t, cfg)
}

func TestOpenURI(t *testing.T) {
	ctx := context.Background()
	h := startToken(t)
	generate(t, config(h, "kek one"))
	openers := map[string]kms.Opener{pkcs11.Scheme: pkcs11.Open}
	closeKEK := func(k kms.KEK) { require.NoError(t, k.(*pkcs11.KEK).Close()) }

	pinFile := filepath.Join(t.TempDir(), "pin")
	require.NoError(t, os.WriteFile(pinFile, []byte(h.PIN), 0o600))
	t.Setenv("PHICRYPT_TEST_PIN", h.PIN)
	t.Setenv(pkcs11.DefaultPINEnv, h.PIN)
	base := "pkcs11:token=phicrypt-test;object=kek%20one?module-path=" + h.ModulePath
	for _, uri := range []string{
		base,
		base + "&pin-source=file:" + pinFile,
		base + "&pin-source=file://" + pinFile,
		base + "&pin-source=" + pinFile,
		base + "&pin-source=env:PHICRYPT_TEST_PIN",
		"pkcs11:object=kek%20one;type=secret-key;token=phicrypt-test?module-path=" + h.ModulePath,
	} {
		k, err := kms.Open(ctx, uri, openers)
		require.NoError(t, err, uri)
		assert.Equal(t, "pkcs11:token=phicrypt-test;object=kek%20one", k.(kms.Identifier).KeyID())
		_, err = k.Wrap(ctx, make([]byte, 32), nil)
		assert.NoError(t, err)
		closeKEK(k)
	}

	for _, uri := range []string{
		base + "&pin-value=" + h.PIN,
		"pkcs11:token=phicrypt-test;object=kek%20one;id=%01?module-path=" + h.ModulePath,
		"pkcs11:token=phicrypt-test;object=kek%20one?module-name=softhsm2",
		"pkcs11:token=phicrypt-test;object=kek%20one",
		"pkcs11:token=phicrypt-test?module-path=" + h.ModulePath,
		"pkcs11:token=phicrypt-test;token=x;object=kek%20one?module-path=" + h.ModulePath,
		"pkcs11:token=phicrypt-test;object=kek%20one;type=private?module-path=" + h.ModulePath,
		"pkcs11:token=phicrypt-test;object=kek%zz?module-path=" + h.ModulePath,
		base + "&pin-source=https://example.org/pin",
		"pkcs11://host/path?module-path=" + h.ModulePath,
	} {
		_, err := kms.Open(ctx, uri, openers)
		assert.ErrorIs(t, err, kms.ErrInvalidInput, uri)
		if err != nil {
			assert.NotContains(t, err.Error(), "pin-value="+h.PIN, "errors must not show a PIN")
		}
	}

	t.Setenv(pkcs11.DefaultPINEnv, "0000")
	_, err := kms.Open(ctx, base, openers)
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)
}

func TestClose(t *testing.T) {
	ctx := context.Background()
	h := startToken(t)
	cfg := config(h, "kek")
	generate(t, cfg)
	a, err := pkcs11.New(ctx, cfg)
	require.NoError(t, err)
	b, err := pkcs11.New(ctx, cfg)
	require.NoError(t, err)
	wk, err := a.Wrap(ctx, make([]byte, 32), nil)
	require.NoError(t, err)

	require.NoError(t, a.Close())
	require.NoError(t, a.Close(), "Close is idempotent")
	_, err = a.Wrap(ctx, make([]byte, 32), nil)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	_, err = a.Unwrap(ctx, wk, nil)
	assert.ErrorIs(t, err, kms.ErrUnavailable)

	// b shares the module and the login, which a's Close must not end.
	assert.Equal(t, 1, pkcs11.LoadedModules())
	_, err = b.Unwrap(ctx, wk, nil)
	assert.NoError(t, err)
	require.NoError(t, b.Close())
	assert.Zero(t, pkcs11.LoadedModules(), "the last Close finalizes the module")
}

func TestConcurrentPool(t *testing.T) {
	ctx := context.Background()
	h := startToken(t)
	cfg := config(h, "kek")
	cfg.MaxSessions = 2
	generate(t, cfg)
	k := open(t, cfg)

	const goroutines, rounds = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				dek := bytes.Repeat([]byte{byte(g)}, 32)
				aad := fmt.Appendf(nil, "%d/%d", g, i)
				wk, err := k.Wrap(ctx, dek, aad)
				if err != nil {
					errs <- err
					return
				}
				got, err := k.Unwrap(ctx, wk, aad)
				if err != nil || !bytes.Equal(got, dek) {
					errs <- fmt.Errorf("goroutine %d round %d: %v", g, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	assert.LessOrEqual(t, pkcs11.OpenSessions(k), 2, "the pool is bounded")
}

func TestContext(t *testing.T) {
	h := startToken(t)
	cfg := config(h, "kek")
	cfg.MaxSessions = 1
	generate(t, cfg)
	k := open(t, cfg)

	// With the only session taken, a call waits for it until its
	// deadline.
	release := pkcs11.HoldSession(t, k)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := k.Wrap(ctx, make([]byte, 32), nil)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 2*time.Second)
	release()

	_, err = k.Wrap(context.Background(), make([]byte, 32), nil)
	assert.NoError(t, err)

	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = pkcs11.New(cctx, cfg)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestNoSecretsInOutput(t *testing.T) {
	h := startToken(t)
	cfg := config(h, "kek")
	cfg.PIN = "987654321"
	_, err := pkcs11.New(context.Background(), cfg)
	require.ErrorIs(t, err, kms.ErrPermissionDenied)
	assert.NotContains(t, fmt.Sprintf("%v %+v %#v", err, err, err), cfg.PIN)

	cfg.PIN = h.PIN
	generate(t, cfg)
	k := open(t, cfg)
	cfg.PIN = "987654321"
	js, err := json.Marshal(cfg)
	require.NoError(t, err)
	kjs, err := json.Marshal(k)
	require.NoError(t, err)
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "cfg", cfg, "kek", k)
	for _, s := range []string{
		fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%s", cfg), fmt.Sprintf("%x", cfg), string(js),
		fmt.Sprint(k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k), string(kjs), buf.String(),
	} {
		assert.NotContains(t, s, "987654321")
	}
	assert.Equal(t, `pkcs11.KEK{KeyID: "pkcs11:token=phicrypt-test;object=kek", Version: 1, Versions: 1, Mechanism: AES-GCM}`, k.String())
}

func TestOpenURIErrorsNeverShowAPIN(t *testing.T) {
	// No token needed: these URIs fail before the module is loaded. A PIN
	// given by mistake in the path part, or as the value of another
	// attribute, must not reach the error.
	ctx := context.Background()
	openers := map[string]kms.Opener{pkcs11.Scheme: pkcs11.Open}
	const pin = "987654"
	for _, uri := range []string{
		"pkcs11:token=phi;object=kek;pin-value=" + pin + "?module-path=/usr/lib/softhsm/libsofthsm2.so",
		"pkcs11:token=phi;object=kek;pin-value=" + pin,
		"pkcs11:token=phi;object=kek;pin=" + pin + "?module-path=/usr/lib/softhsm/libsofthsm2.so",
		"pkcs11:token=phi;object=kek;" + pin + "?module-path=/usr/lib/softhsm/libsofthsm2.so",
	} {
		_, err := kms.Open(ctx, uri, openers)
		require.ErrorIs(t, err, kms.ErrInvalidInput, uri)
		assert.NotContains(t, err.Error(), pin, uri)
		assert.Contains(t, err.Error(), "token=phi;object=kek", "the error still names the key")
	}
}
