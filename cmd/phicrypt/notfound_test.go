package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
)

// newKeyStore makes a KEK and a key store in a temporary folder and
// returns the environment that names them, and the folder.
func newKeyStore(t *testing.T, initArgs ...string) (map[string]string, string) {
	t.Helper()
	dir := t.TempDir()
	vars := map[string]string{"PHICRYPT_KEK": "local://" + filepath.Join(dir, "kek.json"), "PHICRYPT_KEYS_DSN": "sqlite:" + filepath.Join(dir, "keys.db")}
	r := runIn(t, vars, append([]string{"keys", "init", "--create"}, initArgs...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	return vars, dir
}

// with returns vars with more variables.
func with(vars map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range vars {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// keySets returns the key sets keys status --json lists.
func keySets(t *testing.T, vars map[string]string) []statusSet {
	t.Helper()
	r := runIn(t, vars, "keys", "status", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var sets []statusSet
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sets))
	// phicrypt's own key sets (the metadata MAC key) are not the
	// caller's.
	return slices.DeleteFunc(sets, func(s statusSet) bool { return strings.HasPrefix(s.Scope, keys.ReservedScopePrefix) })
}

type statusSet struct {
	Scope, Key string
	Versions   []struct {
		Version uint32
		State   string
	}
}

// TestMistypedKeyStoreIsNeverCreated: every command that opens a key
// store refuses one that does not exist, with keys.ErrNoStore and exit
// code 1, and leaves no file behind; --create is the way to create one.
func TestMistypedKeyStoreIsNeverCreated(t *testing.T) {
	vars, dir := newKeyStore(t)
	kekBefore, err := os.ReadFile(filepath.Join(dir, "kek.json"))
	require.NoError(t, err)
	app := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", app)
	require.NoError(t, err)
	legacyTable(t, db, 10, false)
	db.Close()
	in := filepath.Join(dir, "in.ndjson")
	require.NoError(t, os.WriteFile(in, []byte(`{"resourceType":"Patient","id":"p1"}`+"\n"), 0o600))

	typo := filepath.Join(dir, "kyes.db")
	out := filepath.Join(dir, "out.ndjson")
	tableArgs := append([]string{"--dsn", "sqlite:" + app}, table...)
	for _, args := range [][]string{
		{"keys", "status"},
		{"keys", "status", "--scope", "tenant:a"},
		{"keys", "rotate", "--scope", "tenant:a"},
		{"keys", "rotate", "--scope", "tenant:a", "--all"},
		{"keys", "shred", "--scope", "tenant:a", "--yes"},
		{"keys", "rewrap"},
		{"keys", "rotate-kek"},
		{"audit", "verify"},
		append([]string{"migrate", "encrypt"}, tableArgs...),
		append([]string{"migrate", "reencrypt"}, tableArgs...),
		append([]string{"migrate", "verify", "--decrypt"}, tableArgs...),
		{"encrypt", "--scope", "tenant:a", "--in", in, "--out", out},
		{"decrypt", "--scope", "tenant:a", "--in", in, "--out", out},
	} {
		name := strings.Join(args[:2], " ")
		r := runIn(t, with(vars, "PHICRYPT_KEYS_DSN", "sqlite:"+typo), args...)
		assert.Equal(t, exitFailure, r.code, "%s: %s", name, r.stderr)
		assert.Contains(t, r.stderr, "no key store", name)
		assert.Contains(t, r.stderr, "keys init", name)
		assert.NoFileExists(t, typo, name)
		assert.NoFileExists(t, out, name)
	}
	kekAfter, err := os.ReadFile(filepath.Join(dir, "kek.json"))
	require.NoError(t, err)
	assert.Equal(t, kekBefore, kekAfter, "rotate-kek refused the key store before rotating the KEK")

	// A database that exists without a key store is refused, and left
	// without one.
	r := runIn(t, with(vars, "PHICRYPT_KEYS_DSN", "sqlite:"+app), "keys", "status")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "holds no key store")
	db, err = sql.Open("sqlite", app)
	require.NoError(t, err)
	defer db.Close()
	var n int
	require.NoError(t, db.QueryRow("SELECT count(*) FROM sqlite_master WHERE name LIKE 'phicrypt_key%'").Scan(&n))
	assert.Zero(t, n, "no key store tables were created")

	// A mistyped application database is refused too.
	r = runIn(t, vars, append([]string{"migrate", "verify", "--dsn", "sqlite:" + filepath.Join(dir, "ap.db")}, table...)...)
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "no such database file")
	assert.NoFileExists(t, filepath.Join(dir, "ap.db"))
	r = runIn(t, vars, "migrate", "status", "--job", "encrypt:patients", "--dsn", "sqlite:"+filepath.Join(dir, "ap.db"))
	assert.Equal(t, exitFailure, r.code)
	assert.NoFileExists(t, filepath.Join(dir, "ap.db"))

	// --create creates it, on purpose.
	created := filepath.Join(dir, "new.db")
	r = runIn(t, with(vars, "PHICRYPT_KEYS_DSN", "sqlite:"+created), "keys", "rotate", "--scope", "tenant:a", "--create")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.FileExists(t, created)
}

// TestOpenStoreErrorKinds: the errors behind those messages are typed:
// keys.ErrNoStore for a key store, os.ErrNotExist for an application
// database, keys.ErrKeyNotFound for a scope or index.
func TestOpenStoreErrorKinds(t *testing.T) {
	ctx := context.Background()
	vars, dir := newKeyStore(t)
	e := &env{stderr: new(strings.Builder), getenv: func(k string) string { return vars[k] }}
	c := &common{kek: vars["PHICRYPT_KEK"], keysDSN: "sqlite:" + filepath.Join(dir, "typo.db")}
	_, err := e.openStore(ctx, c)
	assert.ErrorIs(t, err, keys.ErrNoStore)
	_, _, err = openDB("sqlite:"+filepath.Join(dir, "typo.db"), false)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.NoFileExists(t, filepath.Join(dir, "typo.db"))

	c = &common{kek: vars["PHICRYPT_KEK"], keysDSN: vars["PHICRYPT_KEYS_DSN"], guardKeys: true}
	s, err := e.open(ctx, c, openOptions{})
	require.NoError(t, err)
	defer s.Close()
	err = s.mustExist(ctx, keys.DataKey("tenant:typo"))
	assert.ErrorIs(t, err, keys.ErrKeyNotFound)
	_, err = s.keyring.EncryptionKey(ctx, "tenant:typo")
	assert.ErrorIs(t, err, keys.ErrKeyNotFound, "the guarded keyring creates no key")
	_, err = s.store.Get(ctx, keys.DataKey("tenant:typo"))
	assert.ErrorIs(t, err, keys.ErrKeyNotFound, "and stored none")
}

// TestEncryptRefusesANewScope: encrypt into a scope that has no keys, and
// no scope under it has any (a mistyped tenant), fails with
// keys.ErrKeyNotFound's message, writes no output and creates no key;
// --create encrypts into a new scope on purpose, and later runs, per
// patient or not, need no --create.
func TestEncryptRefusesANewScope(t *testing.T) {
	vars, dir := newKeyStore(t)
	in, _ := firstLines(t, dir, 5)
	out := filepath.Join(dir, "enc.ndjson")
	before := keySets(t, vars)
	for _, args := range [][]string{
		{"--scope", "tenant:typo"},
		{"--scope", "tenant:typo", "--per-patient"},
		{"--scope", "tenant:typo", "--index", "ssn:16"},
	} {
		r := runIn(t, vars, append([]string{"encrypt", "--in", in, "--out", out}, args...)...)
		assert.Equal(t, exitFailure, r.code, "%v: %s", args, r.stderr)
		assert.Contains(t, r.stderr, "scope tenant:typo has no keys", args)
		assert.Contains(t, r.stderr, keys.ErrKeyNotFound.Error(), args)
		assert.Contains(t, r.stderr, "--create", args)
		assert.NoFileExists(t, out, args)
	}
	assert.Equal(t, before, keySets(t, vars), "the refused runs created no key")

	r := runIn(t, vars, "encrypt", "--create", "--scope", "tenant:t", "--per-patient", "--in", in, "--out", out)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Len(t, keySets(t, vars), len(before)+5, "a data key per patient")
	// The tenant exists now, through its patients' scopes.
	r = runIn(t, vars, "encrypt", "--scope", "tenant:t", "--per-patient", "--in", in, "--out", out, "--force")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runIn(t, vars, "encrypt", "--scope", "tenant:t", "--in", in, "--out", out, "--force")
	require.Equal(t, exitOK, r.code, r.stderr)
}

// firstLines writes the first n lines of the Synthea Patient export to a
// file and returns its path and the patients' ids.
func firstLines(t *testing.T, dir string, n int) (string, []string) {
	t.Helper()
	f, err := os.Open(patientsNDJSON)
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var b strings.Builder
	for i := 0; i < n && sc.Scan(); i++ {
		b.Write(sc.Bytes())
		b.WriteByte('\n')
	}
	require.NoError(t, sc.Err())
	path := filepath.Join(dir, "Patient.ndjson")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
	ids, _ := phiOf(t, []byte(b.String()))
	require.Len(t, ids, n)
	return path, ids
}

// TestRotateRefusesWhatDoesNotExist: after a per-patient encrypt, a
// mistyped scope, the help's old index example (patients.ssn_index,
// where the FHIR table is Patient) and the tenant's own data key are
// refused, create nothing, and say what exists; --all rotates every key
// under the tenant and says how many.
func TestRotateRefusesWhatDoesNotExist(t *testing.T) {
	vars, dir := newKeyStore(t)
	in, ids := firstLines(t, dir, 20)
	auditFile := filepath.Join(dir, "audit.jsonl")
	r := runIn(t, vars, "encrypt", "--create", "--scope", "tenant:t", "--per-patient", "--index", "ssn:16",
		"--in", in, "--out", filepath.Join(dir, "enc.ndjson"), "--audit-file", auditFile)
	require.Equal(t, exitOK, r.code, r.stderr)
	before := keySets(t, vars)
	require.Len(t, before, 21, "a data key per patient, the tenant's index key")

	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:typo")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "scope tenant:typo has no data key (pass --create to create it): "+keys.ErrKeyNotFound.Error())

	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:t", "--index", "patients.ssn_index")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "scope tenant:t has no index key patients.ssn_index (pass --create to create it); it has: index key Patient.ssn_index")

	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:t")
	assert.Equal(t, exitFailure, r.code, "the tenant has no data key of its own: its patients do")
	assert.Contains(t, r.stderr, "scope tenant:t has no data key (pass --create to create it); it has: index key Patient.ssn_index; 20 scopes under it (tenant:t/…) have keys: rotate them with --all")

	r = runIn(t, vars, "keys", "status", "--scope", "tenant:typo")
	assert.Equal(t, exitFailure, r.code)
	assert.Equal(t, before, keySets(t, vars), "no refused command created a key")

	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:t", "--index", "Patient.ssn_index")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "version 2 is active")

	r = runIn(t, vars, "keys", "shred", "--scope", "tenant:t/patient/"+ids[0], "--yes")
	require.Equal(t, exitOK, r.code, r.stderr)

	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:t", "--all")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "rotated 20 key sets in 20 scopes under tenant:t; skipped 1 key set that was shredded\n", r.stdout)
	after := keySets(t, vars)
	require.Len(t, after, 21, "--all rotates, it creates no key set")
	for _, ks := range after {
		last := ks.Versions[len(ks.Versions)-1]
		switch {
		case ks.Scope == "tenant:t/patient/"+ids[0]:
			assert.Equal(t, "destroyed", last.State)
		case ks.Scope == "tenant:t":
			assert.Equal(t, uint32(3), last.Version, "the index key, rotated twice")
			assert.Equal(t, "active", last.State)
		default:
			assert.Equal(t, uint32(2), last.Version, ks.Scope)
			assert.Equal(t, "active", last.State, ks.Scope)
		}
	}

	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:nobody", "--all")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, keys.ErrKeyNotFound.Error())
	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:t", "--all", "--index", "Patient.ssn_index")
	assert.Equal(t, exitUsage, r.code)
	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:new", "--create")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "version 1 is active")
}

// TestMigrateRefusesAnUnknownScope: the migrate commands refuse a --scope
// without keys unless --create, and create nothing.
func TestMigrateRefusesAnUnknownScope(t *testing.T) {
	vars, dir := newKeyStore(t)
	app := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", app)
	require.NoError(t, err)
	legacyTable(t, db, 10, false)
	db.Close()
	vars = with(vars, "PHICRYPT_DSN", "sqlite:"+app)
	fixed := []string{"--table", "patients", "--id", "id", "--scope", "tenant:typo", "--column", "ssn:string"}
	for _, sub := range []string{"encrypt", "reencrypt", "reindex"} {
		r := runIn(t, vars, append([]string{"migrate", sub}, fixed...)...)
		assert.Equal(t, exitFailure, r.code, sub)
		assert.Contains(t, r.stderr, "scope tenant:typo has no data key (pass --create to create it)", sub)
	}
	r := runIn(t, vars, append([]string{"migrate", "verify", "--decrypt"}, fixed...)...)
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "scope tenant:typo has no data key")
	assert.Empty(t, keySets(t, vars))

	r = runIn(t, vars, append([]string{"migrate", "encrypt", "--create"}, fixed...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "changed 10")
}

// TestStatusOfAnUnknownScope: keys status --scope refuses a scope
// without keys (keys.ErrKeyNotFound, exit code 1) whatever the output
// format: a script reading --json must not take a mistyped scope for one
// that exists, and nothing is printed on standard output.
func TestStatusOfAnUnknownScope(t *testing.T) {
	vars, _ := newKeyStore(t)
	require.Equal(t, exitOK, runIn(t, vars, "keys", "rotate", "--create", "--scope", "tenant:a").code)
	for _, args := range [][]string{
		{"keys", "status", "--scope", "tenant:typo"},
		{"keys", "status", "--scope", "tenant:typo", "--json"},
	} {
		r := runIn(t, vars, args...)
		assert.Equal(t, exitFailure, r.code, "%v: %s", args, r.stdout)
		assert.Contains(t, r.stderr, "scope tenant:typo has no keys: "+keys.ErrKeyNotFound.Error())
		assert.Empty(t, r.stdout, args)
	}
	r := runIn(t, vars, "keys", "status", "--scope", "tenant:a", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"scope": "tenant:a"`)
}

// TestRotateAllOfAShreddedScope: keys rotate --all of a scope whose every
// key set was shredded rotates nothing, and fails like keys rotate of one
// shredded key set (keys.ErrKeyDestroyed, exit code 1) instead of
// reporting "rotated 0 key sets" as a success.
func TestRotateAllOfAShreddedScope(t *testing.T) {
	vars, dir := newKeyStore(t)
	in, ids := firstLines(t, dir, 3)
	r := runIn(t, vars, "encrypt", "--create", "--scope", "tenant:t", "--per-patient", "--in", in, "--out", filepath.Join(dir, "enc.ndjson"))
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runIn(t, vars, "keys", "shred", "--scope", "tenant:t/patient/"+ids[0], "--yes")
	require.Equal(t, exitOK, r.code, r.stderr)

	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:t/patient/"+ids[0], "--all")
	assert.Equal(t, exitFailure, r.code, r.stdout)
	assert.Contains(t, r.stderr, keys.ErrKeyDestroyed.Error())
	assert.Contains(t, r.stderr, "every key set of tenant:t/patient/"+ids[0]+" and of the scopes under it was shredded")

	r = runIn(t, vars, "keys", "shred", "--scope", "tenant:t", "--yes")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:t", "--all")
	assert.Equal(t, exitFailure, r.code, r.stdout)
	assert.Contains(t, r.stderr, keys.ErrKeyDestroyed.Error())
}
