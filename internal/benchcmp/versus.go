package benchcmp

import (
	"slices"
	"testing"
	"time"
)

// Versus runs ours and base in turn, b.N times each (ours first on even
// rounds, base first on odd ones), and reports the median over the pairs
// of ours's rate as a percentage of base's ("%-of-base"), by wall time.
// It is for work split between this process and a server (a SELECT of
// many rows): the server's time counts, which Pair's CPU clock would
// miss, and two calls next to each other see the same load on a shared
// machine, which two benchmarks seconds apart do not. Each call should
// take milliseconds or more.
func Versus(b *testing.B, ours, base func()) {
	b.Helper()
	timed := func(f func()) time.Duration {
		start := time.Now()
		f()
		return time.Since(start)
	}
	pct := make([]float64, 0, b.N)
	for i := range b.N {
		var to, tb time.Duration
		if i%2 == 0 {
			to, tb = timed(ours), timed(base)
		} else {
			tb, to = timed(base), timed(ours)
		}
		pct = append(pct, 100*tb.Seconds()/max(to, 1).Seconds())
	}
	if len(pct) == 0 {
		return
	}
	slices.Sort(pct)
	b.ReportMetric(pct[len(pct)/2], "%-of-base")
}
