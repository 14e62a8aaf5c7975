//go:build !linux

package benchcmp

import "time"

var epoch = time.Now()

// cpuNow returns the wall time since the package was loaded: platforms
// other than Linux have no process CPU clock here.
func cpuNow() time.Duration { return time.Since(epoch) }
