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

const patientsNDJSON = "../../testdata/fhir-synthea/bulk-1000/Patient.000.ndjson"

// phiOf returns the ids and identifying values (identifiers, family
// names, phone numbers) of the Patients in an NDJSON file.
func phiOf(t *testing.T, data []byte) (ids, values []string) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var p struct {
			ID         string
			Identifier []struct{ Value string }
			Name       []struct{ Family string }
			Telecom    []struct{ Value string }
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &p))
		ids = append(ids, p.ID)
		for _, v := range p.Identifier {
			if v.Value != p.ID {
				values = append(values, v.Value)
			}
		}
		for _, n := range p.Name {
			values = append(values, n.Family)
		}
		for _, v := range p.Telecom {
			values = append(values, v.Value)
		}
	}
	require.NoError(t, sc.Err())
	return ids, values
}

func TestEncryptDecryptNDJSON(t *testing.T) {
	plain, err := os.ReadFile(patientsNDJSON)
	require.NoError(t, err)
	ids, phi := phiOf(t, plain)
	require.Len(t, ids, 1144)

	dir := t.TempDir()
	dsn := "sqlite:" + filepath.Join(dir, "keys.db")
	env := []string{"PHICRYPT_KEK=local://" + filepath.Join(dir, "kek.json"), "PHICRYPT_KEYS_DSN=" + dsn}
	r := phicrypt(t, env, "keys", "init", "--create")
	require.Equal(t, exitOK, r.code, r.stderr)

	encPath, decPath := filepath.Join(dir, "Patient.enc.ndjson"), filepath.Join(dir, "Patient.ndjson")
	r = phicrypt(t, env, "encrypt", "--create", "--scope", "tenant:t", "--per-patient", "--index", "ssn:16", "--index", "mrn:16",
		"--workers", "2", "--in", patientsNDJSON, "--out", encPath)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stderr, "encrypted 1144 lines")
	enc, err := os.ReadFile(encPath)
	require.NoError(t, err)
	fi, err := os.Stat(encPath)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	// Every line is still a Patient with its id, its PHI encrypted and its
	// blind indexes added.
	encIDs, _ := phiOf(t, enc)
	assert.Equal(t, ids, encIDs, "ids stay readable and lines keep their order")
	for _, v := range phi {
		if len(v) >= 6 {
			require.NotContains(t, string(enc), v, "a PHI value is left in the encrypted file")
		}
	}
	line, _, _ := bytes.Cut(enc, []byte("\n"))
	ixs, err := fhir.ReadIndexes(line)
	require.NoError(t, err)
	names := []string{}
	for _, ix := range ixs {
		names = append(names, ix.Name)
	}
	assert.ElementsMatch(t, []string{"ssn", "mrn"}, names)

	r = phicrypt(t, env, "decrypt", "--scope", "tenant:t", "--per-patient", "--in", encPath, "--out", decPath)
	require.Equal(t, exitOK, r.code, r.stderr)
	dec, err := os.ReadFile(decPath)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(plain, dec), "decrypt gives back the input byte for byte")

	r = phicrypt(t, env, "encrypt", "--create", "--scope", "tenant:t", "--per-patient", "--in", encPath, "--out", filepath.Join(dir, "twice"))
	assert.Equal(t, exitFailure, r.code, "encrypted input is refused")
	assert.Contains(t, r.stderr, "line 1")
	assert.NoFileExists(t, filepath.Join(dir, "twice"))
	assertNoTempFiles(t, dir)

	// The wrong scope: nothing decrypts, nothing is written.
	r = phicrypt(t, env, "decrypt", "--scope", "tenant:other", "--per-patient", "--in", encPath, "--out", filepath.Join(dir, "other"))
	assert.Equal(t, exitFailure, r.code)
	assert.NoFileExists(t, filepath.Join(dir, "other"))

	// A tampered value fails its line; the output file is not created
	// and the error shows no PHI.
	lines := bytes.Split(enc, []byte("\n"))
	i := bytes.Index(lines[4], []byte(`"phicrypt:`)) + 20
	lines[4][i] ^= 1
	tampered := filepath.Join(dir, "tampered.ndjson")
	require.NoError(t, os.WriteFile(tampered, bytes.Join(lines, []byte("\n")), 0o600))
	r = phicrypt(t, env, "decrypt", "--scope", "tenant:t", "--per-patient", "--in", tampered, "--out", filepath.Join(dir, "t.out"))
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "line 5")
	assert.Contains(t, r.stderr, "t.out not written")
	assert.NoFileExists(t, filepath.Join(dir, "t.out"))
	assertNoPHI(t, r.stderr, phi)

	// Crypto-shredding one patient: their line no longer decrypts, and
	// another patient's values cannot be swapped into it.
	r = phicrypt(t, env, "keys", "shred", "--scope", "tenant:t/patient/"+ids[2], "--yes")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = phicrypt(t, env, "decrypt", "--scope", "tenant:t", "--per-patient", "--in", encPath)
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "output stopped after 2 complete lines: fhir: line 3:")
	assert.Contains(t, r.stderr, "key destroyed")
	assert.Equal(t, 2, strings.Count(r.stdout, "\n"), "the lines before the failed one are written")
	assertNoPHI(t, r.stderr, phi)
}

func TestEncryptNDJSONSelfContainedPipe(t *testing.T) {
	plain, err := os.ReadFile("../../testdata/fhir-synthea/bulk-10/Encounter.000.ndjson")
	require.NoError(t, err)
	dir := t.TempDir()
	kek := "local://" + filepath.Join(dir, "kek.json")
	r := phicrypt(t, nil, "keys", "init", "--create", "--kek", kek, "--keys-dsn", "sqlite:"+filepath.Join(dir, "keys.db"))
	require.Equal(t, exitOK, r.code, r.stderr)

	// No key store: each value carries its data key, wrapped by the KEK.
	env := []string{"PHICRYPT_KEK=" + kek, "PHICRYPT_KEYS_DSN="}
	r = phicryptIn(t, env, plain, "encrypt", "--form", "self-contained", "--scope", "tenant:t")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"phicrypt:`)
	assert.Equal(t, bytes.Count(plain, []byte("\n")), strings.Count(r.stdout, "\n"))
	r = phicryptIn(t, env, []byte(r.stdout), "decrypt", "--form", "self-contained", "--scope", "tenant:t")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, string(plain), r.stdout)

	r = phicryptIn(t, env, plain, "encrypt", "--create", "--scope", "tenant:t")
	assert.Equal(t, exitUsage, r.code, "the compact form needs the key store")
	assert.Contains(t, r.stderr, "--keys-dsn")
}

func TestNDJSONUsage(t *testing.T) {
	dir := t.TempDir()
	exists := filepath.Join(dir, "exists.ndjson")
	require.NoError(t, os.WriteFile(exists, []byte("{}\n"), 0o600))
	env := []string{"PHICRYPT_KEK=local://" + filepath.Join(dir, "kek.json"), "PHICRYPT_KEYS_DSN=sqlite:" + filepath.Join(dir, "keys.db")}
	for name, args := range map[string][]string{
		"no scope":                  {"encrypt", "--in", patientsNDJSON},
		"bad form":                  {"encrypt", "--scope", "s", "--form", "tink"},
		"bad index":                 {"encrypt", "--scope", "s", "--index", "dob:16"},
		"index bits":                {"encrypt", "--scope", "s", "--index", "ssn:99"},
		"index twice":               {"encrypt", "--scope", "s", "--index", "ssn:16", "--index", "ssn:8"},
		"output exists":             {"encrypt", "--scope", "s", "--in", patientsNDJSON, "--out", exists},
		"in is out":                 {"decrypt", "--scope", "s", "--in", exists, "--out", exists, "--force"},
		"bad profile":               {"encrypt", "--scope", "s", "--profile", writeFile(t, dir, `{"name":"x","resources":{"Patient":["name.family()"]}}`)},
		"workers":                   {"encrypt", "--scope", "s", "--workers", "-1"},
		"no index flag":             {"decrypt", "--scope", "s", "--index", "ssn:16"},
		"as-of without safe harbor": {"encrypt", "--scope", "s", "--as-of", "2026-06-01"},
		"as-of not a date":          {"encrypt", "--scope", "s", "--profile", "safe-harbor", "--as-of", "06/01/2026"},
		"patients without harbor":   {"encrypt", "--scope", "s", "--patients", patientsNDJSON},
	} {
		r := phicrypt(t, env, args...)
		assert.Equal(t, exitUsage, r.code, "%s: %s", name, r.stderr)
	}
	r := phicrypt(t, env, "encrypt", "-h")
	assert.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stderr, "--per-patient")
	assertNoTempFiles(t, dir)
}

func writeFile(t *testing.T, dir, content string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "profile-*.json")
	require.NoError(t, err)
	_, err = f.WriteString(content)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return f.Name()
}

// assertNoTempFiles checks that no temporary output file was left behind.
func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	tmp, err := filepath.Glob(filepath.Join(dir, ".*.tmp"))
	require.NoError(t, err)
	assert.Empty(t, tmp)
}

func assertNoPHI(t *testing.T, s string, phi []string) {
	t.Helper()
	for _, v := range phi {
		if len(v) >= 6 {
			assert.NotContains(t, s, v)
		}
	}
}

// TestEncryptSafeHarborProfile encrypts the Synthea Bundles, one per line,
// with the built-in Safe Harbor profile chosen by name: no birth date or
// time of death is left readable, the years of the patients under 90 are,
// and decryption gives back the input byte for byte.
func TestEncryptSafeHarborProfile(t *testing.T) {
	names, err := filepath.Glob("../../testdata/fhir-synthea/bundles/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, names)
	var plain bytes.Buffer
	var dates []string
	for _, n := range names {
		b, err := os.ReadFile(n)
		require.NoError(t, err)
		require.NoError(t, json.Compact(&plain, b))
		plain.WriteByte('\n')
		var bundle struct {
			Entry []struct {
				Resource struct{ BirthDate, DeceasedDateTime string }
			}
		}
		require.NoError(t, json.Unmarshal(b, &bundle))
		p := bundle.Entry[0].Resource
		dates = append(dates, p.BirthDate)
		if p.DeceasedDateTime != "" {
			dates = append(dates, p.DeceasedDateTime)
		}
	}
	dir := t.TempDir()
	kek := "local://" + filepath.Join(dir, "kek.json")
	r := phicrypt(t, nil, "keys", "init", "--create", "--kek", kek, "--keys-dsn", "sqlite:"+filepath.Join(dir, "keys.db"))
	require.Equal(t, exitOK, r.code, r.stderr)
	env := []string{"PHICRYPT_KEK=" + kek, "PHICRYPT_KEYS_DSN="}

	r = phicryptIn(t, env, plain.Bytes(), "encrypt", "--profile", "safe-harbor", "--as-of", "2026-06-01",
		"--form", "self-contained", "--scope", "study:42")
	require.Equal(t, exitOK, r.code, r.stderr)
	for _, d := range dates {
		assert.NotContains(t, r.stdout, `"`+d+`"`, "a birth date or time of death is readable")
	}
	assert.Equal(t, len(names), strings.Count(r.stdout, `"_birthDate":{"extension":[{"url":"`+fhir.YearExtensionURL+`"`),
		"each patient, all under 90, keeps the year of birth")

	r = phicryptIn(t, env, []byte(r.stdout), "decrypt", "--profile", "safe-harbor", "--form", "self-contained", "--scope", "study:42")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, bytes.Equal(plain.Bytes(), []byte(r.stdout)), "decrypt gives back the input byte for byte")
}

// TestEncryptSafeHarborPatientsFile encrypts a bulk export's Condition file
// with the Safe Harbor profile: with --patients, the lines of patients
// under 90 keep their years; without, none does.
func TestEncryptSafeHarborPatientsFile(t *testing.T) {
	const bulk = "../../testdata/fhir-synthea/bulk-10/"
	plain, err := os.ReadFile(bulk + "Condition.000.ndjson")
	require.NoError(t, err)
	dir := t.TempDir()
	kek := "local://" + filepath.Join(dir, "kek.json")
	r := phicrypt(t, nil, "keys", "init", "--create", "--kek", kek, "--keys-dsn", "sqlite:"+filepath.Join(dir, "keys.db"))
	require.Equal(t, exitOK, r.code, r.stderr)
	env := []string{"PHICRYPT_KEK=" + kek, "PHICRYPT_KEYS_DSN="}
	args := []string{"encrypt", "--profile", "safe-harbor", "--as-of", "2026-06-01", "--form", "self-contained", "--scope", "study:42"}

	r = phicryptIn(t, env, plain, args...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.NotContains(t, r.stdout, fhir.YearExtensionURL, "no Patient, no age, no year")

	r = phicryptIn(t, env, plain, append(args, "--patients", bulk+"Patient.000.ndjson")...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, fhir.YearExtensionURL)
	r = phicryptIn(t, env, []byte(r.stdout), "decrypt", "--profile", "safe-harbor", "--form", "self-contained", "--scope", "study:42")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, bytes.Equal(plain, []byte(r.stdout)), "decrypt gives back the input byte for byte")
}
