package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmsopen"
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

// TestShredTenantShredsTheScopesUnderIt: keys shred of a tenant also
// shreds every scope under it (the per-patient scopes that encrypt
// --per-patient creates, wrapped by the KEK, and any other tenant:a/…
// scope), erases their rows' blind index values in the --spec tables,
// and says how many; scopes that merely share the prefix are untouched.
func TestShredTenantShredsTheScopesUnderIt(t *testing.T) {
	ctx := context.Background()
	vars, dir := newKeyStore(t)
	dsn := "sqlite:" + filepath.Join(dir, "app.db")
	spec := filepath.Join(dir, "patients.json")
	require.NoError(t, os.WriteFile(spec, []byte(tableSpec), 0o600))
	app, err := sql.Open("sqlite", filepath.Join(dir, "app.db"))
	require.NoError(t, err)
	defer app.Close()
	_, err = app.Exec(`CREATE TABLE patients (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, ssn TEXT, last TEXT, birth_date TEXT, ssn_index BLOB)`)
	require.NoError(t, err)
	rows := map[string]string{"pa": "tenant:a", "p7": "tenant:a/patient/7", "p8": "tenant:a/patient/8",
		"pab": "tenant:ab/patient/1", "pb": "tenant:b"}
	for id, scope := range rows {
		_, err := app.Exec("INSERT INTO patients (id, tenant_id, ssn_index) VALUES (?, ?, x'01')", id, scope)
		require.NoError(t, err)
	}

	kek, store := openKeys(t, vars, dir)
	kr, err := keys.New(keys.Config{KEK: kek, Store: store})
	require.NoError(t, err)
	// encrypt --per-patient --index: a tenant-wide index key, a data key
	// per patient, all wrapped by the KEK; and scopes that only share the
	// prefix.
	_, err = kr.IndexKey(ctx, "tenant:a", "Patient", "ssn_index")
	require.NoError(t, err)
	for _, s := range []string{"tenant:a/patient/7", "tenant:a/patient/8", "tenant:a/export/2026", "tenant:ab/patient/1", "tenant:b"} {
		_, err := kr.EncryptionKey(ctx, s)
		require.NoError(t, err)
	}

	r := runIn(t, vars, "keys", "shred", "--scope", "tenant:a", "--yes", "--dsn", dsn, "--spec", spec)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "destroyed 4 key versions in 1 key sets of tenant:a and 3 key sets of 3 scopes under it (tenant:a/…, such as its patients)")
	assert.Contains(t, r.stdout, "erased the blind index values of 3 rows in 1 tables")

	fresh, err := keys.New(keys.Config{KEK: kek, Store: store})
	require.NoError(t, err)
	for _, s := range []string{"tenant:a/patient/7", "tenant:a/patient/8", "tenant:a/export/2026"} {
		_, err := fresh.DecryptionKey(ctx, s, 1)
		assert.ErrorIs(t, err, keys.ErrKeyDestroyed, s)
	}
	for _, s := range []string{"tenant:ab/patient/1", "tenant:b"} {
		_, err := fresh.DecryptionKey(ctx, s, 1)
		assert.NoError(t, err, "%s is not under tenant:a", s)
	}
	for id, scope := range rows {
		var erased bool
		require.NoError(t, app.QueryRow("SELECT ssn_index IS NULL FROM patients WHERE id = ?", id).Scan(&erased))
		assert.Equal(t, scope == "tenant:a" || strings.HasPrefix(scope, "tenant:a/"), erased, scope)
	}

	// Run again, it finishes (nothing left to destroy); a scope with
	// nothing under it and no keys is refused.
	r = runIn(t, vars, "keys", "shred", "--scope", "tenant:a", "--yes")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "destroyed 0 key versions")
	r = runIn(t, vars, "keys", "shred", "--scope", "tenant:zz", "--yes")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, keys.ErrKeyNotFound.Error())
}

// TestShredTenantShredsLegacyPatients: with the key hierarchy, keys
// shred of a tenant destroys its patients wrapped under its parent key
// and those still wrapped by the KEK (from before keys rewrap
// --to-parents).
func TestShredTenantShredsLegacyPatients(t *testing.T) {
	ctx := context.Background()
	vars, dir := newKeyStore(t)
	kek, store := openKeys(t, vars, dir)
	flat, err := keys.New(keys.Config{KEK: kek, Store: store})
	require.NoError(t, err)
	_, err = flat.EncryptionKey(ctx, "tenant:a/patient/old") // before the hierarchy
	require.NoError(t, err)
	kr, err := keys.New(keys.Config{KEK: kek, Store: store, Parent: keys.TenantParent})
	require.NoError(t, err)
	_, err = kr.EncryptionKey(ctx, "tenant:a/patient/new")
	require.NoError(t, err)

	r := runIn(t, vars, "keys", "shred", "--scope", "tenant:a", "--yes")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "destroyed 3 key versions in 1 key sets of tenant:a and 2 key sets of 2 scopes under it")
	fresh, err := keys.New(keys.Config{KEK: kek, Store: store})
	require.NoError(t, err)
	for _, s := range []string{"tenant:a/patient/new", "tenant:a/patient/old"} {
		_, err := fresh.DecryptionKey(ctx, s, 1)
		assert.ErrorIs(t, err, keys.ErrKeyDestroyed, s)
	}
}

// openKeys opens the KEK and the key store of vars, as an application
// sharing them would.
func openKeys(t *testing.T, vars map[string]string, dir string) (kms.KEK, *keys.SQLStore) {
	t.Helper()
	kek, err := kmsopen.Open(context.Background(), vars["PHICRYPT_KEK"])
	require.NoError(t, err)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "keys.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	store, err := keys.NewSQLStore(context.Background(), db, keys.SQLite)
	require.NoError(t, err)
	return kek, store
}
