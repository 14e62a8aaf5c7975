package fhir_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/fields/fhir"
)

// indexedPatient is how a backend that also keeps patients in a table
// declares the same indexes as SSNIndex and MRNIndex: table "Patient",
// index columns ssn_index and mrn_index, same bits and normalizers.
type indexedPatient struct {
	ID       string            `phi:"id,table=Patient"`
	Tenant   string            `phi:"scope"`
	SSN      fields.String     `phi:"encrypt"`
	MRN      fields.String     `phi:"encrypt"`
	SSNIndex fields.BlindIndex `phi:"index,of=SSN,normalize=digits,bits=8"`
	MRNIndex fields.BlindIndex `phi:"index,of=MRN,normalize=trim,bits=8"`
}

// TestIndexesMatchStructTags: the blind indexes written into each of the
// 1,144 bulk Patients equal what the struct-tag indexes of the fields
// package compute for the same SSN and MRN.
func TestIndexesMatchStructTags(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	v.forms(t, func(t *testing.T, e *fhir.Encryptor) {
		for i, doc := range lines(t, bulkPatients) {
			out, err := e.Encrypt(ctx, doc)
			require.NoError(t, err)
			idx, err := fhir.ReadIndexes(out)
			require.NoError(t, err)
			require.Len(t, idx, 2, "line %d: one SSN, one MRN", i+1)
			p := parse(t, doc).(obj)
			rec := &indexedPatient{ID: p["id"].(string), Tenant: "tenant:test"}
			for _, id := range p["identifier"].([]any) {
				id := id.(obj)
				switch code := typeCode(id); code {
				case "SS":
					rec.SSN = fields.New(id["value"].(string))
				case "MR":
					rec.MRN = fields.New(id["value"].(string))
				}
			}
			require.NoError(t, v.codec.Seal(ctx, rec))
			assert.Equal(t, fhir.IndexValue{ResourceType: "Patient", ID: rec.ID, Name: "ssn", Value: rec.SSNIndex}.ID, idx[0].ID)
			assert.Equal(t, "ssn", idx[0].Name)
			assert.True(t, idx[0].Value.Equal(rec.SSNIndex), "line %d: SSN index", i+1)
			assert.Equal(t, "mrn", idx[1].Name)
			assert.True(t, idx[1].Value.Equal(rec.MRNIndex), "line %d: MRN index", i+1)
			if i >= 200 && testing.Short() {
				break
			}
		}
	})
}

func typeCode(id obj) string {
	typ, _ := id["type"].(obj)
	codings, _ := typ["coding"].([]any)
	for _, c := range codings {
		if code, ok := c.(obj)["code"].(string); ok {
			return code
		}
	}
	return ""
}

// TestSearchBySSN finds a patient in an encrypted NDJSON export by SSN
// written another way, through Terms.
func TestSearchBySSN(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	e := v.compact
	var encrypted [][]byte
	for _, doc := range lines(t, bulkPatients)[:300] {
		out, err := e.Encrypt(ctx, doc)
		require.NoError(t, err)
		encrypted = append(encrypted, out)
	}
	target := parse(t, lines(t, bulkPatients)[123]).(obj)["id"].(string)
	var ssn string
	for _, id := range parse(t, lines(t, bulkPatients)[123]).(obj)["identifier"].([]any) {
		if typeCode(id.(obj)) == "SS" {
			ssn = id.(obj)["value"].(string)
		}
	}
	terms, err := e.Terms(ctx, "tenant:test", "ssn", " "+strings.ReplaceAll(ssn, "-", " ")+" ")
	require.NoError(t, err)
	require.Len(t, terms, 1)
	// The extension holds the base64 of the index's bytes.
	val, err := terms[0].Value()
	require.NoError(t, err)
	needle := base64.StdEncoding.EncodeToString(val.([]byte))
	var candidates []string
	for _, out := range encrypted {
		if strings.Contains(string(out), `"url":"ssn","valueBase64Binary":"`+needle+`"`) {
			idx, err := fhir.ReadIndexes(out)
			require.NoError(t, err)
			candidates = append(candidates, idx[0].ID)
		}
	}
	assert.Contains(t, candidates, target, "the patient is among the candidates")
	assert.Less(t, len(candidates), 20, "an 8-bit index over 300 patients narrows the search")

	_, err = e.Terms(ctx, "tenant:test", "nope", "1")
	assert.ErrorContains(t, err, "no index")
}

// TestIndexExtensionPlacement: the extension is appended to an existing
// extension array, or added as a member after the last one; Decrypt
// removes it byte for byte, and leaves other extensions alone.
func TestIndexExtensionPlacement(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	mr := `"identifier":[{"type":{"coding":[{"code":"MR"}]},"value":"M1"}]`
	for _, doc := range []string{
		`{"resourceType":"Patient","id":"p",` + mr + `}`,
		`{"resourceType":"Patient","id":"p",` + mr + `,"extension":[{"url":"x","valueString":"y"}]}`,
		`{"resourceType":"Patient","id":"p",` + mr + "\n , \"extension\" : [ {\"url\":\"x\"} ]\r\n}",
		`{"resourceType":"Patient","id":"p","gender":"other"}`, // nothing to index
	} {
		out, err := v.compact.Encrypt(ctx, []byte(doc))
		require.NoError(t, err)
		idx, err := fhir.ReadIndexes(out)
		require.NoError(t, err)
		assert.Equal(t, strings.Contains(doc, "MR"), len(idx) == 1, doc)
		back, err := v.compact.Decrypt(ctx, out)
		require.NoError(t, err)
		assert.Equal(t, doc, string(back))
	}

	// FHIR JSON has no empty arrays; Decrypt could not tell an index
	// extension added to an empty one from one added with its member.
	_, err := v.compact.Encrypt(ctx, []byte(`{"resourceType":"Patient","id":"p","extension":[],`+mr+`}`))
	assert.ErrorIs(t, err, fhir.ErrNotResource)

	// Index extensions placed by hand anywhere in the array go too.
	ext := `{"url":"` + fhir.IndexExtensionURL + `","extension":[{"url":"mrn","valueBase64Binary":"AQI="}]}`
	for doc, want := range map[string]string{
		`{"resourceType":"Patient","id":"p","extension":[` + ext + `,{"url":"a"},` + ext + `,{"url":"b"},` + ext + `]}`: `{"resourceType":"Patient","id":"p","extension":[{"url":"a"},{"url":"b"}]}`,
		`{"resourceType":"Patient","extension":[` + ext + `,` + ext + `],"id":"p"}`:                                     `{"resourceType":"Patient","id":"p"}`,
	} {
		back, err := v.compact.Decrypt(ctx, []byte(doc))
		require.NoError(t, err)
		assert.JSONEq(t, want, string(back))
	}

	_, err = fhir.ReadIndexes([]byte(`{"resourceType":"Patient","extension":[{"url":"` + fhir.IndexExtensionURL +
		`","extension":[{"url":"mrn","valueBase64Binary":"not base64!"}]}]}`))
	var ee *fhir.ElementError
	assert.ErrorAs(t, err, &ee)
}

// TestIndexInsideWholeValue: a resource that the profile encrypts whole
// (a Bundle's entries) gets no index extension, which would be inserted
// inside its ciphertext; Encrypt used to panic on the overlapping edits.
func TestIndexInsideWholeValue(t *testing.T) {
	ctx := context.Background()
	p := fhir.USCore()
	p.Resources["Bundle"] = []string{"entry"}
	e := newEnv(t, func(c *fhir.Config) { c.Profile = p }).compact
	doc := `{"resourceType":"Bundle","id":"b1","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"p1",` +
		`"identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"123-45-6789"}]}}]}`
	var out []byte
	require.NotPanics(t, func() {
		var err error
		out, err = e.Encrypt(ctx, []byte(doc))
		require.NoError(t, err)
	})
	assert.NotContains(t, string(out), "123-45-6789")
	idx, err := fhir.ReadIndexes(out)
	require.NoError(t, err)
	assert.Empty(t, idx)
	back, err := e.Decrypt(ctx, out)
	require.NoError(t, err)
	assert.Equal(t, doc, string(back))
}
