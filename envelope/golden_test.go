package envelope_test

import (
	"context"
	"crypto/fips140"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/kms/local"
)

// Golden vectors freeze the wire format: every ciphertext in
// testdata/golden-v1.json must decrypt in every later version of phicrypt.
// The file is written once, by -golden.create, and never regenerated; a new
// format version gets a new file.
var createGolden = flag.Bool("golden.create", false, "write testdata/golden-v1.json if it does not exist")

const goldenPath = "testdata/golden-v1.json"

type goldenFile struct {
	Comment     string          `json:"comment"`
	KeyringSeed string          `json:"keyring_seed"`
	LocalKEK    json.RawMessage `json:"local_kek"`
	Vectors     []goldenVector  `json:"vectors"`
}

type goldenVector struct {
	Name       string        `json:"name"`
	Form       string        `json:"form"`
	Suite      string        `json:"suite"`
	Encoding   string        `json:"encoding"`
	KeyVersion uint32        `json:"key_version,omitempty"`
	Binding    goldenBinding `json:"binding"`
	Plaintext  string        `json:"plaintext_hex"`
	Ciphertext string        `json:"ciphertext"` // hex for binary, the armor for text
}

type goldenBinding struct {
	Scope    string            `json:"scope"`
	Table    string            `json:"table,omitempty"`
	Column   string            `json:"column,omitempty"`
	RecordID string            `json:"record_id,omitempty"`
	Extra    map[string]string `json:"extra,omitempty"`
}

func (g goldenBinding) binding() envelope.Binding {
	b := envelope.Binding{Scope: g.Scope, Table: g.Table, Column: g.Column, RecordID: g.RecordID}
	for k, v := range g.Extra {
		b.Extra = append(b.Extra, envelope.Attr{Key: k, Value: v})
	}
	return b
}

var suitesByName = map[string]envelope.Suite{
	envelope.AES256GCM.String():         envelope.AES256GCM,
	envelope.XChaCha20Poly1305.String(): envelope.XChaCha20Poly1305,
	envelope.AESSIV.String():            envelope.AESSIV,
}

func (v goldenVector) ciphertext(t testing.TB) []byte {
	if v.Encoding == "text" {
		return []byte(v.Ciphertext)
	}
	b, err := hex.DecodeString(v.Ciphertext)
	require.NoError(t, err)
	return b
}

// decrypter returns what decrypts v.
func (g *goldenFile) decrypter(t testing.TB, v goldenVector) (aeadUnderTest, error) {
	suite := suitesByName[v.Suite]
	if v.Form == "compact" {
		return envelope.NewCompact(envelope.CompactConfig{Keyring: newTestKeyring(g.KeyringSeed, suite)})
	}
	kek, err := local.New(local.Config{Data: g.LocalKEK})
	require.NoError(t, err)
	return envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek})
}

func loadGolden(t testing.TB) *goldenFile {
	t.Helper()
	data, err := os.ReadFile(goldenPath)
	require.NoError(t, err)
	var g goldenFile
	require.NoError(t, json.Unmarshal(data, &g))
	require.NotEmpty(t, g.Vectors)
	return &g
}

func TestGoldenVectors(t *testing.T) {
	if *createGolden {
		writeGolden(t)
	}
	ctx := context.Background()
	g := loadGolden(t)
	assert.Len(t, g.Vectors, 10, "golden vectors are never removed")
	for _, v := range g.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			suite, ok := suitesByName[v.Suite]
			require.True(t, ok, "unknown suite %q", v.Suite)
			ct := v.ciphertext(t)
			info, err := envelope.Inspect(ct)
			require.NoError(t, err)
			assert.Equal(t, v.Form, info.Form.String())
			assert.Equal(t, suite, info.Suite)
			assert.Equal(t, v.KeyVersion, info.KeyVersion)

			d, err := g.decrypter(t, v)
			require.NoError(t, err)
			got, err := d.Decrypt(ctx, ct, v.Binding.binding())
			if fips140.Enabled() && suite != envelope.AES256GCM {
				assert.ErrorIs(t, err, envelope.ErrNotApproved)
				return
			}
			require.NoError(t, err)
			want, err := hex.DecodeString(v.Plaintext)
			require.NoError(t, err)
			assert.Equal(t, want, got)

			// Binding is part of the frozen format too.
			moved := v.Binding.binding()
			moved.RecordID += "x"
			_, err = d.Decrypt(ctx, ct, moved)
			assert.ErrorIs(t, err, envelope.ErrDecrypt)
		})
	}
}

// writeGolden creates the golden file. It refuses to overwrite it.
func writeGolden(t *testing.T) {
	if _, err := os.Stat(goldenPath); err == nil {
		t.Fatalf("%s exists: golden vectors are frozen; a new format version needs a new file", goldenPath)
	}
	ctx := context.Background()
	kekFile, err := local.Generate(local.Options{KeyID: "local:golden-v1"})
	require.NoError(t, err)
	kek, err := local.New(local.Config{Data: kekFile})
	require.NoError(t, err)
	g := goldenFile{
		Comment:     "phicrypt format v1 golden vectors. FROZEN: never edit or regenerate; every later version must decrypt these. The keys here are test keys.",
		KeyringSeed: "phicrypt golden v1 keyring seed",
		LocalKEK:    kekFile,
	}
	b := goldenBinding{Scope: "tenant:st-mary", Table: "patients", Column: "ssn", RecordID: "e3a0ccfb-0f63-4d9b-9d6b-2c6a9a1f0b01"}
	withExtra := b
	withExtra.Extra = map[string]string{"fhir-path": "Patient.identifier.where(type.coding.code='SS').value", "purpose": "treatment"}
	fhir := `{"resourceType":"Patient","name":[{"family":"MacGyver246","given":["Lemuel304"]}],"birthDate":"1972-03-14"}`
	type spec struct {
		name, form string
		suite      envelope.Suite
		enc        envelope.Encoding
		version    uint32
		b          goldenBinding
		pt         string
	}
	for _, s := range []spec{
		{"compact-aes256gcm-binary-empty", "compact", envelope.AES256GCM, envelope.Binary, 1, b, ""},
		{"compact-aes256gcm-text-ssn", "compact", envelope.AES256GCM, envelope.Text, 1, b, "999-12-3456"},
		{"compact-aes256gcm-binary-64-extras-v2", "compact", envelope.AES256GCM, envelope.Binary, 2, withExtra, strings.Repeat("Lemuel304 ", 6) + "MacG"},
		{"compact-aes256gcm-text-unicode-v3", "compact", envelope.AES256GCM, envelope.Text, 3, b, "Ñúñez-Zoë 山田 Ωmega"},
		{"compact-xchacha20poly1305-binary", "compact", envelope.XChaCha20Poly1305, envelope.Binary, 1, b, "1972-03-14"},
		{"compact-aessiv-text", "compact", envelope.AESSIV, envelope.Text, 1, b, "999-12-3456"},
		{"selfcontained-aes256gcm-binary-fhir", "self-contained", envelope.AES256GCM, envelope.Binary, 0, b, fhir},
		{"selfcontained-aes256gcm-text", "self-contained", envelope.AES256GCM, envelope.Text, 0, b, "MRN-0042"},
		{"selfcontained-xchacha20poly1305-text", "self-contained", envelope.XChaCha20Poly1305, envelope.Text, 0, withExtra, "Peggie783 Howell947"},
		{"selfcontained-aes256gcm-binary-1000-extras", "self-contained", envelope.AES256GCM, envelope.Binary, 0, withExtra, strings.Repeat("0123456789", 100)},
	} {
		var e aeadUnderTest
		if s.form == "compact" {
			kr := newTestKeyring(g.KeyringSeed, s.suite)
			kr.active = s.version
			e, err = envelope.NewCompact(envelope.CompactConfig{Keyring: kr, Encoding: s.enc})
		} else {
			e, err = envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, Suite: s.suite, Encoding: s.enc})
		}
		require.NoError(t, err)
		ct, err := e.Encrypt(ctx, []byte(s.pt), s.b.binding())
		require.NoError(t, err)
		v := goldenVector{Name: s.name, Form: s.form, Suite: s.suite.String(), KeyVersion: s.version, Binding: s.b, Plaintext: hex.EncodeToString([]byte(s.pt))}
		if s.enc == envelope.Text {
			v.Encoding, v.Ciphertext = "text", string(ct)
		} else {
			v.Encoding, v.Ciphertext = "binary", hex.EncodeToString(ct)
		}
		g.Vectors = append(g.Vectors, v)
	}
	out, err := json.MarshalIndent(g, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(goldenPath), 0o755))
	require.NoError(t, os.WriteFile(goldenPath, append(out, '\n'), 0o644))
}

// goldenCiphertexts returns every golden ciphertext in both encodings, for
// fuzz seeds and the non-malleability check.
func goldenCiphertexts(t testing.TB, g *goldenFile) [][]byte {
	var out [][]byte
	for _, v := range g.Vectors {
		ct := v.ciphertext(t)
		if v.Encoding == "text" {
			bin, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(string(ct), envelope.ArmorPrefix))
			require.NoError(t, err)
			out = append(out, ct, bin)
		} else {
			out = append(out, ct, []byte(envelope.ArmorPrefix+base64.RawURLEncoding.EncodeToString(ct)))
		}
	}
	return out
}
