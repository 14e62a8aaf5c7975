package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/mutation"
)

// root is the repository root, two levels above this package.
const root = "../.."

// testRef matches a test named as proof: `package/path.TestName` (also
// Example and Fuzz functions), in backquotes.
var testRef = regexp.MustCompile("`((?:[a-z0-9_-]+/)*[a-z0-9_-]+)\\.((?:Test|Example|Fuzz)[A-Za-z0-9_]*)`")

// TestNamedTestsExist fails when a test that COMPLIANCE.md or SECURITY.md
// names as the proof of a safeguard was renamed or deleted.
func TestNamedTestsExist(t *testing.T) {
	cache := map[string]map[string]bool{}
	for _, doc := range []string{"COMPLIANCE.md", "SECURITY.md"} {
		data, err := os.ReadFile(filepath.Join(root, doc))
		require.NoError(t, err)
		refs := testRef.FindAllStringSubmatch(string(data), -1)
		if doc == "COMPLIANCE.md" {
			// A map that names no test proves nothing.
			require.GreaterOrEqual(t, len(refs), 40, "%s names too few tests", doc)
		}
		for _, m := range refs {
			pkg, name := m[1], m[2]
			funcs, ok := cache[pkg]
			if !ok {
				funcs, err = mutation.TestFuncs(filepath.Join(root, filepath.FromSlash(pkg)))
				require.NoError(t, err)
				cache[pkg] = funcs
			}
			assert.True(t, funcs[name], "%s names %s.%s, which does not exist", doc, pkg, name)
		}
	}
}

// TestTestRefPattern checks the pattern against names that must and must
// not count as references, so that a broken pattern cannot pass
// TestNamedTestsExist by matching nothing.
func TestTestRefPattern(t *testing.T) {
	for _, s := range []string{"`keys.TestDestroy`", "`fields/fhir.TestLeakCanary`", "`examples/ehr-backend.TestAPI`", "`internal/aead.TestWycheproofAESGCM`"} {
		assert.Regexp(t, testRef, s)
	}
	for _, s := range []string{"`keys.Destroy`", "`TestDestroy`", "keys.TestDestroy"} {
		assert.NotRegexp(t, testRef, s)
	}
}

// mdLink matches a Markdown link's target.
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestRelativeLinksResolve fails when a top-level document links to a file
// or folder of the repository that does not exist.
func TestRelativeLinksResolve(t *testing.T) {
	docs, err := filepath.Glob(filepath.Join(root, "*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, docs)
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		require.NoError(t, err)
		for _, m := range mdLink.FindAllStringSubmatch(string(data), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			_, err := os.Stat(filepath.Join(root, filepath.FromSlash(target)))
			assert.NoError(t, err, "%s links to %s", filepath.Base(doc), m[1])
		}
	}
}
