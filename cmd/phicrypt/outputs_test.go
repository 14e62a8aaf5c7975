package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOutputsNeverShareAFile: --out, --rejects, --report and the
// --audit-file are files of their own however they are spelled. Two
// outputs under one name would be renamed over each other: the command
// would report the output written while the file holds the report.
// (Paths are joined by hand: filepath.Join would clean them.)
func TestOutputsNeverShareAFile(t *testing.T) {
	vars, dir := newKeyStore(t)
	in := filepath.Join(dir, "in.ndjson")
	require.NoError(t, os.WriteFile(in, headLines(t, patientsNDJSON, 3), 0o600))
	for name, args := range map[string]func(d string) []string{
		"report is out": func(d string) []string {
			return []string{"encrypt", "--create", "--out", filepath.Join(d, "out.ndjson"), "--report", d + "/./out.ndjson"}
		},
		"report is out, through a folder": func(d string) []string {
			return []string{"encrypt", "--create", "--out", filepath.Join(d, "out.ndjson"), "--report", d + "/sub/../out.ndjson"}
		},
		"rejects is report": func(d string) []string {
			return []string{"decrypt", "--out", filepath.Join(d, "out.ndjson"), "--rejects", filepath.Join(d, "r.json"), "--report", d + "/sub/../r.json"}
		},
		"rejects is out": func(d string) []string {
			return []string{"decrypt", "--out", filepath.Join(d, "out.ndjson"), "--rejects", d + "/./out.ndjson"}
		},
		"audit file is out": func(d string) []string {
			return []string{"encrypt", "--create", "--out", filepath.Join(d, "out.ndjson"), "--audit-file", d + "/./out.ndjson"}
		},
	} {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			require.NoError(t, os.Mkdir(filepath.Join(d, "sub"), 0o700))
			r := runIn(t, vars, append(args(d), "--scope", "tenant:t", "--in", in)...)
			assert.Equal(t, exitUsage, r.code, r.stderr)
			assert.Contains(t, r.stderr, "a file of its own")
			assert.NoFileExists(t, filepath.Join(d, "out.ndjson"))
			assert.NoFileExists(t, filepath.Join(d, "r.json"))
			assertNoTempFiles(t, d)
		})
	}
	assert.Empty(t, keySets(t, vars), "no refused run created keys")

	// "-" is standard output for --out, standard error for --audit-file.
	r := runIn(t, vars, "encrypt", "--create", "--scope", "tenant:t", "--in", in, "--out", "-", "--audit-file", "-")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"phicrypt:`)
	assert.Contains(t, r.stderr, `"op":"create"`)
}

// TestStandardOutputIsTheInput: encrypt and decrypt refuse to write to a
// standard output that is their input file (phicrypt encrypt --in f >> f,
// or 1<>f), which would append the ciphertext to the plaintext it leaves
// in place, or overwrite the input while reading it.
func TestStandardOutputIsTheInput(t *testing.T) {
	vars, dir := newKeyStore(t)
	in := filepath.Join(dir, "in.ndjson")
	plain := headLines(t, patientsNDJSON, 3)
	require.NoError(t, os.WriteFile(in, plain, 0o600))
	for _, args := range [][]string{
		{"encrypt", "--create", "--scope", "tenant:t", "--in", in},
		{"decrypt", "--scope", "tenant:t", "--in", in, "--out", "-"},
	} {
		f, err := os.OpenFile(in, os.O_WRONLY|os.O_APPEND, 0)
		require.NoError(t, err)
		var errOut strings.Builder
		e := &env{stdin: strings.NewReader(""), stdout: f, stderr: &errOut, getenv: func(k string) string { return vars[k] }}
		code := run(context.Background(), e, args)
		require.NoError(t, f.Close())
		assert.Equal(t, exitUsage, code, "%v: %s", args[:1], errOut.String())
		assert.Contains(t, errOut.String(), "standard output is the input file", args[:1])
		assert.Equal(t, string(plain), string(readBytes(t, in)), "%v: the input is unchanged", args[:1])
	}
	assert.Empty(t, keySets(t, vars), "refused before any key was created")
}
