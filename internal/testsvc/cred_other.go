//go:build !unix

package testsvc

import "syscall"

// systemUser is an account that servers refusing root run as; there is
// none off Unix.
type systemUser struct{}

// dropRoot returns nil: off Unix there is no root to leave.
func dropRoot(string) (*systemUser, error) { return nil, nil }

// apply changes nothing.
func (*systemUser) apply(*syscall.SysProcAttr) {}

// chown changes nothing.
func (*systemUser) chown(string) error { return nil }

// processAlive reports true: off Unix, stale folders are not swept.
func processAlive(int) bool { return true }
