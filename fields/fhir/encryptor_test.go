package fhir_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields/fhir"
)

// profile returns a one-type profile.
func profile(typ string, paths ...string) *fhir.Profile {
	return &fhir.Profile{Name: "test", Resources: map[string][]string{typ: paths}}
}

// armoredPaths returns the locations of the ciphertexts of a document.
func armoredPaths(t *testing.T, doc []byte) []string {
	t.Helper()
	var out []string
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch x := v.(type) {
		case obj:
			for k, y := range x {
				walk(y, join(path, k))
			}
		case []any:
			for i, y := range x {
				walk(y, idx(path, i))
			}
		case string:
			if strings.HasPrefix(x, envelope.ArmorPrefix) {
				out = append(out, path)
			}
		}
	}
	walk(parse(t, doc), "")
	return out
}

// TestValueTypes encrypts values of every JSON type, whole objects and
// arrays' elements: each becomes a string, and decryption restores the
// same bytes (numbers keep their digits, objects their layout).
func TestValueTypes(t *testing.T) {
	ctx := context.Background()
	doc := []byte(`{
  "resourceType": "Observation", "id": "o1",
  "valueQuantity": {"value": 1.50, "unit": "mmol/L"},
  "component": [
    {"valueInteger": -0, "valueBoolean": false},
    {"valueDecimal": 6.02e23, "valueString": "caf\u00e9 \"quoted\"", "valueNull": null},
    {"valueCodeableConcept": {"coding": [ {"code": "x"} ] ,"text":"t"}}
  ],
  "note": [{"text": "a"}, {"text": "b"}]
}`)
	v := newEnv(t, func(c *fhir.Config) {
		c.Profile = profile("Observation", "valueQuantity", "component.value[x]", "note")
	})
	v.forms(t, func(t *testing.T, e *fhir.Encryptor) {
		out, err := e.Encrypt(ctx, doc)
		require.NoError(t, err)
		assert.ElementsMatch(t, []string{
			"valueQuantity", "component[0].valueInteger", "component[0].valueBoolean",
			"component[1].valueDecimal", "component[1].valueString", "component[2].valueCodeableConcept",
			"note[0]", "note[1]",
		}, armoredPaths(t, out), "nulls stay null; everything else is a ciphertext")
		assert.Contains(t, string(out), `"valueNull": null`)
		back, err := e.Decrypt(ctx, out)
		require.NoError(t, err)
		assert.Equal(t, string(doc), string(back))
	})
}

// TestKeyOrder: everything outside the encrypted values keeps its bytes,
// white space and member order included.
func TestKeyOrder(t *testing.T) {
	ctx := context.Background()
	doc := []byte("{\"resourceType\":\"Patient\" ,\n\t\"zeta\": 1, \"id\":\"p\",\"birthDate\" :  \"1990-01-01\"  , \"alpha\":[ 2 ,3 ]}\r\n")
	v := newEnv(t, func(c *fhir.Config) { c.Profile = profile("Patient", "birthDate") })
	out, err := v.compact.Encrypt(ctx, doc)
	require.NoError(t, err)
	i := bytes.Index(out, []byte(envelope.ArmorPrefix))
	j := i + bytes.IndexByte(out[i:], '"')
	assert.Equal(t, string(doc[:bytes.Index(doc, []byte("1990"))]), string(out[:i]), "bytes before the value")
	assert.Equal(t, "\"  , \"alpha\":[ 2 ,3 ]}\r\n", string(out[j:]), "bytes after the value")
}

// TestCompanions: a primitive's extensions (_birthDate, _given[i]) are
// encrypted with it: they may hold the birth time or a name part.
func TestCompanions(t *testing.T) {
	ctx := context.Background()
	doc := []byte(`{"resourceType":"Patient","id":"p",
 "birthDate":"1974-12-25","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1974-12-25T14:35:45-05:00"}]},
 "name":[{"given":["Peter",null,"Jim"],"_given":[null,{"id":"g2"},{"extension":[{"url":"x","valueString":"nick"}]}]}],
 "gender":"male","_gender":{"extension":[{"url":"y","valueCode":"A"}]}}`)
	v := newEnv(t, nil)
	out, err := v.compact.Encrypt(ctx, doc)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"birthDate", "_birthDate", "name[0].given[0]", "name[0].given[2]", "name[0]._given[1]", "name[0]._given[2]"},
		armoredPaths(t, out), "_given[1] goes with the null given[1]; _gender stays with gender")
	back, err := v.compact.Decrypt(ctx, out)
	require.NoError(t, err)
	assert.Equal(t, string(doc), string(back))
}

// TestPadding: values are padded inside the ciphertext, so lengths do not
// tell "Mr." from "Mrs."; Padding 1 turns it off.
func TestPadding(t *testing.T) {
	ctx := context.Background()
	doc := func(prefix string) []byte {
		return []byte(`{"resourceType":"Patient","id":"p","name":[{"prefix":["` + prefix + `"]}]}`)
	}
	for _, tc := range []struct {
		padding int
		same    bool
	}{{0, true}, {16, true}, {1, false}} {
		v := newEnv(t, func(c *fhir.Config) { c.Padding = tc.padding })
		a, err := v.compact.Encrypt(ctx, doc("Mr."))
		require.NoError(t, err)
		b, err := v.compact.Encrypt(ctx, doc("Mrs."))
		require.NoError(t, err)
		assert.Equal(t, tc.same, len(a) == len(b), "padding %d", tc.padding)
		back, err := v.compact.Decrypt(ctx, b)
		require.NoError(t, err)
		assert.Equal(t, string(doc("Mrs.")), string(back))
	}
	for _, bad := range []int{-1, 4097} {
		_, err := fhir.NewEncryptor(fhir.Config{Cipher: newEnvCipher(t), Scope: fhir.FixedScope("s"), Padding: bad})
		assert.ErrorContains(t, err, "Padding")
	}
}

func newEnvCipher(t *testing.T) fhir.Cipher {
	sc, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: newKEK(t), Encoding: envelope.Text})
	require.NoError(t, err)
	return sc
}

// TestBinaryCipher: a Cipher that writes the binary encoding still gives
// armored strings.
func TestBinaryCipher(t *testing.T) {
	ctx := context.Background()
	sc, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: newKEK(t), Encoding: envelope.Binary})
	require.NoError(t, err)
	e, err := fhir.NewEncryptor(fhir.Config{Cipher: sc, Scope: fhir.FixedScope("tenant:t")})
	require.NoError(t, err)
	doc := lines(t, bulkPatients)[3]
	out, err := e.Encrypt(ctx, doc)
	require.NoError(t, err)
	assert.True(t, json.Valid(out))
	assert.NotEmpty(t, armoredPaths(t, out))
	back, err := e.Decrypt(ctx, out)
	require.NoError(t, err)
	assert.Equal(t, string(doc), string(back))
}

// TestBundleEntriesStandAlone: each entry of a Bundle is bound to its own
// resource, so an entry taken out of the Bundle (as a server does with a
// transaction) decrypts on its own; contained resources are bound to
// their container.
func TestBundleEntriesStandAlone(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	doc := readFile(t, testdata+"fhir-synthea/bundles/packt1k_Peggie783_Howell947_7c747494.json")
	v.forms(t, func(t *testing.T, e *fhir.Encryptor) {
		out, err := e.Encrypt(ctx, doc)
		require.NoError(t, err)
		var enc, plain struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		require.NoError(t, json.Unmarshal(out, &enc))
		require.NoError(t, json.Unmarshal(doc, &plain))
		for i, entry := range enc.Entry {
			back, err := e.Decrypt(ctx, entry.Resource)
			require.NoError(t, err, "entry %d", i)
			assert.JSONEq(t, string(plain.Entry[i].Resource), string(back), "entry %d", i)
		}
	})
}

func TestContained(t *testing.T) {
	ctx := context.Background()
	doc := []byte(`{"resourceType":"ExplanationOfBenefit","id":"eob1","patient":{"reference":"Patient/p1"},
 "contained":[{"resourceType":"Coverage","id":"coverage","subscriberId":"W123","beneficiary":{"reference":"Patient/p1","display":"Jane Roe"}},
              {"resourceType":"Patient","id":"inner","name":[{"family":"Roe"}]}]}`)
	v := newEnv(t, nil)
	out, err := v.compact.Encrypt(ctx, doc)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"contained[0].subscriberId", "contained[0].beneficiary.display", "contained[1].name[0].family"},
		armoredPaths(t, out), "each contained resource gets its own type's paths")
	back, err := v.compact.Decrypt(ctx, out)
	require.NoError(t, err)
	assert.Equal(t, string(doc), string(back))

	// A contained resource's values are bound to the container: the
	// contained resource alone does not decrypt.
	var eob struct{ Contained []json.RawMessage }
	require.NoError(t, json.Unmarshal(out, &eob))
	_, err = v.compact.Decrypt(ctx, eob.Contained[1])
	assert.Error(t, err)
}

// TestScopes: the Scope function sees the resource's type, id and patient
// reference; PatientScope gives each patient a key of its own.
func TestScopes(t *testing.T) {
	ctx := context.Background()
	var seen []fhir.Resource
	v := newEnv(t, func(c *fhir.Config) {
		scope := c.Scope
		c.Scope = func(r fhir.Resource) (string, error) {
			seen = append(seen, r)
			return scope(r)
		}
		c.Indexes = nil
	})
	docs := []string{
		`{"resourceType":"Patient","id":"p1","birthDate":"2000-01-01"}`,
		`{"resourceType":"Encounter","id":"e1","subject":{"reference":"Patient/p1","display":"A B"}}`,
		`{"resourceType":"Claim","id":"c1","patient":{"reference":"urn:uuid:p2","display":"C D"}}`,
		`{"resourceType":"Observation","id":"o1","subject":{"reference":"Group/g1","display":"G"}}`,
		`{"resourceType":"Practitioner","id":"pr1","text":{"div":"<div>Dr</div>"}}`,
	}
	for _, d := range docs {
		_, err := v.compact.Encrypt(ctx, []byte(d))
		require.NoError(t, err)
	}
	assert.Equal(t, []fhir.Resource{
		{Type: "Patient", ID: "p1", Patient: "p1"},
		{Type: "Encounter", ID: "e1", Patient: "p1"},
		{Type: "Claim", ID: "c1", Patient: "p2"},
		{Type: "Observation", ID: "o1"},
		{Type: "Practitioner", ID: "pr1"},
	}, seen)
	s, err := fhir.PatientScope("tenant:a")(seen[1])
	require.NoError(t, err)
	assert.Equal(t, "tenant:a/patient/p1", s)
	s, err = fhir.PatientScope("tenant:a")(seen[4])
	require.NoError(t, err)
	assert.Equal(t, "tenant:a", s)

	// A reference the profile encrypts does not choose the scope (it
	// could not at decryption).
	seen = nil
	v2 := newEnv(t, func(c *fhir.Config) {
		c.Profile = profile("Encounter", "subject.reference")
		c.Scope = func(r fhir.Resource) (string, error) { seen = append(seen, r); return "tenant:x", nil }
		c.Indexes = nil
	})
	out, err := v2.compact.Encrypt(ctx, []byte(docs[1]))
	require.NoError(t, err)
	_, err = v2.compact.Decrypt(ctx, out)
	require.NoError(t, err)
	assert.Equal(t, []fhir.Resource{{Type: "Encounter", ID: "e1"}, {Type: "Encounter", ID: "e1"}}, seen)

	failing := newEnv(t, func(c *fhir.Config) {
		c.Scope = func(fhir.Resource) (string, error) { return "", errors.New("no tenant") }
	})
	_, err = failing.compact.Encrypt(ctx, []byte(docs[0]))
	var ee *fhir.ElementError
	require.ErrorAs(t, err, &ee)
	assert.ErrorContains(t, err, "no tenant")
}

func TestEncryptErrors(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	e := v.compact
	for _, tc := range []struct {
		doc  string
		want error
		path string
	}{
		{`[]`, fhir.ErrNotResource, ""},
		{`{"id":"x"}`, fhir.ErrNotResource, ""},
		{`{"resourceType":1}`, fhir.ErrNotResource, ""},
		{`{"resourceType":"Patient","birthDate":"1990-01-01"}`, fhir.ErrMissingID, "Patient"},
		{`{"resourceType":"Patient","id":7,"birthDate":"1990-01-01"}`, fhir.ErrMissingID, "Patient"},
		{`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","birthDate":"1990-01-01"}}]}`, fhir.ErrMissingID, "Bundle.entry[0].resource"},
		{`{"resourceType":"Bundle","entry":[{"resource":{"id":"x"}}]}`, fhir.ErrNotResource, "Bundle.entry[0].resource"},
		{`{"resourceType":"Patient","id":"p","gender":"phicrypt:AAAA"}`, fhir.ErrEncryptedInput, "Patient.gender"},
		{`{"resourceType":"Patient","id":"p","extension":[{"url":"` + fhir.IndexExtensionURL + `"}]}`, fhir.ErrEncryptedInput, "Patient"},
		{`{"resourceType":"Patient","id":"p","extension":{"url":"x"},"identifier":[{"type":{"coding":[{"code":"MR"}]},"value":"1"}]}`, fhir.ErrNotResource, "Patient.extension"},
		{`{"resourceType":"Patient",`, fhir.ErrSyntax, ""},
	} {
		_, err := e.Encrypt(ctx, []byte(tc.doc))
		require.ErrorIs(t, err, tc.want, tc.doc)
		if tc.path != "" {
			var ee *fhir.ElementError
			require.ErrorAs(t, err, &ee, tc.doc)
			assert.Equal(t, tc.path, ee.Path, tc.doc)
		}
	}
	// A resource without id is fine when nothing in it is encrypted (a
	// transaction Bundle has none).
	out, err := e.Encrypt(ctx, []byte(`{"resourceType":"Bundle","type":"transaction","entry":[]}`))
	require.NoError(t, err)
	assert.Equal(t, `{"resourceType":"Bundle","type":"transaction","entry":[]}`, string(out))

	// Values above the envelope's limit fail by name.
	small, err := envelope.NewCompact(envelope.CompactConfig{Keyring: v.kr, Encoding: envelope.Text, MaxPlaintextSize: 64})
	require.NoError(t, err)
	es, err := fhir.NewEncryptor(fhir.Config{Cipher: small, Scope: fhir.FixedScope("t")})
	require.NoError(t, err)
	_, err = es.Encrypt(ctx, []byte(`{"resourceType":"Patient","id":"p","text":{"div":"`+strings.Repeat("x", 100)+`"}}`))
	assert.ErrorIs(t, err, envelope.ErrTooLarge)
	assert.ErrorContains(t, err, "Patient.text.div")
}

// TestDecryptStrict: a profile element holding plaintext is refused unless
// AllowPlaintext is set, so that a ciphertext swapped for a plaintext
// value is not trusted.
func TestDecryptStrict(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	doc := lines(t, bulkPatients)[1]
	out, err := v.compact.Encrypt(ctx, doc)
	require.NoError(t, err)
	i := bytes.Index(out, []byte(`"birthDate":"`)) + len(`"birthDate":`)
	j := i + 1 + bytes.IndexByte(out[i+1:], '"') + 1
	forged := append(append(append([]byte(nil), out[:i]...), `"1900-01-01"`...), out[j:]...)
	_, err = v.compact.Decrypt(ctx, forged)
	require.ErrorIs(t, err, fhir.ErrNotEncrypted)
	require.ErrorIs(t, err, envelope.ErrNotEncrypted)
	var ee *fhir.ElementError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, "Patient.birthDate", ee.Path)

	lax := newEnv(t, func(c *fhir.Config) { c.AllowPlaintext = true })
	plain, err := lax.compact.Decrypt(ctx, doc)
	require.NoError(t, err, "a plaintext document decrypts to itself")
	assert.Equal(t, string(doc), string(plain))
}

func TestConfigErrors(t *testing.T) {
	c := newEnvCipher(t)
	v := newEnv(t, nil)
	for _, tc := range []struct {
		cfg  fhir.Config
		want string
	}{
		{fhir.Config{Scope: fhir.FixedScope("s")}, "Cipher"},
		{fhir.Config{Cipher: c}, "Scope"},
		{fhir.Config{Cipher: c, Scope: fhir.FixedScope("s"), Profile: profile("Patient", "name..")}, "invalid path"},
		{fhir.Config{Cipher: c, Scope: fhir.FixedScope("s"), Indexes: []fhir.Index{fhir.SSNIndex(8)}}, "Codec"},
		{fhir.Config{Cipher: c, Scope: fhir.FixedScope("s"), Codec: v.codec, Indexes: []fhir.Index{fhir.SSNIndex(8)}}, "IndexScope"},
		{fhir.Config{Cipher: c, Scope: fhir.FixedScope("s"), Codec: v.codec, IndexScope: fhir.FixedScope("s"),
			Indexes: []fhir.Index{fhir.SSNIndex(8), fhir.SSNIndex(8)}}, "two indexes"},
		{fhir.Config{Cipher: c, Scope: fhir.FixedScope("s"), Codec: v.codec, IndexScope: fhir.FixedScope("s"),
			Indexes: []fhir.Index{fhir.SSNIndex(0)}}, "invalid IndexSpec"},
		{fhir.Config{Cipher: c, Scope: fhir.FixedScope("s"), Codec: v.codec, IndexScope: fhir.FixedScope("s"),
			Indexes: []fhir.Index{{Name: "a b", Resource: "Patient", Path: "x", Spec: fhir.SSNIndex(8).Spec}}}, "index name"},
		{fhir.Config{Cipher: c, Scope: fhir.FixedScope("s"), Codec: v.codec, IndexScope: fhir.FixedScope("s"),
			Indexes: []fhir.Index{{Name: "a", Resource: "patient", Path: "x", Spec: fhir.SSNIndex(8).Spec}}}, "not a resource type"},
		{fhir.Config{Cipher: c, Scope: fhir.FixedScope("s"), Codec: v.codec, IndexScope: fhir.FixedScope("s"),
			Indexes: []fhir.Index{{Name: "a", Resource: "Patient", Path: "Encounter.x", Spec: fhir.SSNIndex(8).Spec}}}, "another resource type"},
	} {
		_, err := fhir.NewEncryptor(tc.cfg)
		assert.ErrorContains(t, err, tc.want)
	}
}

// TestChoiceExtensions: name[x] matches every type name, digits included
// (valueBase64Binary), and selects the primitive extensions of a choice
// element without its value (_deceasedDateTime, _valueString), which
// stayed in clear.
func TestChoiceExtensions(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	for doc, want := range map[string][]string{
		`{"resourceType":"Patient","id":"p1","extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName","valueBase64Binary":"U0VDUkVU"}]}`:                                        {"extension[0].valueBase64Binary"},
		`{"resourceType":"Patient","id":"p1","_deceasedDateTime":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/originalText","valueString":"SECRET"}]}}`:                                       {"_deceasedDateTime"},
		`{"resourceType":"Observation","id":"o1","code":{"coding":[{"code":"56799-0"}]},"_valueString":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/originalText","valueString":"SECRET"}]}}`: {"_valueString"},
	} {
		out, err := v.compact.Encrypt(ctx, []byte(doc))
		require.NoError(t, err)
		assert.Equal(t, want, armoredPaths(t, out), doc)
		back, err := v.compact.Decrypt(ctx, out)
		require.NoError(t, err)
		assert.Equal(t, doc, string(back))

		// Decrypt expects them encrypted.
		_, err = v.compact.Decrypt(ctx, []byte(doc))
		assert.ErrorIs(t, err, fhir.ErrNotEncrypted, doc)
	}
}
