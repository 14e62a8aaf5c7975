package local_test

import (
	"bytes"
	"context"
	"crypto/fips140"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
	"github.com/phicrypt/phicrypt/kms/local"
)

// cheap keeps Argon2id fast in tests; production uses the defaults.
var cheap = local.Options{ArgonTime: 1, ArgonMemoryKiB: 64, ArgonThreads: 1}

func newKEK(t *testing.T, opts local.Options) (*local.KEK, []byte) {
	t.Helper()
	data, err := local.Generate(opts)
	require.NoError(t, err)
	k, err := local.New(local.Config{Data: data, Passphrase: opts.Passphrase})
	require.NoError(t, err)
	return k, data
}

func TestConformance(t *testing.T) {
	a, _ := newKEK(t, local.Options{})
	b, _ := newKEK(t, local.Options{})
	kmstest.Run(t, kmstest.Config{KEK: a, Other: b})
}

func TestConformanceSameKeyID(t *testing.T) {
	// Two different keys that carry the same key id (an operator mistake)
	// must still not unwrap each other's keys.
	a, _ := newKEK(t, local.Options{KeyID: "local:same"})
	b, _ := newKEK(t, local.Options{KeyID: "local:same"})
	kmstest.Run(t, kmstest.Config{KEK: a, Other: b})
}

func TestConformanceRotated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek.json")
	_, err := local.Create(path, local.Options{})
	require.NoError(t, err)
	rotated, err := local.Rotate(path, local.Options{})
	require.NoError(t, err)
	other, _ := newKEK(t, local.Options{})
	kmstest.Run(t, kmstest.Config{KEK: rotated, Other: other})
}

func TestCreateOpenRotate(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kek.json")
	k1, err := local.Create(path, local.Options{KeyID: "local:hospital"})
	require.NoError(t, err)
	assert.Equal(t, "local:hospital", k1.KeyID())
	assert.Equal(t, uint32(1), k1.Version())

	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())

	_, err = local.Create(path, local.Options{})
	assert.ErrorIs(t, err, fs.ErrExist, "Create must never overwrite a key file")

	dek := []byte("0123456789abcdef0123456789abcdef")
	old, err := k1.Wrap(ctx, dek, []byte("aad"))
	require.NoError(t, err)

	k2, err := local.Rotate(path, local.Options{})
	require.NoError(t, err)
	assert.Equal(t, uint32(2), k2.Version())
	assert.Equal(t, k1.KeyID(), k2.KeyID())

	reopened, err := local.New(local.Config{Path: path})
	require.NoError(t, err)
	assert.Equal(t, uint32(2), reopened.Version())
	got, err := reopened.Unwrap(ctx, old, []byte("aad"))
	require.NoError(t, err, "a rotated key file unwraps keys of older versions")
	assert.Equal(t, dek, got)

	fresh, err := reopened.Wrap(ctx, dek, nil)
	require.NoError(t, err)
	_, err = k1.Unwrap(ctx, fresh, nil)
	assert.ErrorIs(t, err, kms.ErrUnwrapFailed, "the old file does not hold version 2")

	_, err = local.Rotate(path, local.Options{KeyID: "local:other"})
	assert.ErrorIs(t, err, local.ErrInvalidKeyFile)
}

func TestPermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek.json")
	_, err := local.Create(path, local.Options{})
	require.NoError(t, err)
	for _, mode := range []fs.FileMode{0o640, 0o604, 0o660, 0o666} {
		require.NoError(t, os.Chmod(path, mode))
		_, err = local.New(local.Config{Path: path})
		assert.ErrorIs(t, err, local.ErrInsecurePermissions, "mode %04o", mode)
		_, err = local.Rotate(path, local.Options{})
		assert.ErrorIs(t, err, local.ErrInsecurePermissions, "mode %04o", mode)
	}
	require.NoError(t, os.Chmod(path, 0o400))
	_, err = local.New(local.Config{Path: path})
	assert.NoError(t, err)
}

func TestPassphrase(t *testing.T) {
	skipInFIPSMode(t)
	ctx := context.Background()
	opts := cheap
	opts.Passphrase = []byte("correct horse battery staple")
	k, data := newKEK(t, opts)
	assert.NotContains(t, string(data), `"keys"`, "a sealed file must not hold plain keys")

	wk, err := k.Wrap(ctx, make([]byte, 32), nil)
	require.NoError(t, err)

	_, err = local.New(local.Config{Data: data})
	assert.ErrorIs(t, err, local.ErrPassphraseRequired)
	_, err = local.New(local.Config{Data: data, Passphrase: []byte("wrong")})
	assert.ErrorIs(t, err, local.ErrWrongPassphrase)

	// Tampering with the key id or the kdf parameters breaks the seal.
	var f map[string]any
	require.NoError(t, json.Unmarshal(data, &f))
	f["key_id"] = "local:renamed"
	renamed, err := json.Marshal(f)
	require.NoError(t, err)
	_, err = local.New(local.Config{Data: renamed, Passphrase: opts.Passphrase})
	assert.ErrorIs(t, err, local.ErrWrongPassphrase)

	// Rotation keeps the seal and the old versions.
	path := filepath.Join(t.TempDir(), "kek.json")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	_, err = local.Rotate(path, local.Options{})
	assert.ErrorIs(t, err, local.ErrPassphraseRequired)
	rotated, err := local.Rotate(path, local.Options{Passphrase: opts.Passphrase})
	require.NoError(t, err)
	assert.Equal(t, uint32(2), rotated.Version())
	reopened, err := local.New(local.Config{Path: path, Passphrase: opts.Passphrase})
	require.NoError(t, err)
	_, err = reopened.Unwrap(ctx, wk, nil)
	assert.NoError(t, err)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.NotContains(t, string(raw), `"keys"`, "rotation must keep the file sealed")

	// A passphrase for an unsealed file is a mistake worth reporting.
	_, plain := newKEK(t, local.Options{})
	_, err = local.New(local.Config{Data: plain, Passphrase: []byte("x")})
	assert.ErrorIs(t, err, local.ErrInvalidKeyFile)
}

func TestEnv(t *testing.T) {
	ctx := context.Background()
	k, data := newKEK(t, local.Options{KeyID: "local:env"})
	wk, err := k.Wrap(ctx, make([]byte, 32), nil)
	require.NoError(t, err)
	for name, value := range map[string]string{
		"json":      string(data),
		"base64":    base64.StdEncoding.EncodeToString(data),
		"base64url": base64.RawURLEncoding.EncodeToString(data),
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("PHICRYPT_TEST_KEK", value)
			fromEnv, err := local.New(local.Config{Env: "PHICRYPT_TEST_KEK"})
			require.NoError(t, err)
			_, err = fromEnv.Unwrap(ctx, wk, nil)
			assert.NoError(t, err)
		})
	}
	t.Setenv("PHICRYPT_TEST_KEK", "")
	_, err = local.New(local.Config{Env: "PHICRYPT_TEST_KEK"})
	assert.ErrorIs(t, err, local.ErrInvalidKeyFile)
	t.Setenv("PHICRYPT_TEST_KEK", "%%% not base64")
	_, err = local.New(local.Config{Env: "PHICRYPT_TEST_KEK"})
	assert.ErrorIs(t, err, local.ErrInvalidKeyFile)
}

func TestConfigNeedsExactlyOneSource(t *testing.T) {
	_, data := newKEK(t, local.Options{})
	for _, cfg := range []local.Config{{}, {Path: "x", Data: data}, {Env: "X", Path: "y"}} {
		_, err := local.New(cfg)
		assert.ErrorIs(t, err, local.ErrInvalidKeyFile)
	}
}

func TestInvalidKeyFiles(t *testing.T) {
	_, good := newKEK(t, local.Options{KeyID: "local:x"})
	var f map[string]any
	require.NoError(t, json.Unmarshal(good, &f))
	mutate := func(change func(m map[string]any)) []byte {
		m := map[string]any{}
		b, _ := json.Marshal(f)
		_ = json.Unmarshal(b, &m)
		change(m)
		out, _ := json.Marshal(m)
		return out
	}
	keys := func(m map[string]any) []any { return m["keys"].([]any) }
	cases := map[string][]byte{
		"empty":    {},
		"not json": []byte("hello"),
		"trailing": append(append([]byte{}, good...), []byte(`{}`)...),
		// A closing brace or bracket after the file, and what follows it,
		// once passed the check for trailing data.
		"trailing brace":   append(append([]byte{}, good...), []byte(`}garbage`)...),
		"trailing bracket": append(append([]byte{}, good...), []byte(`]`)...),
		// encoding/json keeps the last of two members, and matches names
		// ignoring case: the first list of key versions would be dropped.
		"duplicate member": bytes.Replace(good, []byte(`"keys"`), []byte(`"KEYS":[],"keys"`), 1),
		"wrong format":     mutate(func(m map[string]any) { m["format"] = "other/v9" }),
		"bad key id":       mutate(func(m map[string]any) { m["key_id"] = "no scheme" }),
		"unknown field":    mutate(func(m map[string]any) { m["extra"] = 1 }),
		"no keys":          mutate(func(m map[string]any) { delete(m, "keys") }),
		"version zero":     mutate(func(m map[string]any) { keys(m)[0].(map[string]any)["version"] = 0 }),
		"short secret":     mutate(func(m map[string]any) { keys(m)[0].(map[string]any)["secret"] = "AAAA" }),
		"duplicate":        mutate(func(m map[string]any) { m["keys"] = append(keys(m), keys(m)[0]) }),
		"keys and kdf":     mutate(func(m map[string]any) { m["kdf"] = map[string]any{"algorithm": "argon2id"} }),
		"huge argon": mutate(func(m map[string]any) {
			delete(m, "keys")
			m["sealed"] = "AAAA"
			m["kdf"] = map[string]any{"algorithm": "argon2id", "salt": "AAAAAAAAAAAAAAAAAAAAAA==", "time": 1, "memory_kib": 1 << 30, "threads": 1}
		}),
		"wrong kdf name": mutate(func(m map[string]any) {
			delete(m, "keys")
			m["sealed"] = "AAAA"
			m["kdf"] = map[string]any{"algorithm": "scrypt", "salt": "AAAAAAAAAAAAAAAAAAAAAA==", "time": 1, "memory_kib": 64, "threads": 1}
		}),
	}
	for name, data := range cases {
		_, err := local.New(local.Config{Data: data})
		assert.ErrorIs(t, err, local.ErrInvalidKeyFile, name)
	}
}

func TestNoKeyMaterialInOutput(t *testing.T) {
	k, data := newKEK(t, local.Options{})
	var f struct {
		Keys []struct{ Secret []byte } `json:"keys"`
	}
	require.NoError(t, json.Unmarshal(data, &f))
	secret := f.Keys[0].Secret
	out, err := json.Marshal(k)
	require.NoError(t, err)
	for _, s := range []string{fmt.Sprintf("%v", k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k), fmt.Sprintf("%x", k), fmt.Sprintf("%s", k), string(out)} {
		for _, enc := range []string{string(secret), fmt.Sprintf("%x", secret), base64.StdEncoding.EncodeToString(secret), fmt.Sprint(secret)} {
			assert.NotContains(t, s, enc)
		}
	}
	// Errors about a malformed secret do not echo it.
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	m["keys"].([]any)[0].(map[string]any)["secret"] = 12345
	bad, _ := json.Marshal(m)
	_, err = local.New(local.Config{Data: bad})
	require.ErrorIs(t, err, local.ErrInvalidKeyFile)
	assert.NotContains(t, err.Error(), "12345")
}

func TestOpenURI(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kek.json")
	_, err := local.Create(path, local.Options{KeyID: "local:uri"})
	require.NoError(t, err)
	openers := map[string]kms.Opener{local.Scheme: local.Open}

	k, err := kms.Open(ctx, "local://"+path, openers)
	require.NoError(t, err)
	assert.Equal(t, "local:uri", k.(kms.Identifier).KeyID())

	if fips140.Enabled() {
		return // sealed key files are refused (TestFIPSRefusesSealedKeyFiles)
	}
	opts := cheap
	opts.Passphrase = []byte("pw")
	opts.KeyID = "local:env"
	data, err := local.Generate(opts)
	require.NoError(t, err)
	t.Setenv("PHICRYPT_TEST_KEK", string(data))
	_, err = kms.Open(ctx, "local:?env=PHICRYPT_TEST_KEK", openers)
	assert.ErrorIs(t, err, local.ErrPassphraseRequired)
	t.Setenv("MY_PASS", "pw")
	k, err = kms.Open(ctx, "local:?env=PHICRYPT_TEST_KEK&passphrase-env=MY_PASS", openers)
	require.NoError(t, err)
	assert.Equal(t, "local:env", k.(kms.Identifier).KeyID())

	for _, bad := range []string{"local:", "local://host/kek.json", "local:relative.json", "local:///x?env=Y",
		"local:///x?passphrase_env=Y", "local://user@/x", "local:///x?passphrase-env=A&passphrase-env=B"} {
		_, err = kms.Open(ctx, bad, openers)
		assert.ErrorIs(t, err, kms.ErrInvalidInput, bad)
	}
}

// Key file failures are *kms.Error values with the kms kinds, so callers
// branch on them as on any backend's; the local sentinels still match.
func TestFileErrorsAreKMSErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.json")
	_, err := local.New(local.Config{Path: missing})
	var kerr *kms.Error
	require.ErrorAs(t, err, &kerr)
	assert.Equal(t, "open", kerr.Op)
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)
	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.Contains(t, err.Error(), "local.Create", "the error says how to create a key file")

	u, err := url.Parse("local://" + missing)
	require.NoError(t, err)
	_, err = local.Open(context.Background(), u)
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)

	t.Setenv("PHICRYPT_TEST_KEK", "")
	_, err = local.New(local.Config{Env: "PHICRYPT_TEST_KEK"})
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)

	path := filepath.Join(dir, "kek.json")
	_, err = local.Create(path, local.Options{})
	require.NoError(t, err)
	_, err = local.Create(path, local.Options{})
	require.ErrorAs(t, err, &kerr)
	assert.Equal(t, "create", kerr.Op)
	assert.ErrorIs(t, err, kms.ErrInvalidInput)
	assert.ErrorIs(t, err, fs.ErrExist)

	require.NoError(t, os.Chmod(path, 0o644))
	_, err = local.New(local.Config{Path: path})
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)
	assert.ErrorIs(t, err, local.ErrInsecurePermissions)

	_, err = local.New(local.Config{Data: []byte("{}")})
	assert.ErrorIs(t, err, kms.ErrInvalidInput)
	assert.ErrorIs(t, err, local.ErrInvalidKeyFile)

	_, err = local.Rotate(missing, local.Options{})
	require.ErrorAs(t, err, &kerr)
	assert.Equal(t, "rotate", kerr.Op)
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)
}

func TestConfigAndOptionsHideSecrets(t *testing.T) {
	const passphrase = "correct-horse-battery-staple"
	_, data := newKEK(t, local.Options{})
	var f struct {
		Keys []struct{ Secret []byte } `json:"keys"`
	}
	require.NoError(t, json.Unmarshal(data, &f))
	secret := f.Keys[0].Secret
	cfg := local.Config{Data: data, Passphrase: []byte(passphrase)}
	opts := local.Options{KeyID: "local:test", Passphrase: []byte(passphrase)}

	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	logger.Info("open", "cfg", cfg, "opts", opts)
	logger.Info("open", "cfgs", []local.Config{cfg}, "opts", map[string]local.Options{"a": opts})
	var outs []string
	var jsonErrs []error
	for _, v := range []any{cfg, &cfg, opts, &opts, []local.Config{cfg}, map[string]local.Config{"a": cfg},
		struct{ C local.Config }{cfg}, []local.Options{opts}, struct{ O local.Options }{opts}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
		j, err := json.Marshal(v)
		jsonErrs = append(jsonErrs, err)
		outs = append(outs, string(j))
	}
	outs = append(outs, logs.String())
	for _, s := range outs {
		for _, enc := range []string{
			passphrase, fmt.Sprintf("%x", passphrase), fmt.Sprint([]byte(passphrase)), base64.StdEncoding.EncodeToString([]byte(passphrase)),
			string(secret), fmt.Sprintf("%x", secret), base64.StdEncoding.EncodeToString(secret), fmt.Sprint(secret),
			fmt.Sprint(data), fmt.Sprintf("%x", data[:40]), base64.StdEncoding.EncodeToString(data)[:40],
		} {
			require.NotContains(t, s, enc)
		}
	}
	for _, err := range jsonErrs {
		assert.NoError(t, err)
	}
	assert.Contains(t, fmt.Sprint(cfg), fmt.Sprintf("Data: %d bytes", len(data)))
	assert.Contains(t, fmt.Sprint(opts), `KeyID: "local:test"`)
}

func TestRotateAtLastVersionKeepsTheFile(t *testing.T) {
	ctx := context.Background()
	data, err := local.Generate(local.Options{KeyID: "local:last"})
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	m["keys"].([]any)[0].(map[string]any)["version"] = uint64(math.MaxUint32)
	data, err = json.Marshal(m)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "kek.json")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	k, err := local.New(local.Config{Path: path})
	require.NoError(t, err, "version 2^32-1 is a valid key version")
	wk, err := k.Wrap(ctx, make([]byte, 32), nil)
	require.NoError(t, err)

	_, err = local.Rotate(path, local.Options{})
	require.ErrorIs(t, err, local.ErrInvalidKeyFile, "no version follows 2^32-1")
	require.ErrorIs(t, err, kms.ErrInvalidInput)

	// The key file is untouched and still unwraps what it wrapped.
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, data, after)
	k, err = local.New(local.Config{Path: path})
	require.NoError(t, err)
	_, err = k.Unwrap(ctx, wk, nil)
	require.NoError(t, err)
}
