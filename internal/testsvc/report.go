package testsvc

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// EnvReport names a file to which every test binary appends one line for
// each service it started or missed, so that a run of many packages can
// say which integration suites ran and which skipped (go test prints
// nothing of a passing package). The full-suite script sets it and
// prints the summary with
//
//	go run ./internal/testsvc/cmd/services summary FILE
//
// Each line holds four tab-separated fields: the service, the package
// (its folder relative to the repository root), the outcome (ran,
// skipped or failed) and, for the last two, why.
const EnvReport = "PHICRYPT_SERVICE_REPORT"

// Outcomes recorded in the report.
const (
	OutcomeRan     = "ran"
	OutcomeSkipped = "skipped"
	OutcomeFailed  = "failed"
)

// reported keeps a test binary from writing the same line twice.
var reported sync.Map

// record appends a line to the report file, when one is set. Errors are
// ignored: the report is a summary for people, not a test result.
func record(service, outcome, why string) {
	path := os.Getenv(EnvReport)
	if path == "" {
		return
	}
	why = strings.Join(strings.Fields(why), " ") // one line
	line := strings.Join([]string{service, packageName(), outcome, why}, "\t") + "\n"
	if _, dup := reported.LoadOrStore(path+"\x00"+line, true); dup {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(line) // one write: O_APPEND keeps lines whole
}

// packageName returns the test's package folder relative to the
// repository root (go test runs a test binary in its package's folder),
// found once per test binary.
var packageName = sync.OnceValue(func() string {
	wd, err := os.Getwd()
	if err != nil {
		return "?"
	}
	if root, err := RepoRoot(); err == nil {
		if rel, err := filepath.Rel(root, wd); err == nil && !strings.HasPrefix(rel, "..") {
			return filepath.ToSlash(rel)
		}
	}
	return wd
})

// Report is one line of a report file.
type Report struct {
	Service, Package, Outcome, Why string
}

// ReadReport parses a report file written through [EnvReport].
func ReadReport(path string) ([]Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("testsvc: report: %w", err)
	}
	var out []Report
	for line := range strings.Lines(string(b)) {
		f := strings.SplitN(strings.TrimRight(line, "\n"), "\t", 4)
		if len(f) != 4 {
			continue
		}
		out = append(out, Report{Service: f[0], Package: f[1], Outcome: f[2], Why: f[3]})
	}
	return out, nil
}
