package fhir_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields/fhir"
	"github.com/phicrypt/phicrypt/keys"
)

var arrayIndex = regexp.MustCompile(`\[[0-9]+\]`)

// expectedReport computes, from an encrypted document alone, the report
// that its encryption must give: the ciphertexts' paths per resource type
// without array indexes, and the resources without a ciphertext.
func expectedReport(t *testing.T, enc []byte) fhir.Report {
	t.Helper()
	var r fhir.Report
	add := func(typ string) *fhir.TypeReport {
		if r.Types == nil {
			r.Types = map[string]*fhir.TypeReport{}
		}
		if r.Types[typ] == nil {
			r.Types[typ] = &fhir.TypeReport{Paths: map[string]int64{}}
		}
		return r.Types[typ]
	}
	var resource func(res obj)
	resource = func(res obj) {
		typ := res["resourceType"].(string)
		tr := add(typ)
		tr.Resources++
		own := obj{}
		for k, v := range res {
			if k != "contained" && (k != "entry" || typ != "Bundle") {
				own[k] = v
			}
		}
		b, err := json.Marshal(own)
		require.NoError(t, err)
		paths := armoredPaths(t, b)
		if len(paths) == 0 {
			tr.Untouched++
		}
		for _, p := range paths {
			tr.Paths[arrayIndex.ReplaceAllString(p, "")]++
		}
		if c, ok := res["contained"].([]any); ok {
			for _, x := range c {
				resource(x.(obj))
			}
		}
		if e, ok := res["entry"].([]any); ok && typ == "Bundle" {
			for _, x := range e {
				resource(x.(obj)["resource"].(obj))
			}
		}
	}
	resource(parse(t, enc).(obj))
	return r
}

// TestReport: the report lists, per resource type, the paths of the
// values encrypted and the resources left untouched, as the output shows
// them; decryption reports the same; a failure adds nothing.
func TestReport(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	docs := map[string][]byte{
		"patient": readFile(t, testdata+"fhir-hl7-examples/Patient-example.json"),
		"bundle":  readFile(t, testdata+"fhir-synthea/bundles/packt1k_Lemuel304_MacGyver246_e3a0ccfb.json"),
		"contained": []byte(`{"resourceType":"Observation","id":"o","subject":{"reference":"Patient/p","display":"Ann"},
			"contained":[{"resourceType":"Patient","id":"c","name":[{"family":"F","given":["A","B"]}]},{"resourceType":"Organization","id":"g"}]}`),
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			var rep fhir.Report
			enc, err := v.compact.AppendEncryptReport(ctx, nil, doc, &rep)
			require.NoError(t, err)
			want := expectedReport(t, enc)
			assert.Equal(t, want, rep)
			assert.NotEmpty(t, rep.Types["Patient"].Paths["name.family"])

			var dec fhir.Report
			_, err = v.compact.AppendDecryptReport(ctx, nil, enc, &dec)
			require.NoError(t, err)
			assert.Equal(t, rep, dec, "decryption reports what encryption did")

			before, _ := json.Marshal(rep)
			_, err = v.compact.AppendEncryptReport(ctx, nil, enc, &rep)
			require.ErrorIs(t, err, fhir.ErrEncryptedInput)
			after, _ := json.Marshal(rep)
			assert.JSONEq(t, string(before), string(after), "a failure adds nothing")
		})
	}
	var bundle fhir.Report
	_, err := v.compact.AppendEncryptReport(ctx, nil, docs["bundle"], &bundle)
	require.NoError(t, err)
	assert.NotContains(t, bundle.Untouched(), "Patient")
	assert.Equal(t, int64(1), bundle.Untouched()["Bundle"])
	assert.Equal(t, []string{"AllergyIntolerance", "Bundle", "CarePlan", "CareTeam", "Claim", "Condition", "Coverage", "Device",
		"DiagnosticReport", "DocumentReference", "Encounter", "ExplanationOfBenefit", "ImagingStudy", "Immunization",
		"MedicationRequest", "Observation", "Patient", "Procedure", "Provenance", "ServiceRequest"}, bundle.TypeNames())
}

// TestReportAdd: Add sums reports.
func TestReportAdd(t *testing.T) {
	a := fhir.Report{Types: map[string]*fhir.TypeReport{"Patient": {Resources: 1, Paths: map[string]int64{"name.family": 2}}}}
	b := fhir.Report{Types: map[string]*fhir.TypeReport{
		"Patient":      {Resources: 2, Untouched: 1, Paths: map[string]int64{"name.family": 1, "birthDate": 1}},
		"Organization": {Resources: 1, Untouched: 1, Unknown: 1, Paths: map[string]int64{}},
	}}
	var sum fhir.Report
	sum.Add(&a)
	sum.Add(&b)
	sum.Add(nil)
	assert.Equal(t, fhir.TypeReport{Resources: 3, Untouched: 1, Paths: map[string]int64{"name.family": 3, "birthDate": 1}}, *sum.Types["Patient"])
	assert.Equal(t, fhir.TypeReport{Resources: 1, Untouched: 1, Unknown: 1, Paths: map[string]int64{}}, *sum.Types["Organization"])
	assert.Equal(t, int64(2), a.Types["Patient"].Paths["name.family"], "Add leaves its argument alone")
}

// TestNDJSONReport: a stream's report is the sum of its lines' reports,
// whatever the number of workers.
func TestNDJSONReport(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	in := mixedNDJSON(t)
	var want fhir.Report
	for _, l := range bytes.Split(bytes.TrimSuffix(in, []byte("\n")), []byte("\n")) {
		_, err := v.compact.AppendEncryptReport(ctx, nil, l, &want)
		require.NoError(t, err)
	}
	for _, workers := range []int{1, 4} {
		var got fhir.Report
		var enc bytes.Buffer
		_, err := v.compact.EncryptNDJSON(ctx, &enc, bytes.NewReader(in), fhir.NDJSONOptions{Workers: workers, Report: &got})
		require.NoError(t, err)
		assert.Equal(t, want, got, "workers %d", workers)
		assert.Equal(t, int64(1144+4), got.Types["Patient"].Resources)
	}
}

// TestNDJSONReject: with Reject, one shredded patient, one damaged line
// and one overlong line do not stop a bulk decryption: every other line
// is decrypted in order, Reject sees each failure with its line number,
// and the call ends with ErrRejected.
func TestNDJSONReject(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	pats := lines(t, bulkPatients)[:40]
	var plain bytes.Buffer
	for _, p := range pats {
		plain.Write(p)
		plain.WriteByte('\n')
	}
	var enc bytes.Buffer
	_, err := v.compact.EncryptNDJSON(ctx, &enc, bytes.NewReader(plain.Bytes()), fhir.NDJSONOptions{})
	require.NoError(t, err)
	encLines := bytes.Split(bytes.TrimSuffix(enc.Bytes(), []byte("\n")), []byte("\n"))

	// Shred the patient of line 5; damage line 12; make line 30 too long.
	var p5 struct{ ID string }
	require.NoError(t, json.Unmarshal(pats[4], &p5))
	_, err = v.kr.Destroy(ctx, "tenant:test/patient/"+p5.ID)
	require.NoError(t, err)
	encLines[11] = encLines[11][:len(encLines[11])/2]
	encLines[29] = append(encLines[29], bytes.Repeat([]byte(" "), 2<<20)...)
	in := append(bytes.Join(encLines, []byte("\n")), '\n')

	for _, workers := range []int{1, 4} {
		type reject struct {
			line int64
			err  error
		}
		var rejects []reject
		var out bytes.Buffer
		var rep fhir.Report
		prog, err := v.compact.DecryptNDJSON(ctx, &out, bytes.NewReader(in), fhir.NDJSONOptions{
			Workers: workers, MaxLineSize: 1 << 20, Report: &rep,
			Reject: func(le *fhir.LineError, line []byte) error {
				rejects = append(rejects, reject{le.Line, le.Err})
				if le.Line != 30 {
					assert.Equal(t, string(encLines[le.Line-1]), string(line), "Reject sees the line")
				}
				return nil
			},
		})
		require.ErrorIs(t, err, fhir.ErrRejected)
		var re *fhir.RejectedError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, int64(3), re.Rejected)
		require.Len(t, rejects, 3)
		assert.Equal(t, int64(5), rejects[0].line)
		assert.ErrorIs(t, rejects[0].err, keys.ErrKeyDestroyed)
		assert.Equal(t, int64(12), rejects[1].line)
		assert.ErrorIs(t, rejects[1].err, fhir.ErrSyntax)
		assert.Equal(t, int64(30), rejects[2].line)
		assert.ErrorIs(t, rejects[2].err, fhir.ErrLineTooLong)
		assert.Equal(t, fhir.Progress{Lines: 37, Rejected: 3, Bytes: int64(len(in)), Elapsed: prog.Elapsed}, prog)
		assert.Equal(t, int64(37), rep.Types["Patient"].Resources, "the report covers the lines written")

		var want bytes.Buffer
		for i, p := range pats {
			if i != 4 && i != 11 && i != 29 {
				want.Write(p)
				want.WriteByte('\n')
			}
		}
		assert.Equal(t, want.String(), out.String(), "workers %d: every other line, in order", workers)
	}

	// Reject may stop the stream; without it the first failure does.
	stop := errors.New("stop")
	var out bytes.Buffer
	prog, err := v.compact.DecryptNDJSON(ctx, &out, bytes.NewReader(in), fhir.NDJSONOptions{
		Reject: func(*fhir.LineError, []byte) error { return stop }})
	require.ErrorIs(t, err, stop)
	assert.Equal(t, int64(4), prog.Lines)
	prog, err = v.compact.DecryptNDJSON(ctx, &out, bytes.NewReader(in), fhir.NDJSONOptions{})
	require.ErrorIs(t, err, keys.ErrKeyDestroyed)
	assert.Equal(t, int64(4), prog.Lines)
	assert.Equal(t, "fhir: 2 NDJSON lines rejected", (&fhir.RejectedError{Rejected: 2}).Error())
	assert.False(t, strings.Contains((&fhir.RejectedError{Rejected: 1}).Error(), "lines"))
}
