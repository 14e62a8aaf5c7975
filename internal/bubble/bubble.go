// Package bubble runs tests in testing/synctest bubbles, whose fake clock
// makes waits instant and exact, and skips them in FIPS 140-3 mode.
package bubble

import (
	"crypto/fips140"
	"testing"
	"testing/synctest"
)

// Test runs f in a synctest bubble, as synctest.Test does. In FIPS 140-3
// mode (GODEBUG=fips140=only) it skips t instead: the FIPS module's DRBG
// seeds itself from CPU jitter timed on the clock that a bubble stops, so
// crypto/rand panics inside one ("fips140/drbg: failed to obtain initial
// entropy", Go 1.26). The tests run in bubbles are about time (backoff,
// cool-downs, key ages, cache expiry); the FIPS run covers the
// cryptography with the others.
func Test(t *testing.T, f func(*testing.T)) {
	t.Helper()
	if fips140.Enabled() {
		t.Skip("FIPS 140-3 mode: crypto/rand cannot seed inside a synctest bubble (its entropy source times CPU jitter)")
	}
	synctest.Test(t, f)
}
