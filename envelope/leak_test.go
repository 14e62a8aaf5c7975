package envelope_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/internal/kdf"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
	"github.com/phicrypt/phicrypt/kms/local"
)

const canary = "CANARY-PHI 999-88-7777 Lemuel304 MacGyver246"

// encodings returns the ways a secret could show up in text.
func encodings(secret []byte) []string {
	out := []string{
		string(secret),
		hex.EncodeToString(secret),
		strings.ToUpper(hex.EncodeToString(secret)),
		base64.StdEncoding.EncodeToString(secret),
		base64.RawStdEncoding.EncodeToString(secret),
		base64.RawURLEncoding.EncodeToString(secret),
		fmt.Sprint(secret),
		fmt.Sprintf("%#v", secret),
	}
	// Expanded key schedules print as 32-bit words.
	for i := 0; i+4 <= len(secret) && i < 8; i += 4 {
		out = append(out, strconv.FormatUint(uint64(binary.BigEndian.Uint32(secret[i:])), 10))
		out = append(out, strconv.FormatUint(uint64(binary.LittleEndian.Uint32(secret[i:])), 10))
	}
	return out
}

// renderings returns v formatted every way a program might log it.
func renderings(v any) []string {
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		out = append(out, fmt.Sprintf(verb, v))
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "v", v)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("m", "v", v)
	out = append(out, buf.String())
	if j, err := json.Marshal(v); err == nil {
		out = append(out, string(j))
	}
	return out
}

// TestLeakCanary formats every exported type and every error the package
// produces, and checks that neither the plaintext nor any key (the KEK, the
// data keys, their derived subkeys) nor a whole ciphertext appears.
func TestLeakCanary(t *testing.T) {
	ctx := context.Background()
	kekFile, err := local.Generate(local.Options{KeyID: "local:canary"})
	require.NoError(t, err)
	var f struct{ Keys []struct{ Secret []byte } }
	require.NoError(t, json.Unmarshal(kekFile, &f))
	kek, err := local.New(local.Config{Data: kekFile})
	require.NoError(t, err)

	kr := newTestKeyring("canary", envelope.AES256GCM)
	raw := kr.rawKey(patientBinding.Scope, 1)
	sub, err := kdf.Key(raw, kdf.LabelAEAD+"\x01", 32)
	require.NoError(t, err)
	secrets := [][]byte{[]byte(canary), f.Keys[0].Secret, raw, sub}

	compact, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr, Encoding: envelope.Text})
	require.NoError(t, err)
	instrumented := kmstest.Instrument(kek)
	sc, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: instrumented})
	require.NoError(t, err)

	ct1, err := compact.Encrypt(ctx, []byte(canary), patientBinding)
	require.NoError(t, err)
	ct2, err := sc.Encrypt(ctx, []byte(canary), patientBinding)
	require.NoError(t, err)
	_, err = sc.Decrypt(ctx, ct2, patientBinding) // fill the decrypt cache
	require.NoError(t, err)
	dek, err := kr.EncryptionKey(ctx, patientBinding.Scope)
	require.NoError(t, err)
	info, err := envelope.Inspect(ct1)
	require.NoError(t, err)
	wk, err := kek.Wrap(ctx, raw, nil)
	require.NoError(t, err)

	objects := []any{dek, *dek, compact, *compact, sc, *sc, kek, *kek, instrumented, patientBinding, info, wk}

	// Errors from every failure path, given the real ciphertexts.
	moved := patientBinding
	moved.RecordID = "other"
	for _, c := range [][]byte{ct1, ct2} {
		_, e1 := compact.Decrypt(ctx, c, moved)
		_, e2 := sc.Decrypt(ctx, c, moved)
		damaged := bytes.Clone(c)
		damaged[len(damaged)/2] ^= 1
		_, e3 := compact.Decrypt(ctx, damaged, patientBinding)
		_, e4 := sc.Decrypt(ctx, damaged, patientBinding)
		_, e5 := compact.Decrypt(ctx, c[:12], patientBinding)
		objects = append(objects, e1, e2, e3, e4, e5)
	}
	_, e6 := kek.Unwrap(ctx, kms.WrappedKey{KeyID: wk.KeyID, Ciphertext: wk.Ciphertext[:20]}, []byte(canary))
	_, e7 := kek.Wrap(ctx, []byte(canary+canary+canary), nil)
	_, e8 := compact.Encrypt(ctx, []byte(canary), envelope.Binding{})
	_, e9 := local.New(local.Config{Data: bytes.Replace(kekFile, []byte(`"version"`), []byte(`"v"`), 1)})
	objects = append(objects, e6, e7, e8, e9)

	for i, obj := range objects {
		for _, r := range renderings(obj) {
			for _, s := range secrets {
				for _, enc := range encodings(s) {
					require.NotContains(t, r, enc, "object %d (%T) leaks a secret", i, obj)
				}
			}
			for _, c := range [][]byte{ct1, ct2} {
				assert.NotContains(t, r, string(c[len(envelope.ArmorPrefix):]), "object %d (%T) shows a ciphertext", i, obj)
				assert.NotContains(t, r, hex.EncodeToString(c[len(c)-16:]), "object %d (%T) shows a ciphertext", i, obj)
			}
		}
	}
}
