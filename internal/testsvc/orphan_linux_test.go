//go:build linux

package testsvc_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phicrypt/phicrypt/internal/testsvc"
)

// orphanEnv, in the environment of a re-executed test binary, makes
// TestNoOrphans the victim: it starts every service it can and a helper
// child, writes what it started to the named file and waits to be killed.
const orphanEnv = "PHICRYPT_TESTSVC_ORPHAN_STATE"

// victimState is what the victim started.
type victimState struct {
	Dirs    []string          // temporary folders of the services
	Missing map[string]string // service: why it could not start
}

// TestNoOrphans kills a test binary with SIGKILL while it runs every
// service and a helper child, and checks that every process it started
// (servers, their own children, the helper, the reaper) is gone soon after
// and that the services' temporary folders are removed.
func TestNoOrphans(t *testing.T) {
	if path := os.Getenv(orphanEnv); path != "" {
		runVictim(t, path)
		return
	}
	state := filepath.Join(t.TempDir(), "state.json")
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoOrphans$", "-test.count=1")
	cmd.Env = append(os.Environ(), orphanEnv+"="+state)
	exited, err := testsvc.StartChild(cmd)
	if err != nil {
		t.Fatal(err)
	}
	var st victimState
	deadline := time.Now().Add(5 * time.Minute) // a loaded 2-core machine took over 2
	for {
		b, err := os.ReadFile(state)
		if err == nil && json.Unmarshal(b, &st) == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("the victim exited before it was ready: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the victim did not start its services in 5 minutes")
		}
	}
	tree := descendants(cmd.Process.Pid)
	t.Logf("processes of the test binary (pid %d) before SIGKILL:\n%s", cmd.Process.Pid, psLines(tree))
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited

	var left []int
	var dirs []string
	for end := time.Now().Add(20 * time.Second); ; {
		left = slices.DeleteFunc(slices.Clone(tree), func(pid int) bool { return !alive(pid) })
		dirs = slices.DeleteFunc(slices.Clone(st.Dirs), func(dir string) bool { _, err := os.Stat(dir); return err != nil })
		if (len(left) == 0 && len(dirs) == 0) || time.Now().After(end) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("of those, left after the kill: %d processes %v, %d folders %v", len(left), left, len(dirs), dirs)
	if len(left) > 0 {
		t.Errorf("processes outlived the test binary:\n%s", psLines(left))
	}
	if len(dirs) > 0 {
		t.Errorf("temporary folders outlived the test binary: %v", dirs)
	}
	if len(tree) < 3 {
		t.Errorf("the victim's tree has %d processes; want the services, the helper and the reaper", len(tree))
	}
	for service, why := range st.Missing {
		testsvc.Missing(t, service, "the orphan check ran without %s: %s", service, why)
	}
}

// runVictim starts every service it can, each in the way tests do, and a
// helper child, then records them and waits to be killed.
func runVictim(t *testing.T, statePath string) {
	ctx := t.Context()
	st := victimState{Missing: map[string]string{}}
	keep := func(service string, dir string, err error) {
		if err != nil {
			st.Missing[service] = err.Error()
			return
		}
		st.Dirs = append(st.Dirs, dir)
	}
	if p, err := testsvc.NewPostgres(ctx); err == nil {
		keep(testsvc.ServicePostgres, testsvc.DirOf(p), nil)
	} else {
		keep(testsvc.ServicePostgres, "", err)
	}
	if v, err := testsvc.NewVault(ctx); err == nil {
		keep(testsvc.ServiceVault, testsvc.DirOf(v), nil)
	} else {
		keep(testsvc.ServiceVault, "", err)
	}
	if k, err := testsvc.NewLocalKMS(ctx); err == nil {
		keep(testsvc.ServiceLocalKMS, testsvc.DirOf(k), nil)
	} else {
		keep(testsvc.ServiceLocalKMS, "", err)
	}
	if _, err := testsvc.StartChild(exec.Command("sleep", "600")); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(st)
	if err := os.WriteFile(statePath+".tmp", b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(statePath+".tmp", statePath); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Minute) // killed long before
}

// descendants returns pid and every process descended from it.
func descendants(pid int) []int {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := ppid(p); ok {
			parent[p] = pp
		}
	}
	out := []int{pid}
	for changed := true; changed; {
		changed = false
		for p, pp := range parent {
			if slices.Contains(out, pp) && !slices.Contains(out, p) {
				out = append(out, p)
				changed = true
			}
		}
	}
	slices.Sort(out)
	return out
}

// stat returns the fields of /proc/PID/stat after the command name.
func stat(pid int) ([]string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, false
	}
	return strings.Fields(s[i+1:]), true
}

func ppid(pid int) (int, bool) {
	f, ok := stat(pid)
	if !ok || len(f) < 2 {
		return 0, false
	}
	pp, err := strconv.Atoi(f[1])
	return pp, err == nil
}

// alive reports whether pid runs: it exists and is not a zombie waiting
// for a parent (or a container's init) to reap it.
func alive(pid int) bool {
	f, ok := stat(pid)
	return ok && len(f) > 0 && f[0] != "Z"
}

// psLines describes the processes, one a line.
func psLines(pids []int) string {
	var b strings.Builder
	for _, pid := range pids {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Fields(strings.ReplaceAll(string(cmdline), "\x00", " "))
		if len(args) > 4 {
			args = append(args[:4], "…")
		}
		state := "gone"
		if f, ok := stat(pid); ok {
			state = f[0]
		}
		fmt.Fprintf(&b, "  %7d %s %s\n", pid, state, strings.Join(args, " "))
	}
	return b.String()
}
