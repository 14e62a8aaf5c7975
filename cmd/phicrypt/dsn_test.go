package main

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
)

// TestSQLiteDSNWithoutAFile: a SQLite DSN that names no file (an empty
// path, as "sqlite:$UNSET_VARIABLE" gives, or an in-memory database) is a
// usage error for every command, --create included. SQLite would open a
// database that vanishes when phicrypt exits: encrypt and migrate encrypt
// would write ciphertexts whose keys nobody can ever read again, and
// report success.
func TestSQLiteDSNWithoutAFile(t *testing.T) {
	vars, dir := newKeyStore(t)
	in := filepath.Join(dir, "in.ndjson")
	require.NoError(t, os.WriteFile(in, headLines(t, patientsNDJSON, 3), 0o600))
	out := filepath.Join(dir, "out.ndjson")
	app := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", app)
	require.NoError(t, err)
	defer db.Close()
	legacyTable(t, db, 10, false)
	tableArgs := append([]string{"--dsn", "sqlite:" + app}, table...)

	for _, dsn := range []string{"sqlite:", "file:", "sqlite:?_pragma=busy_timeout(1000)", "sqlite::memory:", "file::memory:?cache=shared", "sqlite:" + filepath.Join(dir, "k.db") + "?mode=memory"} {
		for _, args := range [][]string{
			{"keys", "init"},
			{"keys", "rotate", "--create", "--scope", "tenant:z"},
			{"encrypt", "--create", "--scope", "tenant:z", "--in", in, "--out", out},
			append([]string{"migrate", "encrypt", "--create"}, tableArgs...),
		} {
			r := runIn(t, with(vars, "PHICRYPT_KEYS_DSN", dsn), args...)
			assert.Equal(t, exitUsage, r.code, "%q %v: %s", dsn, args[:2], r.stderr)
			assert.Contains(t, r.stderr, "names no database file", dsn)
			assert.NoFileExists(t, out, dsn)
		}
		r := runIn(t, vars, append([]string{"migrate", "verify", "--dsn", dsn}, table...)...)
		assert.Equal(t, exitUsage, r.code, "%q migrate verify: %s", dsn, r.stderr)
	}
	var plaintext int
	require.NoError(t, db.QueryRow("SELECT count(*) FROM patients WHERE ssn NOT LIKE 'phicrypt:%'").Scan(&plaintext))
	assert.Equal(t, 10, plaintext, "no row was encrypted under keys that vanish")
	assertNoTempFiles(t, dir)
}

// TestMigrateCreateNeedsANamedKeyStore: without --keys-dsn, the migrate
// commands use the key store of the tables' database, which must exist:
// --create creates scopes' keys, never a key store that nobody named in
// the application's database (whose rows, encrypted under its keys, the
// application reading its own key store could not decrypt).
func TestMigrateCreateNeedsANamedKeyStore(t *testing.T) {
	named, dir := newKeyStore(t)
	app := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", app)
	require.NoError(t, err)
	defer db.Close()
	legacyTable(t, db, 10, false)
	vars := map[string]string{"PHICRYPT_KEK": named["PHICRYPT_KEK"], "PHICRYPT_DSN": "sqlite:" + app}

	for _, args := range [][]string{
		append([]string{"migrate", "encrypt", "--create"}, table...),
		append([]string{"migrate", "encrypt", "--create", "--dry-run"}, table...),
		append([]string{"migrate", "verify", "--decrypt"}, table...),
	} {
		r := runIn(t, vars, args...)
		assert.Equal(t, exitFailure, r.code, "%v: %s", args[:3], r.stderr)
		assert.Contains(t, r.stderr, "no --keys-dsn", args[:3])
		assert.Contains(t, r.stderr, "holds no key store", args[:3])
	}
	e := &env{stderr: new(strings.Builder), getenv: func(k string) string { return vars[k] }}
	_, err = e.openStore(context.Background(), &common{kek: vars["PHICRYPT_KEK"], keysDSN: "sqlite:" + app, create: true, guardKeys: true, impliedStore: true})
	assert.ErrorIs(t, err, keys.ErrNoStore)
	var n int
	require.NoError(t, db.QueryRow("SELECT count(*) FROM sqlite_master WHERE name LIKE 'phicrypt_key%'").Scan(&n))
	assert.Zero(t, n, "no key store was created in the application's database")
	require.NoError(t, db.QueryRow("SELECT count(*) FROM patients WHERE ssn LIKE 'phicrypt:%'").Scan(&n))
	assert.Zero(t, n, "no row was encrypted")

	// Named, the key store is used; named with --create, it is created.
	r := runIn(t, with(vars, "PHICRYPT_KEYS_DSN", named["PHICRYPT_KEYS_DSN"]), append([]string{"migrate", "encrypt", "--create"}, table...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "changed 10")
	r = runIn(t, with(vars, "PHICRYPT_KEYS_DSN", "sqlite:"+app), append([]string{"migrate", "reencrypt", "--create"}, table...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
}
