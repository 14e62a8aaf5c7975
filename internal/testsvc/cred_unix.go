//go:build unix

package testsvc

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// systemUser is an account that servers refusing root run as.
type systemUser struct {
	name     string
	uid, gid int
}

// dropRoot returns the account named name when the process runs as root,
// or nil when it does not and no change of user is needed.
func dropRoot(name string) (*systemUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, unavailable("testsvc: running as root, and there is no %q user to run the server as: install the distribution's package that creates it (apt-get install -y postgresql-15) or run tests as another user (%v)", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("testsvc: user %q has a non-numeric uid or gid", name)
	}
	return &systemUser{name: name, uid: uid, gid: gid}, nil
}

// apply makes a command run as u; a nil u changes nothing.
func (u *systemUser) apply(attr *syscall.SysProcAttr) {
	if u == nil {
		return
	}
	attr.Credential = &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: []uint32{}}
}

// chown gives path to u; a nil u changes nothing.
func (u *systemUser) chown(path string) error {
	if u == nil {
		return nil
	}
	if err := os.Chown(path, u.uid, u.gid); err != nil {
		return fmt.Errorf("testsvc: %w", err)
	}
	return nil
}

// processAlive reports whether a process with this id exists.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
