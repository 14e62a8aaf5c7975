package testsvc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// process is a server running as a child of the test process.
type process struct {
	name    string // for messages
	cmd     *exec.Cmd
	logPath string        // the server's stdout and stderr
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid once done is closed
}

// startProcess starts cmd with its output in logPath. On Linux the child
// gets deathSig when the test process dies, so that a killed or timed-out
// test binary leaves no server behind. The parent-death signal fires when
// the thread that started the child exits, so the child is started and
// waited for on one goroutine locked to its thread.
func startProcess(name string, cmd *exec.Cmd, logPath string, deathSig syscall.Signal) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testsvc: %s: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	setDeathSignal(cmd.SysProcAttr, deathSig)
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the child
		err := cmd.Start()
		logFile.Close() // the child holds its own copy
		started <- err
		if err != nil {
			return
		}
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("testsvc: start %s: %w", name, err)
	}
	return p, nil
}

// StartChild starts cmd as a child that dies with the test binary: on
// Linux it gets SIGKILL when the test process exits, however it exits
// (killed, or panicking at go test's timeout). It returns a channel that
// delivers cmd.Wait's result. Tests start helper processes through it
// (a re-executed test binary, say) so that none outlives them. The signal
// reaches the child only: a child that starts long-lived processes of its
// own must start them the same way.
func StartChild(cmd *exec.Cmd) (<-chan error, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	setDeathSignal(cmd.SysProcAttr, syscall.SIGKILL)
	started := make(chan error, 1)
	exited := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that started the
		// child exits, so the child is started and waited for on one
		// thread, which ends with it.
		runtime.LockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			exited <- cmd.Wait()
		}
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return exited, nil
}

// RunChild runs cmd to completion as [StartChild] starts it.
func RunChild(cmd *exec.Cmd) error {
	exited, err := StartChild(cmd)
	if err != nil {
		return err
	}
	return <-exited
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig, waits up to grace for the process to exit, then kills it.
func (p *process) stop(sig syscall.Signal, grace time.Duration) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("testsvc: stop %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("testsvc: kill %s: %w", p.name, err)
	}
	<-p.done
	return nil
}

// logTail returns the last lines of the server's output, for error
// messages.
func (p *process) logTail() string { return fileTail(p.logPath, 2048) }

// fileTail returns up to the last n bytes of the file, trimmed to whole
// lines.
func fileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return strings.TrimSpace(string(b))
}

// waitReady polls ready every 50ms until it returns true, the process
// exits, or the context or readyTimeout ends.
func (p *process) waitReady(ctx context.Context, ready func(context.Context) bool) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready(ctx) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("testsvc: %s exited before it was ready (%v); its output:\n%s", p.name, p.waitErr, p.logTail())
		case <-ctx.Done():
			return fmt.Errorf("testsvc: %s not ready: %w; its output:\n%s", p.name, ctx.Err(), p.logTail())
		case <-tick.C:
		}
	}
}

// runCommand runs a short command, made with exec.CommandContext, to
// completion and returns its standard output. A failure's error holds the
// command's output.
func runCommand(cmd *exec.Cmd) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		out := strings.TrimSpace(stderr.String() + "\n" + stdout.String())
		return stdout.Bytes(), fmt.Errorf("testsvc: %s: %w: %s", strings.Join(cmd.Args, " "), err, out)
	}
	return stdout.Bytes(), nil
}
