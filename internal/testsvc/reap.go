package testsvc

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// The reaper removes the temporary folders of a test binary that dies
// without removing them itself: killed with SIGKILL, or panicking at go
// test's timeout, when no cleanup runs. It is a shell that reads folder
// names on its standard input from a pipe whose other end only this
// process holds. When this process exits, however it exits, the pipe
// closes and the reaper removes the folders, after a pause that lets the
// servers, signalled by their parent-death signal, exit first; then it
// exits too. A folder already removed by Close costs nothing.
var reaper struct {
	once sync.Once
	mu   sync.Mutex
	w    *os.File // nil when the reaper could not start
}

// reaperScript collects folder names until end of input, then removes
// them, trying again once for a server that was still writing.
const reaperScript = `dirs=
while IFS= read -r d; do dirs="$dirs$d
"; done
sleep 1
for pass in 1 2; do
	printf '%s' "$dirs" | while IFS= read -r d; do [ -n "$d" ] && rm -rf -- "$d"; done
	sleep 1
done`

// reap hands dir to the reaper, starting it on the first call. Without a
// reaper (no /bin/sh), a later test binary's sweep removes the folder.
func reap(dir string) {
	reaper.once.Do(startReaper)
	reaper.mu.Lock()
	defer reaper.mu.Unlock()
	if reaper.w != nil {
		fmt.Fprintln(reaper.w, dir)
	}
}

func startReaper() {
	r, w, err := os.Pipe()
	if err != nil {
		return
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", reaperScript)
	cmd.Stdin = r
	// Its own process group: a signal to the test binary's group (a
	// terminal's ^C) must not stop it before it has cleaned up. No
	// standard output or error: go test waits for those to close.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return
	}
	// Never waited for: the reaper outlives this process by design.
	reaper.w = w
}
