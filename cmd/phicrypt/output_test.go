package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
)

// TestAuditFileAndSummary: with --audit-file, the key events go to the
// file as JSON lines and stderr gets one summary line (not one line per
// key); --quiet silences the summaries; a file that cannot be written
// fails the operation.
func TestAuditFileAndSummary(t *testing.T) {
	vars, dir := newKeyStore(t, "--audit-log=false")
	in, _ := firstLines(t, dir, 20)
	auditFile := filepath.Join(dir, "audit.jsonl")
	r := runIn(t, vars, "encrypt", "--create", "--scope", "tenant:t", "--per-patient", "--in", in, "--out", filepath.Join(dir, "enc.ndjson"), "--audit-file", auditFile)
	require.Equal(t, exitOK, r.code, r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	require.Len(t, lines, 2, r.stderr)
	assert.Regexp(t, `^encrypted 20 lines \(.*\) in .* to .*enc\.ndjson$`, lines[0])
	m := regexp.MustCompile(`^audit: (\d+) key events \((\d+) create\) recorded in (.*)$`).FindStringSubmatch(lines[1])
	require.NotNil(t, m, lines[1])
	assert.Equal(t, "20", m[2], "a data key created per patient")
	assert.Equal(t, auditFile, m[3])

	f, err := os.Open(auditFile)
	require.NoError(t, err)
	defer f.Close()
	fi, err := f.Stat()
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev struct{ Op, Scope, Outcome string }
		require.NoError(t, json.Unmarshal(sc.Bytes(), &ev))
		assert.NotEmpty(t, ev.Op)
		assert.True(t, strings.HasPrefix(ev.Scope, "tenant:t/patient/"), ev.Scope)
		n++
	}
	require.NoError(t, sc.Err())
	assert.Equal(t, m[1], strconv.Itoa(n), "the summary counts the events in the file")

	// The environment names the file too; --quiet leaves stderr empty.
	r = runIn(t, with(vars, "PHICRYPT_AUDIT_FILE", auditFile), "decrypt", "--scope", "tenant:t", "--per-patient", "--quiet",
		"--in", filepath.Join(dir, "enc.ndjson"), "--out", filepath.Join(dir, "dec.ndjson"))
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Empty(t, r.stderr)
	data, err := os.ReadFile(auditFile)
	require.NoError(t, err)
	assert.Greater(t, strings.Count(string(data), "\n"), n, "decrypt's unwraps were appended")

	// One line: "1 line", not "1 lines".
	one, _ := firstLines(t, t.TempDir(), 1)
	r = runIn(t, vars, "encrypt", "--create", "--scope", "tenant:t", "--per-patient", "--in", one, "--out", filepath.Join(dir, "one.ndjson"), "--audit-file", auditFile)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stderr, "encrypted 1 line (")

	// Fail-closed: an event that cannot be written fails the operation.
	if _, err := os.Stat("/dev/full"); err == nil {
		r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:x", "--create", "--audit-file", "/dev/full")
		assert.Equal(t, exitFailure, r.code)
		assert.Contains(t, r.stderr, keys.ErrAudit.Error())
	}
	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:y", "--create", "--audit-file", filepath.Join(dir, "no", "such", "dir"))
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "audit file")
	r = runIn(t, vars, "keys", "status", "--scope", "tenant:y")
	assert.Equal(t, exitFailure, r.code, "a sink that cannot be opened fails before any key is made")
}

func TestPlural(t *testing.T) {
	assert.Equal(t, "0 lines", plural(0, "line"))
	assert.Equal(t, "1 line", plural(1, "line"))
	assert.Equal(t, "2 lines", plural(int64(2), "line"))
	assert.Equal(t, "was", pluralVerb(1, "was", "were"))
	assert.Equal(t, "were", pluralVerb(3, "was", "were"))
}

// TestVersion: phicrypt version prints the module version, the Go
// version and the commit the build recorded.
func TestVersion(t *testing.T) {
	r := phicrypt(t, nil, "version")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Regexp(t, `^phicrypt \S+ `+regexp.QuoteMeta(runtime.Version()), r.stdout)
	r = phicrypt(t, nil, "--version")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, strings.HasPrefix(r.stdout, "phicrypt "))
	r = phicrypt(t, nil, "version", "extra")
	assert.Equal(t, exitUsage, r.code)

	defer func(f func() (*debug.BuildInfo, bool)) { readBuildInfo = f }(readBuildInfo)
	readBuildInfo = func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}, {Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "amd64"}}}, true
	}
	assert.Equal(t, "phicrypt v1.4.0 go1.26.0 commit 0123456789ab (modified) linux/amd64", versionString())
	readBuildInfo = func() (*debug.BuildInfo, bool) { return nil, false }
	assert.Contains(t, versionString(), "unknown version")
}

// TestProgressBar: the bar's rate is per second since the bar started,
// in bytes for bytes (no "it/s"), in the unit otherwise; it erases itself
// when finished; it is hidden with --quiet and when audit events go to
// stderr.
func TestProgressBar(t *testing.T) {
	var out strings.Builder
	e := &env{stderr: &out, interactive: true}
	bar := e.bar(10<<20, "encrypting", "bytes")
	time.Sleep(200 * time.Millisecond)
	bar.Set64(1 << 20)
	bar.Finish()
	s := out.String()
	assert.NotContains(t, s, "it/s")
	m := regexp.MustCompile(`([0-9.]+) ([kMG]?B)/s`).FindStringSubmatch(s)
	require.NotNil(t, m, s)
	rate, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	perSecond := map[string]float64{"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[m[2]] * rate
	assert.Less(t, perSecond, 6e6, "1 MiB in at least 200 ms is at most 5.3 MB/s: %s", s)
	segments := strings.Split(strings.TrimSuffix(s, "\r"), "\r")
	last := segments[len(segments)-1]
	assert.True(t, len(last) > 0 && strings.TrimSpace(last) == "", "the bar erased itself: %q", s)

	out.Reset()
	bar = e.bar(-1, "migrating", "rows")
	bar.Set64(100)
	bar.Finish()
	assert.Contains(t, out.String(), "rows/s")
	assert.NotContains(t, out.String(), "it/s")

	for name, e := range map[string]*env{
		"quiet":           {stderr: &out, interactive: true, quiet: true},
		"audit on stderr": {stderr: &out, interactive: true, auditOnStderr: true},
		"not a terminal":  {stderr: &out},
	} {
		out.Reset()
		bar := e.bar(100, "x", "rows")
		bar.Set64(50)
		bar.Finish()
		assert.Empty(t, out.String(), name)
	}
}
