//go:build !linux

package testsvc

import "syscall"

// setDeathSignal does nothing: only Linux has a parent-death signal, so
// elsewhere a server outlives a test binary that is killed.
func setDeathSignal(*syscall.SysProcAttr, syscall.Signal) {}
