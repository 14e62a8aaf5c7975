package fhir_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/fields/fhir"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

const testdata = "../../testdata/"

// bulkPatients is the 1,144-patient bulk export.
const bulkPatients = testdata + "fhir-synthea/bulk-1000/Patient.000.ndjson"

// Test index lengths: the files are small, so short indexes.
const testIndexBits = 8

// env is what a test needs: a keyring, a codec and encryptors over both
// envelope forms.
type env struct {
	kr      *keys.Keyring
	codec   *fields.Codec
	compact *fhir.Encryptor // envelope.Compact over the keyring
	self    *fhir.Encryptor // envelope.SelfContained over the KEK
}

func newKEK(t testing.TB) *local.KEK {
	t.Helper()
	data, err := local.Generate(local.Options{KeyID: "local:fhir-test"})
	require.NoError(t, err)
	kek, err := local.New(local.Config{Data: data})
	require.NoError(t, err)
	return kek
}

func newEnv(t testing.TB, mod func(*fhir.Config)) *env {
	t.Helper()
	kek := newKEK(t)
	kr, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore()})
	require.NoError(t, err)
	codec, err := fields.NewCodec(fields.Config{Keyring: kr})
	require.NoError(t, err)
	compact, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr, Encoding: envelope.Text})
	require.NoError(t, err)
	self, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, Encoding: envelope.Text})
	require.NoError(t, err)
	mk := func(c fhir.Cipher) *fhir.Encryptor {
		cfg := fhir.Config{
			Cipher:     c,
			Scope:      fhir.PatientScope("tenant:test"),
			Codec:      codec,
			Indexes:    []fhir.Index{fhir.SSNIndex(testIndexBits), fhir.MRNIndex(testIndexBits)},
			IndexScope: fhir.FixedScope("tenant:test"),
		}
		if mod != nil {
			mod(&cfg)
		}
		e, err := fhir.NewEncryptor(cfg)
		require.NoError(t, err)
		return e
	}
	return &env{kr: kr, codec: codec, compact: mk(compact), self: mk(self)}
}

// forms runs f with each envelope form.
func (v *env) forms(t *testing.T, f func(t *testing.T, e *fhir.Encryptor)) {
	t.Run("compact", func(t *testing.T) { f(t, v.compact) })
	t.Run("self-contained", func(t *testing.T) { f(t, v.self) })
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	return b
}

// lines returns the non-empty lines of an NDJSON file.
func lines(t testing.TB, name string) [][]byte {
	t.Helper()
	f, err := os.Open(name)
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var out [][]byte
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			out = append(out, bytes.Clone(sc.Bytes()))
		}
	}
	require.NoError(t, sc.Err())
	return out
}

// corpus is every test document: name → bytes.
func corpus(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, glob := range []string{"fhir-synthea/bundles/*.json", "fhir-hl7-examples/*-*.json"} {
		names, err := filepath.Glob(testdata + glob)
		require.NoError(t, err)
		require.NotEmpty(t, names)
		for _, n := range names {
			out[strings.TrimPrefix(n, testdata)] = readFile(t, n)
		}
	}
	for _, f := range []string{"bulk-1000/Patient.000.ndjson", "bulk-10/Patient.000.ndjson", "bulk-10/Condition.000.ndjson", "bulk-10/Encounter.000.ndjson"} {
		for i, l := range lines(t, testdata+"fhir-synthea/"+f) {
			out["fhir-synthea/"+f+":"+strconv.Itoa(i+1)] = l
		}
	}
	return out
}

// parse decodes a JSON document with encoding/json, numbers kept exact.
func parse(t testing.TB, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	require.NoError(t, d.Decode(&v))
	return v
}
