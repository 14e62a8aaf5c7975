package mutation

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const root = "../.."

// TestCatalogueApplies keeps scripts/mutations.txt from rotting: every
// block parses, every edit still finds its text exactly once (and
// restores the file afterwards), and every named test exists.
func TestCatalogueApplies(t *testing.T) {
	f, err := os.Open(filepath.Join(root, "scripts", "mutations.txt"))
	require.NoError(t, err)
	defer f.Close()
	ms, err := Parse(f)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(ms), 20, "the catalogue covers every README guarantee")

	// Apply to a copy of each file, never to the repository.
	for _, m := range ms {
		t.Run(m.Name, func(t *testing.T) {
			scratch := t.TempDir()
			for _, e := range m.Edits {
				data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(e.File)))
				require.NoError(t, err)
				dst := filepath.Join(scratch, filepath.FromSlash(e.File))
				require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
				require.NoError(t, os.WriteFile(dst, data, 0o644))
			}
			restore, err := m.Apply(scratch)
			require.NoError(t, err)
			for _, e := range m.Edits {
				data, err := os.ReadFile(filepath.Join(scratch, filepath.FromSlash(e.File)))
				require.NoError(t, err)
				assert.Contains(t, string(data), e.Replace)
			}
			require.NoError(t, restore())
			for _, e := range m.Edits {
				got, err := os.ReadFile(filepath.Join(scratch, filepath.FromSlash(e.File)))
				require.NoError(t, err)
				want, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(e.File)))
				require.NoError(t, err)
				assert.Equal(t, string(want), string(got), "restored")
			}
			for _, tc := range m.Tests {
				assert.True(t, hasTest(t, filepath.Join(root, tc.Package), tc.Name), "%s %s does not exist", tc.Package, tc.Name)
			}
		})
	}
}

func hasTest(t *testing.T, dir, name string) bool {
	funcs, err := TestFuncs(dir)
	require.NoError(t, err)
	return funcs[name]
}

func TestParse(t *testing.T) {
	ms, err := Parse(strings.NewReader("# c\nname: a\nguarantee: g\nfile: x.go\nfind: if ok {\\n\\tx()\nreplace: if false {\nenv: GODEBUG=fips140=only\ntest: ./p TestA\ntest: ./p TestB\n\nname: b\nguarantee: g\nfile: y.go\nfind: f\nfile: z.go\nfind: h\nreplace: i\ntest: ./q TestC\n"))
	require.NoError(t, err)
	require.Len(t, ms, 2)
	assert.Equal(t, []Edit{{File: "x.go", Find: "if ok {\n\tx()", Replace: "if false {"}}, ms[0].Edits)
	assert.Equal(t, []string{"GODEBUG=fips140=only"}, ms[0].Env)
	assert.Equal(t, []Test{{"./p", "TestA"}, {"./p", "TestB"}}, ms[0].Tests)
	assert.Equal(t, []Edit{{File: "y.go", Find: "f"}, {File: "z.go", Find: "h", Replace: "i"}}, ms[1].Edits)

	for _, bad := range []string{
		"name: a\nguarantee: g\nfile: x.go\nfind: f\n",                                                                           // no test
		"name: a\nguarantee: g\nfind: f\ntest: ./p TestA\n",                                                                      // find before file
		"name: a\nguarantee: g\nfile: x\nfind: f\ntest: p TestA\n",                                                               // package not ./
		"name: a\nguarantee: g\nfile: x\nfind: f\nwhat: y\ntest: ./p TestA\n",                                                    // unknown key
		"name: a\nguarantee: g\nfile: x\nfind: f\ntest: ./p TestA\n\nname: a\nguarantee: g\nfile: x\nfind: f\ntest: ./p TestA\n", // duplicate
	} {
		_, err := Parse(strings.NewReader(bad))
		assert.ErrorIs(t, err, ErrCatalogue, bad)
	}
}

func TestApplyStale(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.go"), []byte("x x"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b.go"), []byte("y"), 0o644))
	m := Mutation{Name: "m", Edits: []Edit{{File: "b.go", Find: "y", Replace: "z"}, {File: "a.go", Find: "x", Replace: "w"}}}
	_, err := m.Apply(dir)
	require.ErrorIs(t, err, ErrStale)
	got, _ := os.ReadFile(filepath.Join(dir, "b.go"))
	assert.Equal(t, "y", string(got), "a failed mutation leaves nothing changed")
}
