// Package benchcmp runs two benchmark bodies side by side, interleaved, so
// that their ratio holds on a shared, noisy machine where two separate
// benchmarks, seconds apart, see different loads.
package benchcmp

import (
	"testing"
	"time"
)

// Pair runs ours and base alternately, in rounds of round calls each, for
// as long as b asks, and reports the time per call of each ("ns/ours",
// "ns/base") and their ratio ("ours/base"); the benchmark's ns/op is that
// of one round of both. bytes, if positive, is the size each call
// processes: Pair then also reports the throughput of each in MB/s and the
// throughput ratio is base/ours.
func Pair(b *testing.B, round int, bytes int64, ours, base func()) {
	b.Helper()
	var tOurs, tBase time.Duration
	calls := 0
	for b.Loop() {
		start := time.Now()
		for range round {
			base()
		}
		mid := time.Now()
		for range round {
			ours()
		}
		tOurs += time.Since(mid)
		tBase += mid.Sub(start)
		calls += round
	}
	if calls == 0 {
		return
	}
	b.ReportMetric(float64(tOurs.Nanoseconds())/float64(calls), "ns/ours")
	b.ReportMetric(float64(tBase.Nanoseconds())/float64(calls), "ns/base")
	b.ReportMetric(float64(tOurs)/float64(tBase), "ours/base")
	if bytes > 0 {
		b.ReportMetric(float64(bytes*int64(calls))/tOurs.Seconds()/1e6, "MB/s-ours")
		b.ReportMetric(float64(bytes*int64(calls))/tBase.Seconds()/1e6, "MB/s-base")
	}
}
