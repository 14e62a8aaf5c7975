package envelope_test

import (
	"bytes"
	"context"
	"crypto/fips140"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/kms/local"
)

// The stream golden vectors freeze the stream form (0x03) of format
// version 1: every stream in testdata/golden-stream-v1.json must decrypt in
// every later version. Like golden-v1.json, the file is written once, by
// -golden.create, and never regenerated.
const goldenStreamPath = "testdata/golden-stream-v1.json"

type goldenStreamFile struct {
	Comment  string               `json:"comment"`
	LocalKEK json.RawMessage      `json:"local_kek"`
	Vectors  []goldenStreamVector `json:"vectors"`
}

type goldenStreamVector struct {
	Name        string        `json:"name"`
	Suite       string        `json:"suite"`
	SegmentSize int           `json:"segment_size"`
	Segments    int           `json:"segments"`
	Binding     goldenBinding `json:"binding"`
	Plaintext   string        `json:"plaintext_hex"`
	Ciphertext  string        `json:"ciphertext_hex"`
}

func (v goldenStreamVector) plaintext(t testing.TB) []byte {
	b, err := hex.DecodeString(v.Plaintext)
	require.NoError(t, err)
	return b
}

func (v goldenStreamVector) ciphertext(t testing.TB) []byte {
	b, err := hex.DecodeString(v.Ciphertext)
	require.NoError(t, err)
	return b
}

func loadGoldenStream(t testing.TB) *goldenStreamFile {
	t.Helper()
	data, err := os.ReadFile(goldenStreamPath)
	require.NoError(t, err)
	var g goldenStreamFile
	require.NoError(t, json.Unmarshal(data, &g))
	require.NotEmpty(t, g.Vectors)
	return &g
}

// decrypter returns a SelfContained that decrypts the file's streams. Its
// own suite and segment size are the defaults: a stream's header says
// which it uses.
func (g *goldenStreamFile) decrypter(t testing.TB) *envelope.SelfContained {
	kek, err := local.New(local.Config{Data: g.LocalKEK})
	require.NoError(t, err)
	s, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek})
	require.NoError(t, err)
	return s
}

// decryptAll decrypts a whole stream held in memory.
func decryptAll(ctx context.Context, s *envelope.SelfContained, ct []byte, b envelope.Binding) ([]byte, error) {
	r, err := s.DecryptStream(ctx, bytes.NewReader(ct), b)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func TestGoldenStreamVectors(t *testing.T) {
	if *createGolden {
		writeGoldenStream(t)
	}
	ctx := context.Background()
	g := loadGoldenStream(t)
	assert.Len(t, g.Vectors, 9, "golden vectors are never removed")
	s := g.decrypter(t)
	for _, v := range g.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			suite, ok := suitesByName[v.Suite]
			require.True(t, ok, "unknown suite %q", v.Suite)
			ct := v.ciphertext(t)
			info, err := envelope.Inspect(ct)
			require.NoError(t, err)
			assert.Equal(t, envelope.StreamForm, info.Form)
			assert.Equal(t, suite, info.Suite)
			assert.Equal(t, v.SegmentSize, info.SegmentSize)
			assert.Equal(t, -1, info.PlaintextSize)
			assert.Equal(t, "local:golden-stream-v1", info.KEKID)

			got, err := decryptAll(ctx, s, ct, v.Binding.binding())
			if fips140.Enabled() && suite != envelope.AES256GCM {
				assert.ErrorIs(t, err, envelope.ErrNotApproved)
				return
			}
			require.NoError(t, err)
			want := v.plaintext(t)
			assert.Equal(t, want, got)
			// The layout the vector claims: segments of the stated size.
			nonce := map[envelope.Suite]int{envelope.AES256GCM: 12, envelope.XChaCha20Poly1305: 24}[suite]
			assert.Equal(t, len(ct)-len(want)-v.Segments*(nonce+16), streamHeaderSize(t, ct))
			assert.Equal(t, max(1, (len(want)+v.SegmentSize-1)/v.SegmentSize), v.Segments)

			moved := v.Binding.binding()
			moved.RecordID += "x"
			_, err = decryptAll(ctx, s, ct, moved)
			assert.ErrorIs(t, err, envelope.ErrDecrypt)
		})
	}
}

// streamHeaderSize returns the size of the header of stream ct, read from
// its KEK id and wrapped key lengths (the layout in the package doc).
func streamHeaderSize(t testing.TB, ct []byte) int {
	require.Greater(t, len(ct), 6)
	k := int(ct[4])<<8 | int(ct[5])
	require.Greater(t, len(ct), 8+k)
	w := int(ct[6+k])<<8 | int(ct[7+k])
	return 8 + k + w + 32 + 4 + 32
}

// writeGoldenStream creates the stream golden file. It refuses to
// overwrite it.
func writeGoldenStream(t *testing.T) {
	if _, err := os.Stat(goldenStreamPath); err == nil {
		t.Fatalf("%s exists: golden vectors are frozen; a new format version needs a new file", goldenStreamPath)
	}
	ctx := context.Background()
	kekFile, err := local.Generate(local.Options{KeyID: "local:golden-stream-v1"})
	require.NoError(t, err)
	kek, err := local.New(local.Config{Data: kekFile})
	require.NoError(t, err)
	g := goldenStreamFile{
		Comment:  "phicrypt format v1 stream form (0x03) golden vectors. FROZEN: never edit or regenerate; every later version must decrypt these. The keys here are test keys.",
		LocalKEK: kekFile,
	}
	b := goldenBinding{Scope: "tenant:st-mary", Table: "document_reference", Column: "content", RecordID: "0b7f4a7e-31c6-4d38-9a55-5f0f6b0e2c11"}
	withExtra := b
	withExtra.Extra = map[string]string{"content-type": "application/pdf", "fhir-path": "DocumentReference.content.attachment.data"}
	note := strings.Repeat("Discharge summary: Lemuel304 MacGyver246, DOB 1972-03-14, MRN-0042. Stable, follow up in 2 weeks. ", 40)
	type spec struct {
		name    string
		suite   envelope.Suite
		segment int
		b       goldenBinding
		n       int
	}
	// One SelfContained per suite and segment size: streams of one scope
	// share its data key, each with its own salt.
	type config struct {
		suite   envelope.Suite
		segment int
	}
	encrypters := map[config]*envelope.SelfContained{}
	for _, s := range []spec{
		{"stream-aes256gcm-empty", envelope.AES256GCM, 256, b, 0},
		{"stream-aes256gcm-one-segment", envelope.AES256GCM, 256, b, 100},
		{"stream-aes256gcm-one-full-segment", envelope.AES256GCM, 256, b, 256},
		{"stream-aes256gcm-two-full-segments", envelope.AES256GCM, 256, b, 512},
		{"stream-aes256gcm-three-segments-extras", envelope.AES256GCM, 256, withExtra, 600},
		{"stream-aes256gcm-segment-1000", envelope.AES256GCM, 1000, b, 2500},
		{"stream-aes256gcm-default-segment", envelope.AES256GCM, 0, b, 10},
		{"stream-xchacha20poly1305-empty", envelope.XChaCha20Poly1305, 256, b, 0},
		{"stream-xchacha20poly1305-three-segments-extras", envelope.XChaCha20Poly1305, 256, withExtra, 700},
	} {
		e := encrypters[config{s.suite, s.segment}]
		if e == nil {
			e, err = envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, Suite: s.suite, StreamSegmentSize: s.segment})
			require.NoError(t, err)
			encrypters[config{s.suite, s.segment}] = e
		}
		pt := []byte(note[:s.n])
		var ct bytes.Buffer
		w, err := e.EncryptStream(ctx, &ct, s.b.binding())
		require.NoError(t, err)
		_, err = w.Write(pt)
		require.NoError(t, err)
		require.NoError(t, w.Close())
		segment := s.segment
		if segment == 0 {
			segment = envelope.DefaultStreamSegmentSize
		}
		g.Vectors = append(g.Vectors, goldenStreamVector{
			Name:        s.name,
			Suite:       s.suite.String(),
			SegmentSize: segment,
			Segments:    max(1, (s.n+segment-1)/segment),
			Binding:     s.b,
			Plaintext:   hex.EncodeToString(pt),
			Ciphertext:  hex.EncodeToString(ct.Bytes()),
		})
	}
	out, err := json.MarshalIndent(g, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(goldenStreamPath), 0o755))
	require.NoError(t, os.WriteFile(goldenStreamPath, append(out, '\n'), 0o644))
}
