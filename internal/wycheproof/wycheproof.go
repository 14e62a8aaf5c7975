// Package wycheproof loads Project Wycheproof test vectors (testdata/
// wycheproof at the repository root) for the tests of the primitives that
// phicrypt uses. It is imported by tests only.
package wycheproof

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// File is a Wycheproof vector file. Groups keep their raw JSON because each
// schema has its own group and test fields.
type File struct {
	Algorithm     string            `json:"algorithm"`
	NumberOfTests int               `json:"numberOfTests"`
	TestGroups    []json.RawMessage `json:"testGroups"`
}

// Hex is a hex-encoded byte string.
type Hex []byte

// UnmarshalJSON decodes a hex string.
func (h *Hex) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	*h = d
	return err
}

// Test holds the fields shared by the schemas used here.
type Test struct {
	TcID    int      `json:"tcId"`
	Comment string   `json:"comment"`
	Flags   []string `json:"flags"`
	Result  string   `json:"result"` // valid, invalid or acceptable
	Key     Hex      `json:"key"`
	IV      Hex      `json:"iv"`
	AAD     Hex      `json:"aad"`
	Msg     Hex      `json:"msg"`
	CT      Hex      `json:"ct"`
	Tag     Hex      `json:"tag"`
	IKM     Hex      `json:"ikm"`
	Salt    Hex      `json:"salt"`
	Info    Hex      `json:"info"`
	Size    int      `json:"size"`
	OKM     Hex      `json:"okm"`
}

// Group holds the fields shared by the group schemas used here.
type Group struct {
	KeySize int    `json:"keySize"`
	IVSize  int    `json:"ivSize"`
	TagSize int    `json:"tagSize"`
	Tests   []Test `json:"tests"`
}

// Load reads testdata/wycheproof/name and checks that it holds as many
// tests as it declares.
func Load(t *testing.T, name string) (*File, []Group) {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(here), "..", "..", "testdata", "wycheproof", name)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var f File
	require.NoError(t, json.Unmarshal(data, &f))
	var groups []Group
	n := 0
	for _, raw := range f.TestGroups {
		var g Group
		require.NoError(t, json.Unmarshal(raw, &g))
		groups = append(groups, g)
		n += len(g.Tests)
	}
	require.Equal(t, f.NumberOfTests, n, "%s: declared and actual test counts differ", name)
	require.NotZero(t, n, "%s holds no tests", name)
	return &f, groups
}
