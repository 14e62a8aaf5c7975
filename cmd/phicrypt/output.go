package main

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// plural returns n and word, with an "s" unless n is 1: "1 line",
// "2 lines", "0 lines".
func plural[N ~int | ~int64](n N, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// pluralVerb returns one if n is 1, many otherwise ("was", "were").
func pluralVerb[N ~int | ~int64](n N, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// summaryf prints a summary line on stderr, unless --quiet.
func (e *env) summaryf(format string, args ...any) {
	if !e.quiet {
		fmt.Fprintf(e.stderr, format, args...)
	}
}

// readBuildInfo is debug.ReadBuildInfo, replaceable in tests.
var readBuildInfo = debug.ReadBuildInfo

// versionString describes this build: the module version (a release tag,
// or "(devel)" for a build from a checkout), the Go version, and the VCS
// revision when the build recorded one.
func versionString() string {
	bi, ok := readBuildInfo()
	if !ok {
		return "phicrypt (unknown version: built without module information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phicrypt %s %s", v, bi.GoVersion)
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		fmt.Fprintf(&b, " commit %s", rev)
		if settings["vcs.modified"] == "true" {
			b.WriteString(" (modified)")
		}
	}
	if os, arch := settings["GOOS"], settings["GOARCH"]; os != "" && arch != "" {
		fmt.Fprintf(&b, " %s/%s", os, arch)
	}
	return b.String()
}
