package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInterruptWhileWaitingForInput: an interrupt (the context canceled,
// as SIGINT does) stops encrypt and decrypt even while their input has
// nothing to read, such as a terminal or an idle pipe: the command exits
// with code 1 and leaves no output file, instead of hanging until the
// input ends.
func TestInterruptWhileWaitingForInput(t *testing.T) {
	vars, dir := newKeyStore(t)
	require.Equal(t, exitOK, runIn(t, vars, "keys", "rotate", "--create", "--scope", "tenant:t").code)

	// runWaiting runs args with stdin as standard input, cancels the
	// context once the command waits for input, and returns the result.
	runWaiting := func(t *testing.T, stdin io.Reader, args ...string) result {
		t.Helper()
		var out, errOut bytes.Buffer
		e := &env{stdin: stdin, stdout: &out, stderr: &errOut, getenv: func(k string) string { return vars[k] }}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		go func() { done <- run(ctx, e, args) }()
		time.Sleep(300 * time.Millisecond) // the command is waiting for its first line
		cancel()
		select {
		case code := <-done:
			return result{code: code, stdout: out.String(), stderr: errOut.String()}
		case <-time.After(10 * time.Second):
			t.Fatalf("phicrypt %v still waits for input after the interrupt", args)
		}
		return result{}
	}

	for _, verb := range []string{"encrypt", "decrypt"} {
		t.Run(verb+" from standard input", func(t *testing.T) {
			pr, pw := io.Pipe() // nothing is ever written
			t.Cleanup(func() { pw.Close() })
			out := filepath.Join(dir, verb+"-stdin.ndjson")
			r := runWaiting(t, pr, verb, "--scope", "tenant:t", "--out", out)
			assert.Equal(t, exitFailure, r.code, r.stderr)
			assert.Contains(t, r.stderr, context.Canceled.Error())
			assert.NoFileExists(t, out)
			assertNoTempFiles(t, dir)
		})
	}

	t.Run("migrate spec from standard input", func(t *testing.T) {
		pr, pw := io.Pipe()
		t.Cleanup(func() { pw.Close() })
		r := runWaiting(t, pr, "migrate", "verify", "--dsn", vars["PHICRYPT_KEYS_DSN"], "--spec", "-")
		assert.Equal(t, exitFailure, r.code, r.stderr)
		assert.Contains(t, r.stderr, context.Canceled.Error())
	})

	t.Run("encrypt from a named pipe", func(t *testing.T) {
		fifo := filepath.Join(dir, "in.fifo")
		require.NoError(t, syscall.Mkfifo(fifo, 0o600))
		// Held open for writing (and never written), so that opening it
		// for reading does not block, but reading does.
		w, err := os.OpenFile(fifo, os.O_RDWR, 0)
		require.NoError(t, err)
		t.Cleanup(func() { w.Close() })
		out := filepath.Join(dir, "fifo.ndjson")
		r := runWaiting(t, bytes.NewReader(nil), "encrypt", "--scope", "tenant:t", "--in", fifo, "--out", out)
		assert.Equal(t, exitFailure, r.code, r.stderr)
		assert.Contains(t, r.stderr, context.Canceled.Error())
		assert.NoFileExists(t, out)
		assertNoTempFiles(t, dir)
	})
}
