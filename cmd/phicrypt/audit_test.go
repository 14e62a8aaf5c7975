package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/kmsopen"
)

// runIn runs the command line in this process with the environment vars.
func runIn(t *testing.T, vars map[string]string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &env{stdin: bytes.NewReader(nil), stdout: &out, stderr: &errOut, getenv: func(k string) string { return vars[k] }}
	code := run(context.Background(), e, args)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// TestKeyOperationsAreInTheAuditLog: keys init creates the audit log in
// the key store's database by default, and shred, rotate, rotate-kek and rewrap are recorded in it, with
// the operator as principal, and the log's own key cannot be shredded.
func TestKeyOperationsAreInTheAuditLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	kekURI := "local://" + filepath.Join(dir, "kek.json")
	dbPath := filepath.Join(dir, "keys.db")
	vars := map[string]string{"PHICRYPT_KEK": kekURI, "PHICRYPT_KEYS_DSN": "sqlite:" + dbPath, "PHICRYPT_PRINCIPAL": "alice"}

	r := runIn(t, vars, "keys", "init", "--create")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "audit log ready", "keys init creates the audit log unless --audit-log=false")

	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:a", "--create")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "audit: 2 key events (1 create, 1 rotate) recorded in the key store's audit log\n", r.stderr,
		"one summary line on stderr, not the events")
	r = runIn(t, vars, "keys", "shred", "--scope", "phicrypt:audit", "--yes")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, keys.ErrReservedScope.Error())
	r = runIn(t, vars, "keys", "rotate-kek")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runIn(t, vars, "keys", "rewrap")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "rewrapped 3", "the data key, the metadata key and the audit log's key")
	r = runIn(t, vars, "keys", "shred", "--scope", "tenant:a", "--yes")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.NotContains(t, r.stderr, `"op"`, "the events are in the log, not on stderr")
	assert.Contains(t, r.stderr, "audit: 2 key events (1 destroy, 1 state-change) recorded in the key store's audit log")

	kek, err := kmsopen.Open(ctx, kekURI)
	require.NoError(t, err)
	db, err := sql.Open("sqlite", "file:"+dbPath)
	require.NoError(t, err)
	defer db.Close()
	log, err := keys.OpenAuditLog(ctx, db, keys.SQLite, kek)
	require.NoError(t, err)
	_, err = log.Verify(ctx, keys.VerifyOptions{})
	require.NoError(t, err, "the log is intact and still verifiable")

	rows, err := db.QueryContext(ctx, "SELECT event FROM phicrypt_audit ORDER BY seq")
	require.NoError(t, err)
	defer rows.Close()
	type event struct {
		Op, Scope, Purpose, Principal, Outcome, ErrorClass string `json:",omitempty"`
	}
	var got []event
	for rows.Next() {
		var raw string
		require.NoError(t, rows.Scan(&raw))
		var ev keys.Event
		require.NoError(t, json.Unmarshal([]byte(raw), &ev))
		assert.Equal(t, "alice", ev.Principal)
		got = append(got, event{Op: string(ev.Op), Scope: ev.Scope, Purpose: ev.Purpose, Outcome: string(ev.Outcome), ErrorClass: ev.ErrorClass})
	}
	require.NoError(t, rows.Err())
	want := []event{
		{Op: "create", Scope: "tenant:a", Purpose: "phicrypt keys rotate", Outcome: "success"},
		{Op: "rotate", Scope: "tenant:a", Purpose: "phicrypt keys rotate", Outcome: "success"},
		{Op: "destroy", Scope: "phicrypt:audit", Purpose: "phicrypt keys shred", Outcome: "failure", ErrorClass: "reserved-scope"},
		{Op: "kek-rotate", Purpose: "phicrypt keys rotate-kek", Outcome: "success"},
		{Op: "rewrap", Scope: "phicrypt:audit", Purpose: "phicrypt keys rewrap", Outcome: "success"},
		{Op: "rewrap", Scope: "phicrypt:metadata", Purpose: "phicrypt keys rewrap", Outcome: "success"},
		{Op: "rewrap", Scope: "tenant:a", Purpose: "phicrypt keys rewrap", Outcome: "success"},
		{Op: "state-change", Scope: "tenant:a", Purpose: "phicrypt keys shred", Outcome: "success"},
		{Op: "destroy", Scope: "tenant:a", Purpose: "phicrypt keys shred", Outcome: "success"},
	}
	assert.Equal(t, want, got)

	// A log that cannot record fails the operation (fail-closed).
	_, err = db.ExecContext(ctx, "DROP TABLE phicrypt_audit")
	require.NoError(t, err)
	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:b", "--create")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, keys.ErrAudit.Error())
}

// TestKeyOperationsWithoutAnAuditLog: without one (keys init
// --audit-log=false), key operations work as before, audited on stderr
// only.
func TestKeyOperationsWithoutAnAuditLog(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"PHICRYPT_KEK": "local://" + filepath.Join(dir, "kek.json"), "PHICRYPT_KEYS_DSN": "sqlite:" + filepath.Join(dir, "keys.db")}
	r := runIn(t, vars, "keys", "init", "--create", "--audit-log=false")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:a", "--create")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stderr, `"op":"rotate"`, "without a sink, the events go to stderr: none is lost")
	r = runIn(t, vars, "keys", "rotate-kek")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stderr, `"op":"kek-rotate"`)
	r = runIn(t, vars, "keys", "shred", "--scope", "tenant:a", "--yes")
	require.Equal(t, exitOK, r.code, r.stderr)
}

// TestAuditLogWithoutItsChainKey: a database writer who deletes the audit
// log's chain key does not turn the log into "no log": key operations
// refuse to run (fail closed, before any change), keys init does not start
// a new chain over the old events, and audit verify reports the log
// altered (exit 3).
func TestAuditLogWithoutItsChainKey(t *testing.T) {
	ctx := context.Background()
	vars, dir := newKeyStore(t)
	for _, s := range []string{"tenant:a", "tenant:b"} {
		r := runIn(t, vars, "keys", "rotate", "--scope", s, "--create")
		require.Equal(t, exitOK, r.code, r.stderr)
	}
	r := runIn(t, vars, "audit", "verify")
	require.Equal(t, exitOK, r.code, r.stderr)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "keys.db")+"?_pragma=busy_timeout(10000)")
	require.NoError(t, err)
	defer db.Close()
	count := func(query string) int {
		t.Helper()
		var n int
		require.NoError(t, db.QueryRowContext(ctx, query).Scan(&n))
		return n
	}
	for _, q := range []string{
		"DELETE FROM phicrypt_keys WHERE scope = 'phicrypt:audit'",
		"DELETE FROM phicrypt_key_sets WHERE scope = 'phicrypt:audit'",
	} {
		_, err := db.ExecContext(ctx, q)
		require.NoError(t, err)
	}
	events := count("SELECT count(*) FROM phicrypt_audit")
	kekFile, err := os.ReadFile(filepath.Join(dir, "kek.json"))
	require.NoError(t, err)

	for _, args := range [][]string{
		{"keys", "shred", "--scope", "tenant:a", "--yes"},
		{"keys", "rotate", "--scope", "tenant:b"},
		{"keys", "rotate-kek"},
		{"keys", "rewrap"},
	} {
		r := runIn(t, vars, args...)
		assert.Equal(t, exitFailure, r.code, "%v: %s", args, r.stdout)
		assert.Contains(t, r.stderr, keys.ErrAuditTampered.Error(), args)
		assert.NotContains(t, r.stderr, `"op"`, "%v: no event falls back to stderr", args)
	}
	assert.Equal(t, events, count("SELECT count(*) FROM phicrypt_audit"))
	assert.Equal(t, 2, count("SELECT count(*) FROM phicrypt_keys WHERE scope IN ('tenant:a', 'tenant:b') AND state = 2"),
		"nothing was shredded or rotated")
	after, err := os.ReadFile(filepath.Join(dir, "kek.json"))
	require.NoError(t, err)
	assert.Equal(t, kekFile, after, "the KEK was not rotated")

	r = runIn(t, vars, "keys", "init")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, keys.ErrAuditTampered.Error())
	assert.Zero(t, count("SELECT count(*) FROM phicrypt_keys WHERE scope = 'phicrypt:audit'"), "no new chain key over the old events")

	r = runIn(t, vars, "audit", "verify")
	assert.Equal(t, exitIncomplete, r.code, r.stderr)
	assert.Contains(t, r.stdout, "ALTERED")
	assert.Contains(t, r.stdout, "chain key is gone")
}
