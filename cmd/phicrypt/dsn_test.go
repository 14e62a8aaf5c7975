package main

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
