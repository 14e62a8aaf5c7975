package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields/gormphi"
	"github.com/phicrypt/phicrypt/internal/testsvc"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

// TestAuditedBeforeResponse kills the service with SIGKILL the moment a
// create's response arrives, and finds that create's audit event in the
// log: an event is committed before the response that it records is sent.
func TestAuditedBeforeResponse(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-addr", "127.0.0.1:0", "-dir", dir)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	exited, err := testsvc.StartChild(cmd)
	require.NoError(t, err)
	var exitErr error
	wait := sync.OnceFunc(func() { exitErr = <-exited })
	t.Cleanup(func() { cmd.Process.Kill(); wait() })

	// The service logs its address once it listens.
	var addr string
	lines := bufio.NewScanner(stderr)
	deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	for addr == "" && lines.Scan() {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal(lines.Bytes(), &rec) == nil && rec.Msg == "listening" {
			addr = rec.Addr
		}
	}
	deadline.Stop()
	require.NotEmpty(t, addr, "the service did not start")
	go func() {
		for lines.Scan() {
		}
	}()

	const n = 5
	var ids []string
	for i := range n {
		body, _ := json.Marshal(map[string]string{"mrn": "MRN-KILL-" + string(rune('A'+i)), "ssn": "999-12-3456",
			"first": "Ana", "last": "Silva", "birth_date": "1980-02-03"})
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/patients", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-User", "dr-kill")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var out struct{ ID string }
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, resp.StatusCode)
		ids = append(ids, out.ID)
	}
	// The last response has just arrived: kill at once.
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	wait()
	require.Error(t, exitErr, "killed")

	ctx := context.Background()
	db, err := sql.Open("sqlite", gormphi.SQLiteDSN(filepath.Join(dir, "keys.db")))
	require.NoError(t, err)
	defer db.Close()
	kek, err := local.New(local.Config{Path: filepath.Join(dir, "kek.json")})
	require.NoError(t, err)
	log, err := keys.OpenAuditLog(ctx, db, keys.SQLite, kek)
	require.NoError(t, err)
	report, err := log.Verify(ctx, keys.VerifyOptions{})
	require.NoError(t, err, "the chain is intact after SIGKILL")
	require.Positive(t, report.Events)

	rows, err := db.QueryContext(ctx, "SELECT event FROM phicrypt_audit")
	require.NoError(t, err)
	defer rows.Close()
	written := map[string]bool{}
	for rows.Next() {
		var raw string
		require.NoError(t, rows.Scan(&raw))
		var e keys.Event
		require.NoError(t, json.Unmarshal([]byte(raw), &e))
		if e.Op == OpPHIWrite && e.Principal == "dr-kill" {
			written[e.Key] = true
		}
	}
	require.NoError(t, rows.Err())
	for _, id := range ids {
		assert.True(t, written["patients/"+id], "the create of %s was answered but is not in the audit log", id)
	}
}
