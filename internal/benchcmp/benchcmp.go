// Package benchcmp runs two benchmark bodies side by side, interleaved, so
// that their ratio holds on a shared, noisy machine where two separate
// benchmarks, seconds apart, see different loads.
package benchcmp

import (
	"slices"
	"testing"
	"time"
)

// roundTime is how long a round of the base body should take, long enough
// for the clock's cost and resolution not to matter.
const roundTime = time.Millisecond

// Pair runs ours and base alternately, in rounds of about a millisecond
// of CPU time each, for as long as b asks. It reports the CPU time per call
// of each ("ns/ours", "ns/base") and the median over the rounds of their
// ratio ("ours/base"): where the platform has a process CPU clock (Linux),
// time that other processes take from this one is not counted, and a
// burst that still skews a few rounds does not move the median. The CPU
// clock counts every thread of the process, so garbage collection on
// other threads is charged to the body that caused it. The benchmark's
// ns/op is the wall time of one round of both. bytes, if positive, is the
// size each call processes: Pair then also reports the throughput of each
// ("MB/s-ours", "MB/s-base").
func Pair(b *testing.B, bytes int64, ours, base func()) {
	b.Helper()
	// Calibrate the round on base.
	base()
	start := cpuNow()
	base()
	one := max(cpuNow()-start, time.Microsecond)
	round := int(min(max(roundTime/one, 1), 1<<20))

	var tOurs, tBase time.Duration
	var ratios []float64
	calls := 0
	for b.Loop() {
		t0 := cpuNow()
		for range round {
			base()
		}
		t1 := cpuNow()
		for range round {
			ours()
		}
		t2 := cpuNow()
		tOurs += t2 - t1
		tBase += t1 - t0
		ratios = append(ratios, float64(t2-t1)/float64(max(t1-t0, 1)))
		calls += round
	}
	if calls == 0 {
		return
	}
	slices.Sort(ratios)
	b.ReportMetric(float64(tOurs.Nanoseconds())/float64(calls), "ns/ours")
	b.ReportMetric(float64(tBase.Nanoseconds())/float64(calls), "ns/base")
	b.ReportMetric(ratios[len(ratios)/2], "ours/base")
	if bytes > 0 {
		b.ReportMetric(float64(bytes*int64(calls))/tOurs.Seconds()/1e6, "MB/s-ours")
		b.ReportMetric(float64(bytes*int64(calls))/tBase.Seconds()/1e6, "MB/s-base")
	}
}
