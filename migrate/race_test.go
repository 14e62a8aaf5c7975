//go:build race

package migrate_test

// raceEnabled shrinks the crash test: the race detector slows the crypto
// tenfold.
const raceEnabled = true
