// Package mutation checks that the tests guard the library's guarantees:
// each Mutation removes or inverts one check in a scratch copy of the
// repository, and a test named beside it must then fail. The catalogue is
// scripts/mutations.txt; go run ./internal/mutation/cmd/mutate runs it.
//
// The catalogue format is a sequence of blocks separated by blank lines;
// lines starting with # are comments:
//
//	name: commitment-compare
//	guarantee: self-contained key commitment (issue 12.15)
//	file: envelope/selfcontained.go
//	find: if subtle.ConstantTimeCompare(k.commitment, h.Commitment) != 1 {
//	replace: if false {
//	test: ./envelope TestCommitmentMismatchWithValidTag
//
// find must occur exactly once in file (so that a catalogue entry cannot
// silently stop applying when the code moves), and replace is what takes
// its place (it may be empty). In find and replace, \n stands for a
// newline and \t for a tab. A block may hold several edits: each find
// applies to the file named last before it, each replace to the find
// before it. A block may also have several test lines; the mutation is
// caught when at least one named test fails and the package still
// compiles. env: NAME=value lines set the tests' environment.
package mutation

import (
	"bufio"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// A Mutation is one check removed or inverted.
type Mutation struct {
	Name      string
	Guarantee string
	Edits     []Edit
	Tests     []Test
	// Env holds NAME=value settings the tests run with (env: lines), such
	// as GODEBUG=fips140=only for checks that only FIPS mode exercises.
	Env  []string
	Line int // the catalogue line the block starts on
}

// An Edit replaces the one occurrence of Find in File with Replace.
type Edit struct {
	File    string // slash-separated, relative to the repository root
	Find    string
	Replace string
}

// unescape turns \n and \t in a catalogue value into a newline and a tab.
var unescape = strings.NewReplacer(`\n`, "\n", `\t`, "\t")

// A Test is a test function in a package.
type Test struct {
	Package string // e.g. ./envelope
	Name    string
}

// ErrCatalogue is returned for a malformed catalogue.
var ErrCatalogue = errors.New("mutation: malformed catalogue")

// ErrStale is returned when a mutation's find text does not occur exactly
// once in its file.
var ErrStale = errors.New("mutation: find text does not occur exactly once")

// Parse reads a catalogue.
func Parse(r io.Reader) ([]Mutation, error) {
	var (
		out  []Mutation
		cur  *Mutation
		file string
		line int
	)
	flush := func() error {
		if cur == nil {
			return nil
		}
		m := *cur
		cur = nil
		if m.Name == "" || m.Guarantee == "" || len(m.Edits) == 0 || len(m.Tests) == 0 {
			return fmt.Errorf("%w: block at line %d needs name, guarantee, file, find and test", ErrCatalogue, m.Line)
		}
		for _, o := range out {
			if o.Name == m.Name {
				return fmt.Errorf("%w: line %d: duplicate name %q", ErrCatalogue, m.Line, m.Name)
			}
		}
		out = append(out, m)
		return nil
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line++
		text := sc.Text()
		if strings.HasPrefix(text, "#") {
			continue
		}
		if strings.TrimSpace(text) == "" {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		key, val, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("%w: line %d: want key: value", ErrCatalogue, line)
		}
		val = strings.TrimPrefix(val, " ")
		if cur == nil {
			cur = &Mutation{Line: line}
			file = ""
		}
		switch key {
		case "name":
			cur.Name = val
		case "guarantee":
			cur.Guarantee = val
		case "file":
			file = val
		case "find":
			if file == "" || val == "" {
				return nil, fmt.Errorf("%w: line %d: find needs a file before it and text", ErrCatalogue, line)
			}
			cur.Edits = append(cur.Edits, Edit{File: file, Find: unescape.Replace(val)})
		case "replace":
			if len(cur.Edits) == 0 {
				return nil, fmt.Errorf("%w: line %d: replace needs a find before it", ErrCatalogue, line)
			}
			cur.Edits[len(cur.Edits)-1].Replace = unescape.Replace(val)
		case "env":
			if !strings.Contains(val, "=") {
				return nil, fmt.Errorf("%w: line %d: want env: NAME=value", ErrCatalogue, line)
			}
			cur.Env = append(cur.Env, val)
		case "test":
			pkg, name, ok := strings.Cut(val, " ")
			if !ok || !strings.HasPrefix(pkg, "./") || !strings.HasPrefix(name, "Test") {
				return nil, fmt.Errorf("%w: line %d: want test: ./package TestName", ErrCatalogue, line)
			}
			cur.Tests = append(cur.Tests, Test{Package: pkg, Name: name})
		default:
			return nil, fmt.Errorf("%w: line %d: unknown key %q", ErrCatalogue, line, key)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// Apply applies m's edits to the repository rooted at root and returns a
// function that restores the files. On error nothing stays changed.
func (m Mutation) Apply(root string) (restore func() error, err error) {
	var undo []func() error
	restore = func() error {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			errs = append(errs, undo[i]())
		}
		return errors.Join(errs...)
	}
	for _, e := range m.Edits {
		u, err := e.apply(root)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("%s: %w", m.Name, err), restore())
		}
		undo = append(undo, u)
	}
	return restore, nil
}

func (e Edit) apply(root string) (undo func() error, err error) {
	path := filepath.Join(root, filepath.FromSlash(e.File))
	orig, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if n := strings.Count(string(orig), e.Find); n != 1 {
		return nil, fmt.Errorf("%w: %q occurs %d times in %s", ErrStale, e.Find, n, e.File)
	}
	mutated := strings.Replace(string(orig), e.Find, e.Replace, 1)
	if err := os.WriteFile(path, []byte(mutated), 0o644); err != nil {
		return nil, err
	}
	return func() error { return os.WriteFile(path, orig, 0o644) }, nil
}

// TestFuncs returns the names of the top-level functions declared in the
// _test.go files of the package in dir: its tests, examples and fuzz
// targets, and their helpers. The catalogue's self-test and the documents'
// check (package internal/docs) use it to find the tests they name.
func TestFuncs(dir string) (map[string]bool, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		return nil, err
	}
	funcs := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		for _, d := range file.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil {
				funcs[fn.Name.Name] = true
			}
		}
	}
	return funcs, nil
}
