package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields/fhir"
)

// keyStore creates a key store in a temporary folder and returns the
// environment that points phicrypt at it, and the folder.
func keyStore(t *testing.T) ([]string, string) {
	t.Helper()
	dir := t.TempDir()
	env := []string{"PHICRYPT_KEK=local://" + filepath.Join(dir, "kek.json"), "PHICRYPT_KEYS_DSN=sqlite:" + filepath.Join(dir, "keys.db")}
	r := phicrypt(t, env, "keys", "init", "--create")
	require.Equal(t, exitOK, r.code, r.stderr)
	return env, dir
}

// TestEncryptOddShapes: the shapes that used to pass through unchanged
// fail their line, naming the line and the path, never the value; unknown
// types follow --unknown-types; the summary counts the resources with
// nothing encrypted, by type.
func TestEncryptOddShapes(t *testing.T) {
	env, dir := keyStore(t)
	for _, tc := range []struct{ line, want string }{
		{`{"resourceType":"Patient","id":"p1","name":"Mallory SECRET"}`, "line 1: Patient.name: unexpected JSON type: a string where an object is expected"},
		{`{"resourceType":"patient","id":"p1","name":[{"family":"Mallory SECRET"}]}`, "line 1: resource.resourceType: invalid resourceType"},
		{`{"resourceType":"QuestionnaireResponse","id":"q","item":[{"answer":[{"valueString":"Mallory SECRET"}]}]}`, "line 1: QuestionnaireResponse: resource type unknown to the profile"},
	} {
		r := phicryptIn(t, env, []byte(tc.line+"\n"), "encrypt", "--create", "--scope", "tenant:t")
		assert.Equal(t, exitFailure, r.code, tc.line)
		assert.Contains(t, r.stderr, tc.want)
		assert.NotContains(t, r.stderr+r.stdout, "SECRET")
		assert.NotContains(t, r.stderr, "encrypted 1 lines")
	}

	in := `{"resourceType":"Patient","id":"p1","name":[{"family":"Gottlieb798"}]}` + "\n" +
		`{"resourceType":"Organization","id":"o1","name":"St Mary"}` + "\n" +
		`{"resourceType":"Basic","id":"b1","code":{"text":"Mallory SECRET"},"created":"2020-01-01"}` + "\n"
	r := phicryptIn(t, env, []byte(in), "encrypt", "--create", "--scope", "tenant:t", "--unknown-types", "encrypt")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.NotContains(t, r.stdout, "SECRET")
	assert.NotContains(t, r.stdout, "2020-01-01")
	assert.Contains(t, r.stderr, "encrypted 3 lines")
	assert.Contains(t, r.stderr, "nothing encrypted in 1 resource: Organization 1\n")
	assert.Contains(t, r.stderr, "1 resource of types the profile does not know, every string value encrypted: Basic 1\n")
	r = phicryptIn(t, env, []byte(r.stdout), "decrypt", "--scope", "tenant:t", "--unknown-types", "encrypt")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, in, r.stdout)

	report := filepath.Join(dir, "report.json")
	r = phicryptIn(t, env, []byte(in), "encrypt", "--create", "--scope", "tenant:t", "--unknown-types", "pass", "--report", report)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"code":{"text":"Mallory SECRET"}`, "passed through, as asked")
	assert.Contains(t, r.stderr, "nothing encrypted in 2 resources: Basic 1, Organization 1\n")
	assert.Contains(t, r.stderr, "1 resource of types the profile does not know, passed through: Basic 1\n")
	var rep fhir.Report
	require.NoError(t, json.Unmarshal(readBytes(t, report), &rep))
	assert.Equal(t, fhir.TypeReport{Resources: 1, Paths: map[string]int64{"name.family": 1}}, *rep.Types["Patient"])
	assert.Equal(t, fhir.TypeReport{Resources: 1, Untouched: 1, Unknown: 1, Paths: map[string]int64{}}, *rep.Types["Basic"])
	assert.NotContains(t, string(readBytes(t, report)), "SECRET")

	r = phicryptIn(t, env, []byte(in), "encrypt", "--create", "--scope", "tenant:t", "--unknown-types", "ignore")
	assert.Equal(t, exitUsage, r.code)
}

// TestEncryptReportBulk: --report lists, for a bulk export, every path
// encrypted with its count, matching the ciphertexts of the output.
func TestEncryptReportBulk(t *testing.T) {
	env, dir := keyStore(t)
	report := filepath.Join(dir, "report.json")
	in := "../../testdata/fhir-synthea/bulk-10/Encounter.000.ndjson"
	r := phicrypt(t, env, "encrypt", "--create", "--scope", "tenant:t", "--in", in, "--report", report)
	require.Equal(t, exitOK, r.code, r.stderr)
	var rep fhir.Report
	require.NoError(t, json.Unmarshal(readBytes(t, report), &rep))
	require.Equal(t, []string{"Encounter"}, rep.TypeNames())
	var total int64
	for _, n := range rep.Types["Encounter"].Paths {
		total += n
	}
	assert.Equal(t, int64(strings.Count(r.stdout, `"phicrypt:`)), total, "one count per ciphertext")
	assert.Equal(t, int64(strings.Count(r.stdout, "\n")), rep.Types["Encounter"].Resources)
}

// TestDecryptRejects: with --rejects, one shredded patient and one
// damaged line do not stop a bulk decryption: the other lines are written
// in order, each failed line is listed with its number and error class
// (no value), and the exit code says that lines are missing.
func TestDecryptRejects(t *testing.T) {
	env, dir := keyStore(t)
	plain := headLines(t, patientsNDJSON, 30)
	ids, phi := phiOf(t, plain)
	encPath := filepath.Join(dir, "enc.ndjson")
	r := phicryptIn(t, env, plain, "encrypt", "--create", "--scope", "tenant:t", "--per-patient", "--out", encPath)
	require.Equal(t, exitOK, r.code, r.stderr)
	r = phicrypt(t, env, "keys", "shred", "--scope", "tenant:t/patient/"+ids[2], "--yes")
	require.Equal(t, exitOK, r.code, r.stderr)
	lines := bytes.SplitAfter(readBytes(t, encPath), []byte("\n"))
	lines[6] = append(lines[6][:len(lines[6])/2], '\n')
	require.NoError(t, os.WriteFile(encPath, bytes.Join(lines, nil), 0o600))

	out, rejects := filepath.Join(dir, "out.ndjson"), filepath.Join(dir, "rejects.ndjson")
	r = phicrypt(t, env, "decrypt", "--scope", "tenant:t", "--per-patient", "--in", encPath, "--out", out, "--rejects", rejects)
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "decrypted 28 lines")
	assert.Contains(t, r.stderr, "2 of 30 lines rejected (1 invalid-json, 1 key-destroyed), listed in "+rejects)
	assertNoPHI(t, r.stderr, phi)

	plainLines := bytes.SplitAfter(plain, []byte("\n"))
	want := slicesDelete(plainLines, 2, 6)
	assert.Equal(t, string(bytes.Join(want, nil)), string(readBytes(t, out)), "every other line, in order")
	rj := string(readBytes(t, rejects))
	recs := strings.Split(strings.TrimSpace(rj), "\n")
	require.Len(t, recs, 2)
	assert.Regexp(t, `^\{"line":3,"class":"key-destroyed","path":"Patient\.[a-zA-Z\[\]0-9.]+"\}$`, recs[0])
	assert.Equal(t, `{"line":7,"class":"invalid-json"}`, recs[1])
	assertNoPHI(t, rj, phi)
	for _, id := range ids {
		assert.NotContains(t, rj, id, "no resource id either")
	}

	// Without --rejects, the first failure stops the decryption.
	r = phicrypt(t, env, "decrypt", "--scope", "tenant:t", "--per-patient", "--in", encPath, "--out", filepath.Join(dir, "stop.ndjson"))
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "line 3")
	assert.NoFileExists(t, filepath.Join(dir, "stop.ndjson"))
}

// TestDecryptPerPatientHint: a file decrypted with the other --per-patient
// choice says so, instead of "message authentication failed".
func TestDecryptPerPatientHint(t *testing.T) {
	env, dir := keyStore(t)
	plain := headLines(t, patientsNDJSON, 5)
	for _, tc := range []struct {
		encFlags, decFlags []string
		want               string
	}{
		{[]string{"--per-patient"}, nil, "line 1: this file was encrypted with --per-patient"},
		{nil, []string{"--per-patient"}, "line 1: this file was encrypted without --per-patient"},
	} {
		r := phicryptIn(t, env, plain, append([]string{"encrypt", "--create", "--scope", "tenant:t"}, tc.encFlags...)...)
		require.Equal(t, exitOK, r.code, r.stderr)
		enc := []byte(r.stdout)
		for _, extra := range [][]string{nil, {"--rejects", filepath.Join(dir, "r.ndjson"), "--out", filepath.Join(dir, "o.ndjson"), "--force"}} {
			args := append(append([]string{"decrypt", "--scope", "tenant:t"}, tc.decFlags...), extra...)
			r = phicryptIn(t, env, enc, args...)
			assert.Equal(t, exitFailure, r.code)
			assert.Contains(t, r.stderr, tc.want, "%v", args)
			assert.NotContains(t, r.stderr, "message authentication failed")
		}
	}
	// A damaged value is not taken for a scope mistake.
	r := phicryptIn(t, env, plain, "encrypt", "--create", "--scope", "tenant:t", "--per-patient")
	require.Equal(t, exitOK, r.code, r.stderr)
	enc := []byte(r.stdout)
	start := bytes.Index(enc, []byte(`"phicrypt:`)) + 1
	end := start + bytes.IndexByte(enc[start:], '"')
	mid := (start + end) / 2 // in the body: the header would name a missing key version
	if enc[mid] == 'A' {
		enc[mid] = 'B'
	} else {
		enc[mid] = 'A'
	}
	r = phicryptIn(t, env, enc, "decrypt", "--scope", "tenant:t", "--per-patient")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "message authentication failed")
	assert.NotContains(t, r.stderr, "this file was encrypted")
}

func readBytes(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	return b
}

// headLines returns the first n lines of a file.
func headLines(t *testing.T, name string, n int) []byte {
	t.Helper()
	f, err := os.Open(name)
	require.NoError(t, err)
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var out []byte
	for range n {
		l, err := br.ReadBytes('\n')
		require.NoError(t, err)
		out = append(out, l...)
	}
	return out
}

// slicesDelete returns s without the items at the indexes given.
func slicesDelete(s [][]byte, drop ...int) [][]byte {
	var out [][]byte
	for i, x := range s {
		keep := true
		for _, d := range drop {
			keep = keep && i != d
		}
		if keep {
			out = append(out, x)
		}
	}
	return out
}
