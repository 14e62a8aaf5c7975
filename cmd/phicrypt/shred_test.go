package main

import (
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tableSpec is the JSON spec of the table the table flags describe.
const tableSpec = `{"Table": "patients", "ID": "id", "ScopeColumn": "tenant_id",
	"Columns": [{"Name": "ssn", "Type": "string"}, {"Name": "last", "Type": "string"}, {"Name": "birth_date", "Type": "time"}],
	"Indexes": [{"Column": "ssn_index", "Of": ["ssn"], "Normalize": "digits", "Bits": 8}]}`

// TestRetireAndShredWithSpecs: keys retire refuses while rows use the old
// version and retires it after re-encryption; keys shred erases the
// scope's blind index values in the --spec tables and says what it cannot
// erase.
func TestRetireAndShredWithSpecs(t *testing.T) {
	dir := t.TempDir()
	dsn := "sqlite:" + filepath.Join(dir, "app.db")
	keysDSN := "sqlite:" + filepath.Join(dir, "keys.db")
	spec := filepath.Join(dir, "patients.json")
	require.NoError(t, os.WriteFile(spec, []byte(tableSpec), 0o600))
	env := []string{"PHICRYPT_KEK=local://" + filepath.Join(dir, "kek.json"), "PHICRYPT_DSN=" + dsn, "PHICRYPT_KEYS_DSN=" + keysDSN}
	r := phicrypt(t, env, "keys", "init", "--create", "--audit-log=false") // events on stderr, where the test reads them
	require.Equal(t, exitOK, r.code, r.stderr)
	db, err := sql.Open("sqlite", filepath.Join(dir, "app.db"))
	require.NoError(t, err)
	defer db.Close()
	legacyTable(t, db, 100, false)
	r = phicrypt(t, env, append([]string{"migrate", "encrypt", "--create"}, table...)...)
	require.Equal(t, exitOK, r.code, r.stderr)

	r = phicrypt(t, env, "keys", "rotate", "--scope", "tenant:a")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = phicrypt(t, env, "keys", "retire", "--scope", "tenant:a", "--below", "2")
	assert.Equal(t, exitUsage, r.code, "no proof, no retirement")
	r = phicrypt(t, env, "keys", "retire", "--scope", "tenant:a", "--below", "2", "--spec", spec)
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "data key version 1 was active less than CacheMaxAge (5m0s) ago")
	r = phicrypt(t, env, "keys", "retire", "--scope", "tenant:a", "--below", "2", "--spec", spec, "--cache-max-age", "1ns")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "data key version 1 is still used by 150 rows")
	assert.Contains(t, r.stderr, `"error_class":"in-use"`, "the refusal is audited")

	r = phicrypt(t, env, append([]string{"migrate", "reencrypt"}, table...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	r = phicrypt(t, env, "keys", "retire", "--scope", "tenant:a", "--below", "2", "--spec", spec, "--cache-max-age", "1ns", "--destroy")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "versions below 2 retired")
	assert.Contains(t, r.stdout, "destroyed 1 versions below 2")

	var indexed int
	count := func(tenant string) int {
		require.NoError(t, db.QueryRow("SELECT count(*) FROM patients WHERE tenant_id = ? AND ssn_index IS NOT NULL", tenant).Scan(&indexed))
		return indexed
	}
	require.Equal(t, 50, count("tenant:b"))
	r = phicrypt(t, env, "keys", "shred", "--scope", "tenant:nobody", "--yes", "--spec", spec)
	assert.Equal(t, exitFailure, r.code, "a scope without keys erases nothing")
	r = phicrypt(t, env, "keys", "shred", "--scope", "tenant:b", "--yes", "--spec", spec)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "destroyed 2 key versions in 2 key sets of tenant:b")
	assert.Contains(t, r.stdout, "erased the blind index values of 50 rows in 1 tables")
	assert.Contains(t, r.stderr, "NDJSON files", "says what it cannot erase")
	assert.Zero(t, count("tenant:b"))
	assert.Equal(t, 50, count("tenant:a"), "other scopes keep their indexes")
	r = phicrypt(t, env, "keys", "shred", "--scope", "tenant:b", "--yes", "--spec", spec)
	require.Equal(t, exitOK, r.code, "a shred can be run again: %s", r.stderr)
}

// TestPerPatientNDJSONOptions: --per-patient promises shredding through
// the key store, so it refuses the self-contained form; --patient-index
// puts the blind index keys in each patient's scope, where keys shred
// destroys them.
func TestPerPatientNDJSONOptions(t *testing.T) {
	dir := t.TempDir()
	env := []string{"PHICRYPT_KEK=local://" + filepath.Join(dir, "kek.json"), "PHICRYPT_KEYS_DSN=sqlite:" + filepath.Join(dir, "keys.db")}
	r := phicrypt(t, env, "keys", "init", "--create")
	require.Equal(t, exitOK, r.code, r.stderr)
	in := "../../testdata/fhir-synthea/bulk-10/Patient.000.ndjson"

	r = phicrypt(t, env, "encrypt", "--form", "self-contained", "--per-patient", "--scope", "tenant:t", "--in", in)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "--per-patient needs --form compact")
	r = phicrypt(t, env, "encrypt", "--patient-index", "--index", "ssn:16", "--scope", "tenant:t", "--in", in)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "--patient-index needs --per-patient")

	r = phicrypt(t, env, "encrypt", "--create", "--per-patient", "--patient-index", "--index", "ssn:16", "--scope", "tenant:t",
		"--in", in, "--out", filepath.Join(dir, "out.ndjson"))
	require.Equal(t, exitOK, r.code, r.stderr)
	r = phicrypt(t, env, "keys", "status", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var sets []struct{ Scope, Key string }
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sets))
	perPatient := 0
	for _, s := range sets {
		assert.NotEqual(t, "tenant:t", s.Scope, "no tenant-wide key")
		if s.Key == "index/Patient/ssn_index" && strings.HasPrefix(s.Scope, "tenant:t/patient/") {
			perPatient++
		}
	}
	assert.Positive(t, perPatient, "each patient's index key is in their scope")
}
