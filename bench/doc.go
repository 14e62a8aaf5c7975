// Package bench holds the benchmarks that compare phicrypt with
// third-party libraries (go-kms-wrapping's structwrapping, the design's
// baseline for record encryption). It is a module of its own so that the
// core module does not require the libraries it is compared with; it has
// no API.
//
//	cd bench && go test -run='^$' -bench=. -count=5
package bench
