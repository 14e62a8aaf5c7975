package benchcmp

import "time"

// CPUTime returns the CPU time this process has used so far (Linux), or
// the wall time since the package was loaded elsewhere. A benchmark whose
// work is split between this process and another (a database server) uses
// it to report this process's share, which other processes' load barely
// moves.
func CPUTime() time.Duration { return cpuNow() }
