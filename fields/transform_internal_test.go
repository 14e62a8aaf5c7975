package fields

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// run applies a chain spec to s, as an index does to one source.
func run(t *testing.T, spec, s string) string {
	t.Helper()
	chains, err := parseNormalize(spec, 1)
	require.NoError(t, err, spec)
	text := []byte(s)
	for _, n := range chains[0].fns {
		text = n(nil, text)
	}
	return string(text)
}

func TestTransforms(t *testing.T) {
	for _, tc := range []struct{ spec, in, want string }{
		// last4: the last four decimal digits, whatever the separators.
		{"last4", "999-12-3456", "3456"},
		{"last4", "９９９-１２-３４５６", "3456"}, // full-width digits
		{"last4", "١٢٣٤٥", "2345"},       // Arabic-Indic digits
		{"last4", "SSN: 12-34", "1234"},
		{"last4", "123", ""}, // fewer than four digits: nothing (a NULL index)
		{"last4", "abc", ""},
		{"last4", "", ""},
		{"digits+last4", "999 12 3456", "3456"},
		// prefix:N counts code points, after the normalizers before it.
		{"prefix:3", "Smith", "Smi"},
		{"prefix:3", "Zoë", "Zoë"},
		{"prefix:2", "Zoë", "Zo"},
		{"prefix:2", "Ñúñez", "Ñú"},
		{"prefix:3", "李小龍", "李小龍"},
		{"prefix:2", "李小龍", "李小"},
		{"prefix:5", "Li", "Li"}, // shorter than N: all of it
		{"prefix:1", "", ""},
		{"trim+fold+prefix:4", "  STRASSE", "stra"},
		{"fold+prefix:4", "Straße", "stra"},
		{"nfc+prefix:3", "Zoe\u0308y", "Zoë"}, // composed first, so ë is one character
		{"prefix:3", "Zoe\u0308y", "Zoe"},     // without nfc, the combining mark is a character of its own
		// nysiis: a phonetic code of the letters A to Z, accents removed.
		{"nysiis", "Smith", "SNAT"},
		{"nysiis", "Schmit", "SNAT"},
		{"nysiis", "Müller", "MALAR"},
		{"nysiis", "MULLER", "MALAR"},
		{"nysiis", "Gottlieb798", "GATLAB"},
		{"nysiis", "2002", ""},
		{"nysiis", "李", ""},
		{"nysiis", "", ""},
		// year, yearmonth, date: a date at that granularity.
		{"date", "1993-05-10T00:00:00Z", "1993-05-10"},
		{"date", "1993-05-10T23:30:00.5-05:00", "1993-05-10"}, // the date as written
		{"date", "1993-05-10", "1993-05-10"},
		{"date", " 1993-05-10 ", "1993-05-10"},
		{"date", "1993-05-10T08:00:00", "1993-05-10"},
		{"yearmonth", "1993-05-10", "1993-05"},
		{"yearmonth", "1993-05", "1993-05"},
		{"year", "1993-05-10T00:00:00Z", "1993"},
		{"year", "1993", "1993"},
		{"date", "1993-05", ""}, // less precise than asked: nothing
		{"yearmonth", "1993", ""},
		{"date", "10/05/1993", ""},
		{"date", "1993-02-30", ""},
		{"year", "unknown", ""},
		{"year", "", ""},
		{"year", "１９９３", ""}, // full-width: not a date
	} {
		assert.Equal(t, tc.want, run(t, tc.spec, tc.in), "%s(%q)", tc.spec, tc.in)
	}
}

func TestParseNormalize(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		sources int
		chains  int
		prefix  int
	}{
		{"", 2, 1, 0},
		{"trim+fold", 2, 1, 0},
		{"digits+last4|date", 2, 2, 0},
		{"-|date", 2, 2, 0},
		{"fold+prefix:3", 1, 1, 3},
		{"prefix:255", 1, 1, 255},
	} {
		c, err := parseNormalize(tc.spec, tc.sources)
		require.NoError(t, err, tc.spec)
		assert.Len(t, c, tc.chains, tc.spec)
		assert.Equal(t, tc.prefix, c[0].prefix, tc.spec)
	}
	for _, tc := range []struct {
		spec    string
		sources int
		msg     string
	}{
		{"trim|fold|lower", 2, "3 normalizer chains for 2 sources"},
		{"trim|fold", 1, "2 normalizer chains for 1 sources"},
		{"trim||fold", 3, "empty normalizer chain"},
		{"prefix:3+fold", 1, "must be the last"},
		{"prefix:0", 1, "want prefix:N"},
		{"prefix:256", 1, "want prefix:N"},
		{"prefix:-1", 1, "want prefix:N"},
		{"prefix:03", 1, "want prefix:N"},
		{"prefix:x", 1, "want prefix:N"},
		{"prefix", 1, "unknown normalizer"},
		{"last5", 1, "unknown normalizer"},
		{"Fold", 1, "unknown normalizer"},
	} {
		_, err := parseNormalize(tc.spec, tc.sources)
		require.Error(t, err, tc.spec)
		assert.Contains(t, err.Error(), tc.msg, tc.spec)
	}
}

// TestNYSIISTable checks the NYSIIS code against Apache Commons Codec's
// published table (testdata/phonetic/nysiis.tsv).
func TestNYSIISTable(t *testing.T) {
	f, err := os.Open("../testdata/phonetic/nysiis.tsv")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		parts := strings.Split(line, "\t")
		require.Len(t, parts, 3, line)
		got := string(appendNYSIIS([]byte("kept:"), []byte(parts[0]), parts[1] == "strict"))
		assert.Equal(t, "kept:"+parts[2], got, "NYSIIS %s(%q)", parts[1], parts[0])
		n++
	}
	require.NoError(t, sc.Err())
	assert.Equal(t, 86, n, "the whole table")
}

// FuzzTransforms checks that no transform panics, and that their results
// keep the properties they promise, on any input.
func FuzzTransforms(f *testing.F) {
	for _, s := range []string{"999-12-3456", "Zoë", "Müller", "1993-05-10T00:00:00Z", "\xff\xfe", "", "MACKIE", "12-ab", "１２-3x", "N/A"} {
		f.Add(s)
	}
	chains := map[string][]normChain{}
	for _, spec := range []string{"last4", "prefix:3", "nysiis", "year", "yearmonth", "date", "nfc+fold+prefix:5"} {
		c, err := parseNormalize(spec, 1)
		require.NoError(f, err)
		chains[spec] = c
	}
	f.Fuzz(func(t *testing.T, s string) {
		// digits: the ASCII digit of every Unicode decimal digit, in
		// order, appended after what dst held, and nothing of s left in
		// dst's spare capacity.
		var want []byte
		for _, r := range s {
			if d, ok := digitValue(r); ok {
				want = append(want, '0'+d)
			}
		}
		dst := make([]byte, 3, 3+2*len(s)+1)
		copy(dst, "pre")
		got := normalizers["digits"](dst, []byte(s))
		assert.Equal(t, "pre"+string(want), string(got), "digits(%q)", s)
		assert.Equal(t, make([]byte, cap(got)-len(got)), got[len(got):cap(got)], "digits(%q) leaves no byte past its result", s)
		for spec, c := range chains {
			out := []byte(s)
			for _, n := range c[0].fns {
				out = n(nil, out)
			}
			switch spec {
			case "last4":
				assert.True(t, len(out) == 0 || len(out) == 4, "last4(%q) = %q", s, out)
			case "prefix:3":
				assert.True(t, strings.HasPrefix(s, string(out)), "prefix:3(%q) = %q", s, out)
			case "nysiis":
				assert.LessOrEqual(t, len(out), 6)
				assert.NotContains(t, string(out), " ")
			}
		}
	})
}
