package envelope_test

import (
	"bytes"
	"context"
	"crypto/fips140"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
)

// classify returns the kind of a decryption failure, or "" if err is not one
// of the kinds a damaged ciphertext may produce.
func classify(err error) string {
	var fe *envelope.FormatError
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, envelope.ErrDecrypt):
		return "decrypt"
	case errors.As(err, &fe):
		return "format"
	case errors.Is(err, envelope.ErrNotEncrypted):
		return "not-encrypted"
	case errors.Is(err, envelope.ErrKeyNotFound):
		return "key-not-found"
	case errors.Is(err, envelope.ErrNotApproved) && fips140.Enabled():
		return "not-approved"
	}
	return ""
}

// TestTamperMatrix flips every bit of, and truncates at every length,
// ciphertexts of 0, 1, 64 and 4096-byte plaintexts in both forms and both
// encodings. Every variant must fail with a typed error, never succeed and
// never panic; damage to the body must be an authentication failure.
func TestTamperMatrix(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	for name, f := range forms(t, kek) {
		text := strings.HasSuffix(name, "text")
		for _, n := range []int{0, 1, 64, 4096} {
			t.Run(fmt.Sprintf("%s/%d", name, n), func(t *testing.T) {
				pt := bytes.Repeat([]byte{0x5a}, n)
				ct, err := f.Encrypt(ctx, pt, patientBinding)
				require.NoError(t, err)
				hdrEnd := len(ct) // binary: where the header ends
				if !text {
					info, err := envelope.Inspect(ct)
					require.NoError(t, err)
					hdrEnd = len(ct) - info.PlaintextSize - 28
				}
				kinds := map[string]int{}
				try := func(what string, variant []byte, bodyOffset bool) {
					got, err := f.Decrypt(ctx, variant, patientBinding)
					k := classify(err)
					kinds[k]++
					if k == "" || k == "success" {
						t.Fatalf("%s: got %v (%q), want a typed failure", what, err, k)
					}
					assert.Nil(t, got, what)
					if bodyOffset {
						assert.Equal(t, "decrypt", k, "%s: damage to the body must fail authentication", what)
					}
				}
				for i := range ct {
					for bit := 0; bit < 8; bit++ {
						v := bytes.Clone(ct)
						v[i] ^= 1 << bit
						try(fmt.Sprintf("flip byte %d bit %d", i, bit), v, !text && i >= hdrEnd)
					}
				}
				for l := 0; l < len(ct); l++ {
					try(fmt.Sprintf("truncate to %d", l), bytes.Clone(ct[:l]), !text && l >= hdrEnd+28)
				}
				for _, extra := range []string{"\x00", "A", "AAAA", "=", "\n"} {
					try(fmt.Sprintf("append %q", extra), append(bytes.Clone(ct), extra...), false)
				}
				assert.Positive(t, kinds["decrypt"])
				t.Logf("failure kinds: %v", kinds)
			})
		}
	}
}

// TestArmoredIsNeverPlaintext gives the decrypters values that begin with
// the armor prefix but are not armored ciphertexts, and an armored value
// to DecryptStream: each is malformed (a *FormatError), never
// ErrNotEncrypted, which callers may take as a legacy plaintext to let
// through.
func TestArmoredIsNeverPlaintext(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	s, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, Encoding: envelope.Text})
	require.NoError(t, err)
	c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: newTestKeyring("armor", envelope.AES256GCM)})
	require.NoError(t, err)
	for _, in := range []string{
		envelope.ArmorPrefix,
		envelope.ArmorPrefix + base64.RawURLEncoding.EncodeToString([]byte("999-12-3456")),
	} {
		var fe *envelope.FormatError
		_, err := s.Decrypt(ctx, []byte(in), patientBinding)
		assert.ErrorAs(t, err, &fe, "SelfContained.Decrypt(%q)", in)
		assert.NotErrorIs(t, err, envelope.ErrNotEncrypted)
		_, err = c.Decrypt(ctx, []byte(in), patientBinding)
		assert.ErrorAs(t, err, &fe, "Compact.Decrypt(%q)", in)
		assert.NotErrorIs(t, err, envelope.ErrNotEncrypted)
		_, err = envelope.Inspect([]byte(in))
		assert.ErrorAs(t, err, &fe, "Inspect(%q)", in)
		assert.NotErrorIs(t, err, envelope.ErrNotEncrypted)
	}

	v, err := s.Encrypt(ctx, []byte("999-12-3456"), patientBinding)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(v), envelope.ArmorPrefix))
	for _, in := range [][]byte{v, v[:len(envelope.ArmorPrefix)], v[:5]} {
		_, err = s.DecryptStream(ctx, bytes.NewReader(in), patientBinding)
		if len(in) >= len(envelope.ArmorPrefix) {
			assert.ErrorIs(t, err, envelope.ErrWrongForm, "an armored value is not a stream")
		} else {
			assert.ErrorIs(t, err, envelope.ErrNotEncrypted, "a prefix of the prefix is just bytes")
		}
	}
}
