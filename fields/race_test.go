//go:build race

package fields_test

// raceEnabled skips allocation counts: under the race detector sync.Pool
// drops items at random, so pooled scratch space is allocated again.
const raceEnabled = true
