package fields_test

import (
	"context"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
)

type wideIndex struct {
	ID       string            `phi:"id,table=wide"`
	TenantID string            `phi:"scope"`
	SSN      fields.String     `phi:"encrypt"`
	SSNIndex fields.BlindIndex `phi:"index,of=SSN,normalize=digits,bits=64"`
}

// TestDigitsNormalizer checks that digits maps every Unicode decimal digit
// to its ASCII digit, so full-width and other scripts' SSNs index like
// ASCII ones and never normalize to "" (where they would all collide), and
// that a value with no digits at all gets no index value.
func TestDigitsNormalizer(t *testing.T) {
	for _, r := range unicode.Nd.R16 {
		require.Equal(t, uint16(1), r.Stride)
		require.Zero(t, (r.Hi-r.Lo+1)%10, "Nd range %U-%U", r.Lo, r.Hi)
	}
	for _, r := range unicode.Nd.R32 {
		require.Equal(t, uint32(1), r.Stride)
		require.Zero(t, (r.Hi-r.Lo+1)%10, "Nd range %U-%U", r.Lo, r.Hi)
	}

	ctx := context.Background()
	c := newCodec(t, fields.Config{InsecureSkipIndexPlanner: true}) // 64 bits
	index := func(ssn string) fields.BlindIndex {
		r := &wideIndex{ID: "1", TenantID: "tenant:1", SSN: fields.New(ssn)}
		require.NoError(t, c.Seal(ctx, r))
		return r.SSNIndex
	}
	ascii := index("999-12-3456")
	require.False(t, ascii.IsNull())
	for _, same := range []string{
		"９９９-１２-３４５６", // full width
		"٩٩٩-١٢-٣٤٥٦", // Arabic-Indic
		"९९९-१२-३४५६", // Devanagari
		"𝟗𝟗𝟗-𝟏𝟐-𝟑𝟒𝟓𝟔", // mathematical bold
		"999 12 3456",
	} {
		assert.True(t, ascii.Equal(index(same)), "%q indexes like 999-12-3456", same)
	}
	other := index("９９９-１２-３４５７")
	assert.False(t, ascii.Equal(other), "different full-width SSNs, different index values")

	// No digits at all: no index value, rather than one shared by every
	// such value; a search for one is refused; Match never pairs them.
	assert.True(t, index("N/A").IsNull())
	assert.True(t, index("unknown").IsNull())
	_, err := c.IndexTerms(ctx, &wideIndex{TenantID: "tenant:1", SSN: fields.New("N/A")}, "SSNIndex")
	assert.ErrorIs(t, err, fields.ErrEmptyTerm, "the caller's input: a 400, not a 500")
	ok, err := c.Match(&wideIndex{SSN: fields.New("N/A")}, &wideIndex{SSN: fields.New("unknown")}, "SSNIndex")
	require.NoError(t, err)
	assert.False(t, ok)
	ok, err = c.Match(&wideIndex{SSN: fields.New("999-12-3456")}, &wideIndex{SSN: fields.New("９９９１２３４５６")}, "SSNIndex")
	require.NoError(t, err)
	assert.True(t, ok)
}
