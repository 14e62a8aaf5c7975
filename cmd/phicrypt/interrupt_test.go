package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
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
	// context once waiting is closed (the command waits for input), and
	// returns the result.
	runWaiting := func(t *testing.T, stdin io.Reader, waiting <-chan struct{}, args ...string) result {
		t.Helper()
		var out, errOut bytes.Buffer
		e := &env{stdin: stdin, stdout: &out, stderr: &errOut, getenv: func(k string) string { return vars[k] }}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		go func() { done <- run(ctx, e, args) }()
		select {
		case <-waiting:
		case code := <-done:
			t.Fatalf("phicrypt %v exited with code %d before reading its input: %s", args, code, errOut.String())
		}
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
			stdin := newIdleReader(t)
			out := filepath.Join(dir, verb+"-stdin.ndjson")
			r := runWaiting(t, stdin, stdin.reading, verb, "--scope", "tenant:t", "--out", out)
			assert.Equal(t, exitFailure, r.code, r.stderr)
			assert.Contains(t, r.stderr, context.Canceled.Error())
			assert.NoFileExists(t, out)
			assertNoTempFiles(t, dir)
		})
	}

	t.Run("migrate spec from standard input", func(t *testing.T) {
		stdin := newIdleReader(t)
		r := runWaiting(t, stdin, stdin.reading, "migrate", "verify", "--dsn", vars["PHICRYPT_KEYS_DSN"], "--spec", "-")
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
		// No hook in a named pipe: the command waits for its first line
		// long before this.
		waiting := make(chan struct{})
		time.AfterFunc(time.Second, func() { close(waiting) })
		r := runWaiting(t, bytes.NewReader(nil), waiting, "encrypt", "--scope", "tenant:t", "--in", fifo, "--out", out)
		assert.Equal(t, exitFailure, r.code, r.stderr)
		assert.Contains(t, r.stderr, context.Canceled.Error())
		assert.NoFileExists(t, out)
		assertNoTempFiles(t, dir)
	})
}

// idleReader is an input that never has anything to read, like a
// terminal nobody types in: its first Read closes reading, then every
// Read blocks until the test ends.
type idleReader struct {
	reading, end chan struct{}
	once         sync.Once
}

func newIdleReader(t *testing.T) *idleReader {
	r := &idleReader{reading: make(chan struct{}), end: make(chan struct{})}
	t.Cleanup(func() { close(r.end) })
	return r
}

func (r *idleReader) Read([]byte) (int, error) {
	r.once.Do(func() { close(r.reading) })
	<-r.end
	return 0, io.EOF
}
