package main

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
)

// headOf returns the anchor an intact verify printed.
func headOf(t *testing.T, stdout string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^head: (\d+:[0-9a-f]{64})$`).FindStringSubmatch(stdout)
	require.NotNil(t, m, stdout)
	return m[1]
}

// TestAuditVerify: audit verify reports an intact log with its head, and
// an edit, an insertion, a deletion and (against the anchor kept) a
// truncated tail with exit code 3, counts and the events concerned.
func TestAuditVerify(t *testing.T) {
	vars, dir := newKeyStore(t)
	for _, s := range []string{"tenant:a", "tenant:b"} {
		r := runIn(t, vars, "keys", "rotate", "--scope", s, "--create")
		require.Equal(t, exitOK, r.code, r.stderr)
	}
	r := runIn(t, vars, "audit", "verify")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "intact: 4 events, 0 anchors held")
	early := headOf(t, r.stdout)
	for _, s := range []string{"tenant:c", "tenant:d", "tenant:e"} {
		r := runIn(t, vars, "keys", "rotate", "--scope", s, "--create")
		require.Equal(t, exitOK, r.code, r.stderr)
	}
	r = runIn(t, vars, "audit", "verify", "--anchor", early)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "intact: 10 events, 1 anchor held")
	head := headOf(t, r.stdout)
	assert.Regexp(t, `^10:`, head)

	db, err := sql.Open("sqlite", filepath.Join(dir, "keys.db"))
	require.NoError(t, err)
	defer db.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		_, err := db.Exec(q, args...)
		require.NoError(t, err)
	}
	verify := func(args ...string) result {
		t.Helper()
		return runIn(t, vars, append([]string{"audit", "verify", "--anchor", early, "--anchor", head}, args...)...)
	}
	var event4 string
	require.NoError(t, db.QueryRow("SELECT event FROM phicrypt_audit WHERE seq = 4").Scan(&event4))
	var event6 string
	var mac6 []byte
	require.NoError(t, db.QueryRow("SELECT event, mac FROM phicrypt_audit WHERE seq = 6").Scan(&event6, &mac6))

	// An edit.
	exec("UPDATE phicrypt_audit SET event = ? WHERE seq = 4", event4[:len(event4)-1]+" ")
	r = verify()
	assert.Equal(t, exitIncomplete, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "ALTERED: 1 problem in 10 events read: 1 modified, 0 inserted, 0 deleted, 0 of 2 anchors missing")
	assert.Contains(t, r.stdout, "event 4: modified")
	exec("UPDATE phicrypt_audit SET event = ? WHERE seq = 4", event4)

	// A deletion.
	exec("DELETE FROM phicrypt_audit WHERE seq = 6")
	r = verify()
	assert.Equal(t, exitIncomplete, r.code)
	assert.Contains(t, r.stdout, "ALTERED: 1 problem in 9 events read: 0 modified, 0 inserted, 1 deleted, 0 of 2 anchors missing")
	assert.Contains(t, r.stdout, "event 6: deleted")
	exec("INSERT INTO phicrypt_audit (seq, event, mac) VALUES (?, ?, ?)", 6, event6, mac6)

	// An insertion, forged without the key.
	exec("INSERT INTO phicrypt_audit (seq, event, mac) VALUES (?, ?, ?)", 100, `{"op":"unwrap"}`, make([]byte, 32))
	r = verify()
	assert.Equal(t, exitIncomplete, r.code)
	assert.Contains(t, r.stdout, "ALTERED: 1 problem in 11 events read: 0 modified, 1 inserted, 0 deleted, 0 of 2 anchors missing")
	assert.Contains(t, r.stdout, "event 100: inserted")
	exec("DELETE FROM phicrypt_audit WHERE seq = 100")
	r = verify()
	require.Equal(t, exitOK, r.code, "restored: "+r.stdout)

	// A truncated tail with the head rewound: the chain left is intact,
	// only the anchor kept outside shows it.
	var mac8 []byte
	require.NoError(t, db.QueryRow("SELECT mac FROM phicrypt_audit WHERE seq = 8").Scan(&mac8))
	exec("DELETE FROM phicrypt_audit WHERE seq > 8")
	exec("UPDATE phicrypt_audit_head SET seq = 8, mac = ? WHERE id = 1", mac8)
	r = runIn(t, vars, "audit", "verify")
	assert.Equal(t, exitOK, r.code, "without an anchor, a clean truncation is invisible")
	r = verify()
	assert.Equal(t, exitIncomplete, r.code)
	assert.Contains(t, r.stdout, "ALTERED: 1 problem in 8 events read: 0 modified, 0 inserted, 0 deleted, 1 of 2 anchors missing")
	assert.Contains(t, r.stdout, "event 10: anchor not found")
	anchors := filepath.Join(dir, "anchors")
	require.NoError(t, os.WriteFile(anchors, []byte("# kept on WORM storage\n"+early+"\n\n"+head+"\n"), 0o600))
	r = runIn(t, vars, "audit", "verify", "--anchor-file", anchors)
	assert.Equal(t, exitIncomplete, r.code)
	assert.Contains(t, r.stdout, "1 of 2 anchors missing")

	// Bad anchors are usage errors; a store without a log is a failure.
	r = runIn(t, vars, "audit", "verify", "--anchor", "10:abc")
	assert.Equal(t, exitUsage, r.code)
	r = runIn(t, vars, "audit", "verify", "--anchor-file", filepath.Join(dir, "none"))
	assert.Equal(t, exitUsage, r.code)
	plain, _ := newKeyStore(t, "--audit-log=false")
	r = runIn(t, plain, "audit", "verify")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "has no audit log (keys init creates one)")
	r = runIn(t, vars, "audit")
	assert.Equal(t, exitUsage, r.code)
}

// TestAuditVerifyLiveLog: audit verify of an intact log that a running
// application appends to exits 0, every time.
func TestAuditVerifyLiveLog(t *testing.T) {
	ctx := context.Background()
	vars, dir := newKeyStore(t)
	kek, store := openKeys(t, vars, dir)
	app, err := keys.NewAuditLogIn(ctx, store, kek)
	require.NoError(t, err)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var appended atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			assert.NoError(t, app.Audit(ctx, keys.Event{Time: time.Now(), Op: keys.OpUse, Scope: "tenant:a", Key: "data", Outcome: keys.Success}))
			appended.Add(1)
			time.Sleep(time.Millisecond) // a busy service, not a flood
		}
	}()
	defer wg.Wait()
	defer close(stop)
	// For four seconds, at least 20 times, over at least 100 appends.
	deadline := time.Now().Add(4 * time.Second)
	for i := 0; i < 20 || appended.Load() < 100 || time.Now().Before(deadline); i++ {
		r := runIn(t, vars, "audit", "verify")
		require.Equal(t, exitOK, r.code, "an intact, live log: %s", r.stdout)
	}
}

// TestAuditVerifyEmptyAnchorFile: an --anchor-file that holds no anchor
// (empty, or only comments: the copy on WORM storage was never written,
// or was emptied) is a usage error, like a missing one, never an intact
// log checked against nothing, which a truncated tail passes.
func TestAuditVerifyEmptyAnchorFile(t *testing.T) {
	vars, dir := newKeyStore(t)
	for _, s := range []string{"tenant:a", "tenant:b"} {
		r := runIn(t, vars, "keys", "rotate", "--scope", s, "--create")
		require.Equal(t, exitOK, r.code, r.stderr)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "keys.db"))
	require.NoError(t, err)
	defer db.Close()
	var mac2 []byte
	require.NoError(t, db.QueryRow("SELECT mac FROM phicrypt_audit WHERE seq = 2").Scan(&mac2))
	_, err = db.Exec("DELETE FROM phicrypt_audit WHERE seq > 2")
	require.NoError(t, err)
	_, err = db.Exec("UPDATE phicrypt_audit_head SET seq = 2, mac = ? WHERE id = 1", mac2)
	require.NoError(t, err)

	for name, content := range map[string]string{"empty": "", "comments only": "# kept on WORM storage\n\n"} {
		anchors := filepath.Join(dir, "anchors")
		require.NoError(t, os.WriteFile(anchors, []byte(content), 0o600))
		r := runIn(t, vars, "audit", "verify", "--anchor-file", anchors)
		assert.Equal(t, exitUsage, r.code, "%s: %s", name, r.stdout)
		assert.Contains(t, r.stderr, "holds no anchor", name)
		assert.NotContains(t, r.stdout, "intact", name)
	}
}
