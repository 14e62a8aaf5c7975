//go:build !race

package fields_test

const raceEnabled = false
