package testsvc

import "syscall"

// setDeathSignal makes the child receive sig when the test process dies.
func setDeathSignal(attr *syscall.SysProcAttr, sig syscall.Signal) { attr.Pdeathsig = sig }
