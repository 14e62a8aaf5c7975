// Command mutate runs the mutation catalogue (scripts/mutations.txt): for
// each guarantee, it removes or inverts the check in a scratch copy of the
// repository and runs the tests named beside it, which must fail.
//
//	go run ./internal/mutation/cmd/mutate [-run REGEXP] [-list]
//
// The scratch copy holds the working tree's tracked and untracked
// (not ignored) files, so uncommitted changes are mutated too. The
// repository itself is never modified. Each mutation is reported as
//
//	caught    a named test failed
//	MISSED    every named test passed: the guarantee is unguarded
//	BROKEN    the mutated package did not compile (fix the mutation)
//	STALE     the find text no longer occurs exactly once
//
// The exit status is 1 unless every selected mutation is caught, and
// before mutating anything every named test must pass unmutated.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/phicrypt/phicrypt/internal/mutation"
)

func main() {
	run := flag.String("run", "", "run only the mutations whose name matches this regular expression")
	list := flag.Bool("list", false, "list the mutations and exit")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := mutate(ctx, os.Stdout, *run, *list); err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(1)
	}
}

func mutate(ctx context.Context, out io.Writer, run string, list bool) error {
	top, err := exec.CommandContext(ctx, "git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return fmt.Errorf("finding the repository: %w", err)
	}
	root := strings.TrimSpace(string(top))
	f, err := os.Open(filepath.Join(root, "scripts", "mutations.txt"))
	if err != nil {
		return err
	}
	ms, err := mutation.Parse(f)
	f.Close()
	if err != nil {
		return err
	}
	if run != "" {
		re, err := regexp.Compile(run)
		if err != nil {
			return err
		}
		ms = slices.DeleteFunc(ms, func(m mutation.Mutation) bool { return !re.MatchString(m.Name) })
	}
	if list {
		for _, m := range ms {
			fmt.Fprintf(out, "%-32s %s\n", m.Name, m.Guarantee)
		}
		return nil
	}
	if len(ms) == 0 {
		return errors.New("no mutation selected")
	}

	scratch, err := os.MkdirTemp("", "phicrypt-mutate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	if err := copyTree(ctx, root, scratch); err != nil {
		return err
	}

	// Every named test must pass before anything is mutated, or a
	// "caught" would mean nothing.
	// Tests are grouped by package and environment.
	type group struct{ pkg, env string }
	byPkg := map[group][]string{}
	for _, m := range ms {
		for _, t := range m.Tests {
			r := group{t.Package, strings.Join(m.Env, " ")}
			if !slices.Contains(byPkg[r], t.Name) {
				byPkg[r] = append(byPkg[r], t.Name)
			}
		}
	}
	runs := make([]group, 0, len(byPkg))
	n := 0
	for r, names := range byPkg {
		runs = append(runs, r)
		n += len(names)
	}
	slices.SortFunc(runs, func(a, b group) int { return strings.Compare(a.pkg+a.env, b.pkg+b.env) })
	fmt.Fprintf(out, "baseline: %d tests in %d runs\n", n, len(runs))
	for _, r := range runs {
		if res, output := goTest(ctx, scratch, strings.Fields(r.env), r.pkg, byPkg[r]); res != "pass" {
			return fmt.Errorf("baseline: %s %s %s does not pass unmutated (%s):\n%s", r.env, r.pkg, strings.Join(byPkg[r], ","), res, output)
		}
	}

	counts := map[string]int{}
	for _, m := range ms {
		start := time.Now()
		verdict, detail := one(ctx, scratch, m)
		counts[verdict]++
		fmt.Fprintf(out, "%-7s %-32s %-50s %5.1fs %s\n", verdict, m.Name, trim(m.Guarantee, 50), time.Since(start).Seconds(), detail)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	fmt.Fprintf(out, "%d mutations: %d caught, %d missed, %d broken, %d stale\n",
		len(ms), counts["caught"], counts["MISSED"], counts["BROKEN"], counts["STALE"])
	if counts["caught"] != len(ms) {
		return errors.New("some mutations were not caught")
	}
	return nil
}

// one applies m, runs its tests and restores the file.
func one(ctx context.Context, scratch string, m mutation.Mutation) (verdict, detail string) {
	restore, err := m.Apply(scratch)
	if err != nil {
		if errors.Is(err, mutation.ErrStale) {
			return "STALE", err.Error()
		}
		return "BROKEN", err.Error()
	}
	defer func() {
		if err := restore(); err != nil {
			panic(err) // the scratch copy is unusable; stop at once
		}
	}()
	var failed []string
	for _, t := range m.Tests {
		res, output := goTest(ctx, scratch, m.Env, t.Package, []string{t.Name})
		switch res {
		case "build":
			return "BROKEN", firstLines(output, 3)
		case "fail":
			failed = append(failed, t.Package+" "+t.Name)
		}
	}
	if len(failed) == 0 {
		return "MISSED", "no named test failed"
	}
	return "caught", strings.Join(failed, ", ")
}

// goTest runs the named tests of pkg in dir: "pass", "fail" (a named test
// failed) or "build" (the package or its test did not compile).
func goTest(ctx context.Context, dir string, env []string, pkg string, names []string) (string, string) {
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-run", "^("+strings.Join(names, "|")+")$", pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	output := buf.String()
	switch {
	case err == nil && !strings.Contains(output, "no tests to run"):
		return "pass", output
	case err == nil:
		return "build", "no tests to run: " + strings.Join(names, ",")
	case strings.Contains(output, "[build failed]") || strings.Contains(output, "[setup failed]"):
		return "build", output
	}
	for _, n := range names {
		if strings.Contains(output, "--- FAIL: "+n+" ") || strings.Contains(output, "--- FAIL: "+n+"/") {
			return "fail", output
		}
	}
	// A panic or a timeout fails the binary without a --- FAIL line of
	// its own: it is still the test failing.
	if strings.Contains(output, "panic: ") || strings.Contains(output, "FAIL\t") {
		return "fail", output
	}
	return "build", output
}

// copyTree copies the working tree's files that git tracks or would track
// (not ignored) from root into dst.
func copyTree(ctx context.Context, root, dst string) error {
	cmd := exec.CommandContext(ctx, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	list, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("listing files: %w", err)
	}
	for _, rel := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		src := filepath.Join(root, rel)
		info, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(to, data, info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], " | ")
}
