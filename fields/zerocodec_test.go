package fields_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
)

// TestZeroAndNilCodec: every method of a nil *Codec or of the zero Codec
// fails with ErrNoCodec instead of panicking.
func TestZeroAndNilCodec(t *testing.T) {
	ctx := context.Background()
	spec := fields.IndexSpec{Table: "patients", Column: "ssn", Bits: 16, Normalize: "digits"}
	rec := func() *tiny { return &tiny{ID: "1", TenantID: "tenant:a", SSN: fields.New("999-12-3456")} }
	for name, c := range map[string]*fields.Codec{"nil": nil, "zero": new(fields.Codec)} {
		calls := map[string]func() error{
			"Plan": func() error { return c.Plan(rec()) },
			"Seal": func() error { return c.Seal(ctx, rec()) },
			"Open": func() error { return c.Open(ctx, rec()) },
			"Open batch": func() error {
				return c.Open(ctx, make([]tiny, 600))
			},
			"OpenPipeline": func() error { return c.OpenPipeline(ctx).Add(rec()) },
			"IndexValue": func() error {
				_, err := c.IndexValue(ctx, rec(), "SSNIndex")
				return err
			},
			"IndexTerms": func() error {
				_, err := c.IndexTerms(ctx, rec(), "SSNIndex")
				return err
			},
			"Match": func() error {
				_, err := c.Match(rec(), rec(), "SSNIndex")
				return err
			},
			"IndexFor": func() error {
				_, err := c.IndexFor(ctx, "tenant:a", spec, "999-12-3456")
				return err
			},
			"TermsFor": func() error {
				_, err := c.TermsFor(ctx, "tenant:a", spec, "999-12-3456")
				return err
			},
			"PlanReport": func() error {
				_, err := c.PlanReport(rec())
				return err
			},
			"BindTable": func() error { return c.BindTable(rec(), "t") },
			"PrefixSearch": func() error {
				_, err := c.PrefixSearch(ctx, rec(), "SSN")
				return err
			},
			"MatchPrefix": func() error {
				_, err := c.MatchPrefix(rec(), rec(), "SSNIndex")
				return err
			},
			"DateRangeSearch": func() error {
				r, err := fields.ParseDateRange("1970..1980")
				require.NoError(t, err)
				_, err = c.DateRangeSearch(ctx, rec(), "SSN", r, 0)
				return err
			},
			"MatchDateRange": func() error {
				r, err := fields.ParseDateRange("1970..1980")
				require.NoError(t, err)
				_, err = c.MatchDateRange(rec(), "SSN", r)
				return err
			},
			"Search": func() error {
				q := fields.NewQuery(rec())
				_, err := c.Search(ctx, q)
				return err
			},
		}
		for call, fn := range calls {
			var err error
			require.NotPanics(t, func() { err = fn() }, name+" "+call)
			assert.ErrorIs(t, err, fields.ErrNoCodec, name+" "+call)
		}
	}
}
