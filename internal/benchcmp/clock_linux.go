package benchcmp

import (
	"time"

	"golang.org/x/sys/unix"
)

// cpuNow returns the CPU time the process has used.
func cpuNow() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}
