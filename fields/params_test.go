package fields_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
)

// Two definitions of the same index column (table p, column idx): the
// same key set, other normalizers or lengths.
type paramsTrim struct {
	ID    string            `phi:"id,table=p"`
	Scope string            `phi:"scope"`
	Name  fields.String     `phi:"encrypt"`
	Idx   fields.BlindIndex `phi:"index,of=Name,normalize=trim,bits=16,column=idx"`
}

type paramsTrimLower struct {
	ID    string            `phi:"id,table=p"`
	Scope string            `phi:"scope"`
	Name  fields.String     `phi:"encrypt"`
	Idx   fields.BlindIndex `phi:"index,of=Name,normalize=trim+lower,bits=16,column=idx"`
}

type paramsWider struct {
	ID    string            `phi:"id,table=p"`
	Scope string            `phi:"scope"`
	Name  fields.String     `phi:"encrypt"`
	Idx   fields.BlindIndex `phi:"index,of=Name,normalize=trim,bits=17,column=idx"`
}

// TestIndexParamsBound (issue 12): new index key versions bind the
// normalizer chains and the bit length into the key, so that changing
// normalize= or bits= without a new index version cannot mix terms: for
// values that both chains normalize alike ("abc" under trim and under
// trim+lower), the two definitions still give different terms, and a
// 17-bit value is not a 16-bit one with one more bit. An IndexSpec with
// the same table, column, chain and bits gives the struct's values.
func TestIndexParamsBound(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	for i := range 4 {
		v := fmt.Sprintf("abc%d", i)
		a, err := c.IndexTerms(ctx, &paramsTrim{Scope: "s", Name: fields.New(v)}, "Idx")
		require.NoError(t, err)
		b, err := c.IndexTerms(ctx, &paramsTrimLower{Scope: "s", Name: fields.New(v)}, "Idx")
		require.NoError(t, err)
		w, err := c.IndexTerms(ctx, &paramsWider{Scope: "s", Name: fields.New(v)}, "Idx")
		require.NoError(t, err)
		require.Len(t, a, 1)
		assert.Equal(t, a[0].Version(), b[0].Version(), "the same key version")
		assert.False(t, a[0].Equal(b[0]), "%s: two chains, two terms", v)
		av, _ := a[0].Value()
		wv, _ := w[0].Value()
		assert.False(t, bytes.Equal(av.([]byte), wv.([]byte)[:len(av.([]byte))]), "%s: the 17-bit value does not extend the 16-bit one", v)

		// The same definition through IndexSpec gives the same value.
		x, err := c.IndexFor(ctx, "s", fields.IndexSpec{Table: "p", Column: "idx", Bits: 16, Normalize: "trim+lower"}, v)
		require.NoError(t, err)
		assert.True(t, x.Equal(b[0]))
	}
}
