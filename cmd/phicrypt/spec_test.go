package main

import (
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/migrate"
)

// cliPatient is the application's type for legacyTable's table.
type cliPatient struct {
	ID        string                      `phi:"id,table=patients"`
	TenantID  string                      `phi:"scope"`
	SSN       fields.String               `phi:"encrypt"`
	Last      fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
	SSNIndex  fields.BlindIndex           `phi:"index,of=SSN,normalize=digits,bits=8"`
}

// TestMigrateSpecFileOnSQLite: a spec generated from the application's
// type (migrate.SpecFor, json.Marshal) drives encrypt, verify and, after a
// rotation, reencrypt; it is the spec the flags describe, so a job
// created with one resumes with the other.
func TestMigrateSpecFileOnSQLite(t *testing.T) {
	dir := t.TempDir()
	dsn := "sqlite:" + filepath.Join(dir, "app.db")
	env := []string{"PHICRYPT_KEK=local://" + filepath.Join(dir, "kek.json"), "PHICRYPT_DSN=" + dsn, "PHICRYPT_KEYS_DSN=" + dsn}
	r := phicrypt(t, env, "keys", "init", "--create")
	require.Equal(t, exitOK, r.code, r.stderr)
	db, err := sql.Open("sqlite", filepath.Join(dir, "app.db"))
	require.NoError(t, err)
	defer db.Close()
	legacyTable(t, db, 40, false)

	spec, err := migrate.SpecFor(&cliPatient{})
	require.NoError(t, err)
	data, err := json.MarshalIndent(spec, "", "  ")
	require.NoError(t, err)
	specFile := filepath.Join(dir, "patients.json")
	require.NoError(t, os.WriteFile(specFile, data, 0o600))

	r = phicrypt(t, env, "migrate", "verify", "--spec", specFile)
	assert.Equal(t, exitIncomplete, r.code, r.stderr)
	assert.Contains(t, r.stdout, "column ssn: 40 plaintext")
	r = phicrypt(t, env, "migrate", "encrypt", "--create", "--partition", "10", "--spec", specFile)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "changed 40")
	// The same job, described by the flags: the specs are equal, or the
	// job would be refused (migrate.ErrJobMismatch).
	r = phicrypt(t, env, append([]string{"migrate", "encrypt"}, table...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "changed 0")
	r = phicryptIn(t, env, data, "migrate", "verify", "--decrypt", "--spec", "-")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "column ssn: 0 plaintext, 0 null, 0 malformed, by key version v1=40")
	assert.Contains(t, r.stdout, "index ssn_index")

	// The README's rotation: rotate, then run the job for the type.
	r = phicrypt(t, env, "keys", "rotate", "--scope", "tenant:a")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = phicrypt(t, env, "migrate", "reencrypt", "--spec", specFile)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "changed 20")
	r = phicrypt(t, env, "migrate", "verify", "--spec", specFile)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "v1=20 v2=20")
	assert.NotContains(t, r.stdout+r.stderr, "999-", "no PHI in the output")

	// A spec file and table flags together, an invalid spec, a missing
	// file: usage errors.
	r = phicrypt(t, env, "migrate", "verify", "--spec", specFile, "--table", "patients")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "--spec describes the table")
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(strings.Replace(string(data), `"Bits": 8`, `"Bits": 8, "Bitz": 8`, 1)), 0o600))
	r = phicrypt(t, env, "migrate", "verify", "--spec", bad)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "invalid spec")
	assert.Contains(t, r.stderr, "Bitz")
	r = phicrypt(t, env, "migrate", "verify", "--spec", filepath.Join(dir, "nope.json"))
	assert.Equal(t, exitUsage, r.code)

	// A spec that does not match the table stops before any work.
	other := spec
	other.Columns = append([]migrate.Column{{Name: "phone", Type: "string"}}, spec.Columns...)
	data, err = json.Marshal(other)
	require.NoError(t, err)
	r = phicryptIn(t, env, data, "migrate", "encrypt", "--spec", "-")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "table patients does not match the spec: no column phone")
	r = phicryptIn(t, env, data, "migrate", "verify", "--spec", "-")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "no column phone")
}
