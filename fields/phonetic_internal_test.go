package fields

import (
	"encoding/csv"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// jellyfishDeviations are the rows of jellyfish's NYSIIS table where this
// implementation, which follows Apache Commons Codec (nysiis.tsv), codes
// otherwise, with the code it gives and why. The published descriptions of
// Taft's rules leave both readings open.
var jellyfishDeviations = map[string]struct{ code, why string }{
	// Commons Codec applies SCH → SSS anywhere in the name (Taft's step
	// 5), then drops the final S and A: BASSS → BAS → BA → B. jellyfish
	// keeps "BAS".
	"Bosch": {"B", "SCH → SSS inside the name, then the final S and A dropped"},
	// Letters are stripped of accents and kept only from A to Z, so ç
	// codes as C; jellyfish keeps the non-ASCII letter.
	"ç": {"C", "accents removed, letters A to Z only"},
}

// TestNYSIISJellyfishTable checks the untruncated NYSIIS code against the
// test table of jellyfish (James Turk's string comparison library, BSD;
// testdata/phonetic/jellyfish-nysiis.csv, see testdata/SOURCES.md), a
// second published table from an implementation independent of Commons
// Codec. Its two deviations are pinned, not skipped.
func TestNYSIISJellyfishTable(t *testing.T) {
	f, err := os.Open("../testdata/phonetic/jellyfish-nysiis.csv")
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 36)
	agree := 0
	for _, r := range rows {
		in, want := r[0], r[1]
		got := string(appendNYSIIS(nil, []byte(in), false))
		if d, ok := jellyfishDeviations[in]; ok {
			assert.Equal(t, d.code, got, "%s: %s", in, d.why)
			assert.NotEqual(t, want, got, "%s is listed as a deviation", in)
			continue
		}
		assert.Equal(t, want, got, "%q", in)
		agree++
	}
	assert.Equal(t, 34, agree)
}
