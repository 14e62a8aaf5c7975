package main

import (
	"bytes"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/testsvc"
)

// cliEnv, set to "1" in its environment, makes the test binary run
// phicrypt's main with its arguments instead of the tests: the CLI is
// tested as operators run it, as a process of its own, without a go build
// inside the tests.
const cliEnv = "PHICRYPT_CLI_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		main() // exits
	}
	os.Exit(testsvc.RunMain(m))
}

// result is a finished command.
type result struct {
	code           int
	stdout, stderr string
}

// phicrypt runs the binary with args and extra environment.
func phicrypt(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return phicryptIn(t, env, nil, args...)
}

// phicryptIn is phicrypt with stdin on its standard input.
func phicryptIn(t *testing.T, env []string, stdin []byte, args ...string) result {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), cliEnv+"=1"), env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := testsvc.RunChild(cmd)
	r := result{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return r
}

func TestUsageAndExitCodes(t *testing.T) {
	r := phicrypt(t, nil)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stdout, "Commands:")
	r = phicrypt(t, nil, "help")
	assert.Equal(t, exitOK, r.code)
	r = phicrypt(t, nil, "frobnicate")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, `unknown command "frobnicate"`)
	r = phicrypt(t, nil, "keys")
	assert.Equal(t, exitUsage, r.code)
	r = phicrypt(t, nil, "keys", "-h")
	assert.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stderr, "shred")
	r = phicrypt(t, nil, "keys", "status", "--nope")
	assert.Equal(t, exitUsage, r.code)
	r = phicrypt(t, nil, "keys", "rotate", "-h")
	assert.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stderr, "Examples:")
	r = phicrypt(t, []string{"PHICRYPT_KEK="}, "keys", "status", "--keys-dsn", "sqlite:/tmp/x.db")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "no KEK")
	r = phicrypt(t, nil, "keys", "status", "--kek", "local:///nonexistent/kek.json", "--keys-dsn", "sqlite:/tmp/x.db")
	assert.Equal(t, exitFailure, r.code)
	r = phicrypt(t, nil, "migrate", "encrypt", "--table", "x; drop", "--column", "a:string", "--scope", "s", "--dsn", "sqlite:/tmp/x.db")
	assert.Equal(t, exitUsage, r.code)
}

// legacyTable creates a table of n Synthea patients in plaintext.
func legacyTable(t *testing.T, db *sql.DB, n int, postgres bool) {
	t.Helper()
	blob := "BLOB"
	if postgres {
		blob = "BYTEA"
	}
	_, err := db.Exec(`CREATE TABLE patients (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, ssn TEXT, last TEXT, birth_date TEXT, ssn_index ` + blob + `)`)
	require.NoError(t, err)
	f, err := os.Open("../../testdata/synthea/patients.csv")
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	q := "INSERT INTO patients VALUES (?, ?, ?, ?, ?, NULL)"
	if postgres {
		q = "INSERT INTO patients VALUES ($1, $2, $3, $4, $5, NULL)"
	}
	for i, r := range rows[1 : n+1] {
		_, err := db.Exec(q, r[0], []string{"tenant:a", "tenant:b"}[i%2], r[3], r[8], r[1])
		require.NoError(t, err)
	}
}

var table = []string{"--table", "patients", "--id", "id", "--scope-column", "tenant_id",
	"--column", "ssn:string", "--column", "last:string", "--column", "birth_date:time", "--index", "ssn_index=ssn:digits:8"}

func TestKeysAndMigrationOnSQLite(t *testing.T) {
	dir := t.TempDir()
	dsn := "sqlite:" + filepath.Join(dir, "app.db")
	env := []string{"PHICRYPT_KEK=local://" + filepath.Join(dir, "kek.json"), "PHICRYPT_DSN=" + dsn, "PHICRYPT_KEYS_DSN=" + dsn}

	// Without the audit log, key events go to stderr, where this test
	// reads them.
	r := phicrypt(t, env, "keys", "init", "--create", "--key-id", "local:cli-test", "--audit-log=false")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "created KEK local:cli-test")
	fi, err := os.Stat(filepath.Join(dir, "kek.json"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	r = phicrypt(t, env, "keys", "init", "--create")
	assert.Equal(t, exitFailure, r.code, "init --create never overwrites a KEK")

	db, err := sql.Open("sqlite", filepath.Join(dir, "app.db"))
	require.NoError(t, err)
	defer db.Close()
	legacyTable(t, db, 300, false)

	r = phicrypt(t, env, append([]string{"migrate", "verify"}, table...)...)
	assert.Equal(t, exitIncomplete, r.code)
	assert.Contains(t, r.stdout, "column ssn: 300 plaintext")

	r = phicrypt(t, env, append([]string{"migrate", "encrypt", "--partition", "100"}, table...)...)
	assert.Equal(t, exitFailure, r.code, "new scopes need --create")
	assert.Contains(t, r.stderr, "pass --create")
	r = phicrypt(t, env, "keys", "status", "--scope", "tenant:a")
	assert.Equal(t, exitFailure, r.code, "the refused run created no key")

	r = phicrypt(t, env, append([]string{"migrate", "encrypt", "--dry-run", "--create"}, table...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "would change 300 (900 legacy plaintext values)")
	r = phicrypt(t, env, append([]string{"migrate", "encrypt", "--partition", "100", "--create"}, table...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "changed 300 (900 legacy plaintext values)")
	assert.Contains(t, r.stderr, `"op":"unwrap"`, "key operations are audited on stderr")
	assert.NotContains(t, r.stderr+r.stdout, "999-", "no PHI in the output")

	r = phicrypt(t, env, append([]string{"migrate", "verify", "--decrypt"}, table...)...)
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "column ssn: 0 plaintext, 0 null, 0 malformed, by key version v1=300")

	r = phicrypt(t, env, "migrate", "status", "--job", "encrypt:patients")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "partitions 3/3")

	// Rotate a tenant's data key, then re-encrypt.
	r = phicrypt(t, env, "keys", "rotate", "--scope", "tenant:a")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "version 2 is active")
	r = phicrypt(t, env, append([]string{"migrate", "reencrypt"}, table...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "changed 150")
	r = phicrypt(t, env, append([]string{"migrate", "verify"}, table...)...)
	require.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stdout, "v1=150 v2=150")

	// Rotate the KEK, rewrap the stored keys.
	r = phicrypt(t, env, "keys", "rotate-kek")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "version 2 wraps")
	r = phicrypt(t, env, "keys", "rewrap")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "rewrapped 6") // and the metadata key

	r = phicrypt(t, env, "keys", "status", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var sets []struct {
		Scope, Key string
		Versions   []struct{ State string }
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sets))
	assert.Len(t, sets, 5, "two tenants' data and index keys, and the metadata key")

	// Shred one tenant: its rows no longer decrypt, the other's do.
	r = phicrypt(t, env, "keys", "shred", "--scope", "tenant:a")
	assert.Equal(t, exitUsage, r.code, "shredding needs --yes")
	r = phicrypt(t, env, "keys", "shred", "--scope", "tenant:a", "--yes")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "destroyed 3 key versions in 2 key sets")
	r = phicrypt(t, env, append([]string{"migrate", "verify", "--decrypt"}, table...)...)
	assert.Equal(t, exitIncomplete, r.code)
	assert.Contains(t, r.stdout, "undecryptable rows: map[destroyed:150]")
	r = phicrypt(t, env, "keys", "shred", "--scope", "tenant:nobody", "--yes")
	assert.Equal(t, exitFailure, r.code)
}

func TestMigrationWorkersOnPostgres(t *testing.T) {
	pg := testsvc.SharedPostgres(t)
	dsn := pg.CreateDatabase(t, "cli_workers")
	dir := t.TempDir()
	env := []string{"PHICRYPT_KEK=local://" + filepath.Join(dir, "kek.json"), "PHICRYPT_DSN=" + dsn, "PHICRYPT_KEYS_DSN=" + dsn}
	r := phicrypt(t, env, "keys", "init", "--create")
	require.Equal(t, exitOK, r.code, r.stderr)
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	defer db.Close()
	legacyTable(t, db, 1174, true)
	r = phicrypt(t, env, append([]string{"migrate", "encrypt", "--workers", "3", "--partition", "100", "--create"}, table...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "changed 1174")
	r = phicrypt(t, env, "migrate", "status", "--job", "encrypt:patients")
	require.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stdout, "partitions 12/12")
	assert.True(t, strings.Count(r.stdout, "#") >= 2, "several workers took part: %s", r.stdout)
	r = phicrypt(t, env, append([]string{"migrate", "verify", "--decrypt"}, table...)...)
	assert.Equal(t, exitOK, r.code, r.stdout)
}
