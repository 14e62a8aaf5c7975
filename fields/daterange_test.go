package fields_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
)

// rangePatient has date indexes of three precisions on the birth date,
// prefix indexes and a phonetic index on the last name. The few bits make
// false positives that the post-filter must remove.
type rangePatient struct {
	ID        string                      `phi:"id,table=patients"`
	TenantID  string                      `phi:"scope"`
	Last      fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
	BornY     fields.BlindIndex           `phi:"index,of=BirthDate,normalize=year,bits=5"`
	BornYM    fields.BlindIndex           `phi:"index,of=BirthDate,normalize=yearmonth,bits=7"`
	BornD     fields.BlindIndex           `phi:"index,of=BirthDate,normalize=date,bits=9"`
	LastP2    fields.BlindIndex           `phi:"index,of=Last,normalize=nfc+fold+prefix:2,bits=6"`
	LastP3    fields.BlindIndex           `phi:"index,of=Last,normalize=nfc+fold+prefix:3,bits=7"`
	LastP4    fields.BlindIndex           `phi:"index,of=Last,normalize=nfc+fold+prefix:4,bits=8"`
	LastSound fields.BlindIndex           `phi:"index,of=Last,normalize=alnum+nysiis,bits=8"`
}

// monthsOnly has year and month indexes, no date index.
type monthsOnly struct {
	ID    string                      `phi:"id,table=m"`
	Scope string                      `phi:"scope"`
	Born  fields.Encrypted[time.Time] `phi:"encrypt"`
	Y     fields.BlindIndex           `phi:"index,of=Born,normalize=year,bits=16"`
	YM    fields.BlindIndex           `phi:"index,of=Born,normalize=yearmonth,bits=16"`
}

// yearsOnly has a year index over a date string.
type yearsOnly struct {
	ID    string            `phi:"id,table=y"`
	Scope string            `phi:"scope"`
	Born  fields.String     `phi:"encrypt"`
	Y     fields.BlindIndex `phi:"index,of=Born,normalize=trim+year,bits=16"`
}

// daysOnly has a date index only.
type daysOnly struct {
	ID    string                      `phi:"id,table=d"`
	Scope string                      `phi:"scope"`
	Born  fields.Encrypted[time.Time] `phi:"encrypt"`
	D     fields.BlindIndex           `phi:"index,of=Born,normalize=date,bits=16"`
}

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParseDateRange(t *testing.T) {
	for in, want := range map[string][2]string{
		"1980-03..1985-06":       {"1980-03-01", "1985-06-30"},
		"1980..1985":             {"1980-01-01", "1985-12-31"},
		"1980-03-15..1980-03-15": {"1980-03-15", "1980-03-15"},
		" 1983 ":                 {"1983-01-01", "1983-12-31"},
		"2000-02":                {"2000-02-01", "2000-02-29"},
		"1900-02..1900-02":       {"1900-02-01", "1900-02-28"},
		"1999-12-31..2000":       {"1999-12-31", "2000-12-31"},
	} {
		r, err := fields.ParseDateRange(in)
		require.NoError(t, err, in)
		assert.Equal(t, want[0]+".."+want[1], r.String(), in)
	}
	for _, in := range []string{"", "..", "1980..", "..1985", "1985..1980", "1980-13", "1980-3", "80-03..85", "1980-02-30", "1980/03", "1980-03..1980-02-29", "0000"} {
		_, err := fields.ParseDateRange(in)
		assert.ErrorIs(t, err, fields.ErrInvalidDateRange, "%q", in)
		if err != nil && len(in) > 3 {
			assert.NotContains(t, err.Error(), in, "errors do not quote the range")
		}
	}
	r := fields.DateRange{From: day("1980-03-01"), To: day("1980-03-31")}
	assert.True(t, r.Contains(time.Date(1980, 3, 31, 23, 59, 0, 0, time.UTC)))
	assert.False(t, r.Contains(day("1980-04-01")))
	assert.False(t, r.Contains(day("1980-02-29")))
}

// TestDateRangeCover checks the buckets a range becomes: the coarsest
// inside it, the finest available at its edges.
func TestDateRangeCover(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, queryConfig)
	type want struct {
		buckets int
		per     map[string]int // terms per index
	}
	cases := []struct {
		tmpl  any
		rng   string
		field string
		want  want
	}{
		// The example: Mar-Dec 1980, 1981-1984, Jan-Jun 1985.
		{&monthsOnly{Scope: "s"}, "1980-03..1985-06", "Born", want{20, map[string]int{"Y": 4, "YM": 16}}},
		{&rangePatient{TenantID: "s"}, "1980-03..1985-06", "BirthDate", want{20, map[string]int{"BornY": 4, "BornYM": 16}}},
		// Days at the edges when a date index exists: 17 days of March,
		// April-December, 1981-1984, January-May 1985, 10 days of June.
		{&rangePatient{TenantID: "s"}, "1980-03-15..1985-06-10", "BirthDate", want{45, map[string]int{"BornD": 27, "BornY": 4, "BornYM": 14}}},
		// Without a date index, the edges take their whole months.
		{&monthsOnly{Scope: "s"}, "1980-03-15..1985-06-10", "Born", want{20, map[string]int{"Y": 4, "YM": 16}}},
		// Only years: the edges take their whole years.
		{&yearsOnly{Scope: "s"}, "1980-03..1985-06", "Born", want{6, map[string]int{"Y": 6}}},
		// Only days: every day.
		{&daysOnly{Scope: "s"}, "1980-02..1980-03", "Born", want{60, map[string]int{"D": 60}}},
		// A whole year is one bucket.
		{&rangePatient{TenantID: "s"}, "1983", "BirthDate", want{1, map[string]int{"BornY": 1}}},
		{&rangePatient{TenantID: "s"}, "1983-12-31..1984-01-01", "BirthDate", want{2, map[string]int{"BornD": 2}}},
	}
	for _, tc := range cases {
		r, err := fields.ParseDateRange(tc.rng)
		require.NoError(t, err)
		rt, err := c.DateRangeSearch(ctx, tc.tmpl, tc.field, r, 0)
		require.NoError(t, err, tc.rng)
		assert.Equal(t, tc.want.buckets, rt.Buckets, "%T %s", tc.tmpl, tc.rng)
		got := map[string]int{}
		for _, ct := range rt.Columns {
			got[ct.Index] = len(ct.Terms)
		}
		assert.Equal(t, tc.want.per, got, "%T %s", tc.tmpl, tc.rng)
		assert.Equal(t, tc.want.buckets, rt.Terms, "one key version: one term per bucket")
	}

	// A bucket's term is the index value of every date in it.
	r, _ := fields.ParseDateRange("1980-03..1985-06")
	rt, err := c.DateRangeSearch(ctx, &monthsOnly{Scope: "s"}, "Born", r, 0)
	require.NoError(t, err)
	for _, d := range []string{"1980-03-01", "1980-12-31", "1983-07-04", "1985-06-30"} {
		rec := &monthsOnly{ID: "x", Scope: "s", Born: fields.New(day(d))}
		require.NoError(t, c.Seal(ctx, rec))
		found := false
		for _, ct := range rt.Columns {
			x := map[string]fields.BlindIndex{"Y": rec.Y, "YM": rec.YM}[ct.Index]
			for _, term := range ct.Terms {
				found = found || x.Equal(term)
			}
		}
		assert.True(t, found, d)
	}
	for _, d := range []string{"1980-02-29", "1985-07-01"} {
		rec := &monthsOnly{ID: "x", Scope: "s", Born: fields.New(day(d))}
		require.NoError(t, c.Seal(ctx, rec))
		for _, ct := range rt.Columns {
			x := map[string]fields.BlindIndex{"Y": rec.Y, "YM": rec.YM}[ct.Index]
			for _, term := range ct.Terms {
				assert.False(t, x.Equal(term), "%s is outside: no 16-bit term matches it here", d)
			}
		}
	}

	_, err = c.DateRangeSearch(ctx, &rangePatient{TenantID: "s"}, "Last", r, 0)
	assert.ErrorIs(t, err, fields.ErrNoDateIndex)
	_, err = c.DateRangeSearch(ctx, &rangePatient{}, "BirthDate", r, 0)
	assert.ErrorIs(t, err, fields.ErrMissingRecordID)
	_, err = c.DateRangeSearch(ctx, &rangePatient{TenantID: "s"}, "BirthDate", fields.DateRange{From: day("1990-01-01"), To: day("1980-01-01")}, 0)
	assert.ErrorIs(t, err, fields.ErrInvalidDateRange)
}

// TestDateRangeTermLimit checks the bound on terms, and that the key
// versions being retired count.
func TestDateRangeTermLimit(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t)
	c := newCodec(t, fields.Config{Keyring: kr, InsecureSkipIndexPlanner: true})
	wide, _ := fields.ParseDateRange("1900..2000")
	_, err := c.DateRangeSearch(ctx, &daysOnly{Scope: "s"}, "Born", wide, 0)
	var tl *fields.TermLimitError
	require.ErrorAs(t, err, &tl)
	assert.ErrorIs(t, err, fields.ErrTooManyTerms)
	assert.Equal(t, fields.DefaultMaxTerms, tl.Limit)
	assert.Greater(t, tl.Terms, tl.Limit)

	r, _ := fields.ParseDateRange("1980-03..1985-06") // 20 buckets
	_, err = c.DateRangeSearch(ctx, &monthsOnly{Scope: "s"}, "Born", r, 20)
	require.NoError(t, err, "exactly at the limit")
	_, err = c.DateRangeSearch(ctx, &monthsOnly{Scope: "s"}, "Born", r, 19)
	require.ErrorAs(t, err, &tl)
	assert.Equal(t, 19, tl.Limit)

	// With a second live version of the month index, each month bucket
	// is searched under both: 4 + 2*16 terms, and rows indexed under
	// either version are found while the reindex runs.
	before := &monthsOnly{ID: "a", Scope: "s", Born: fields.New(day("1980-05-10"))}
	require.NoError(t, c.Seal(ctx, before))
	id, err := keys.IndexKeyID("s", "m", "ym")
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, id)
	require.NoError(t, err)
	rt, err := c.DateRangeSearch(ctx, &monthsOnly{Scope: "s"}, "Born", r, 0)
	require.NoError(t, err)
	assert.Equal(t, 20, rt.Buckets)
	assert.Equal(t, 36, rt.Terms)
	after := &monthsOnly{ID: "b", Scope: "s", Born: fields.New(day("1985-06-30"))}
	require.NoError(t, c.Seal(ctx, after))
	require.Equal(t, uint32(1), before.YM.Version())
	require.Equal(t, uint32(2), after.YM.Version())
	for _, rec := range []*monthsOnly{before, after} {
		found := false
		for _, ct := range rt.Columns {
			if ct.Index == "YM" {
				for _, term := range ct.Terms {
					found = found || rec.YM.Equal(term)
				}
			}
		}
		assert.True(t, found, "index version %d", rec.YM.Version())
	}
	_, err = c.DateRangeSearch(ctx, &monthsOnly{Scope: "s"}, "Born", r, 35)
	assert.ErrorIs(t, err, fields.ErrTooManyTerms)

	// A query counts the terms of all its conditions together.
	q := fields.NewQuery(&monthsOnly{Scope: "s"}).DateRange("Born", r).DateRange("Born", r).MaxTerms(71)
	_, err = c.Search(ctx, q)
	require.ErrorAs(t, err, &tl)
	assert.Equal(t, 71, tl.Limit)
	_, err = c.Search(ctx, q.MaxTerms(72))
	require.NoError(t, err)
}

func TestMatchDateRange(t *testing.T) {
	c := newCodec(t, queryConfig)
	r, _ := fields.ParseDateRange("1980-03..1985-06")
	for d, want := range map[string]bool{"1980-03-01": true, "1985-06-30": true, "1980-02-29": false, "1985-07-01": false, "1983-01-01": true} {
		ok, err := c.MatchDateRange(&rangePatient{BirthDate: fields.New(day(d))}, "BirthDate", r)
		require.NoError(t, err)
		assert.Equal(t, want, ok, d)
	}
	// A time.Time counts by its date in UTC, as the indexes read it.
	east := time.FixedZone("UTC+10", 10*3600)
	ok, err := c.MatchDateRange(&rangePatient{BirthDate: fields.New(time.Date(1980, 3, 1, 5, 0, 0, 0, east))}, "BirthDate", r)
	require.NoError(t, err)
	assert.False(t, ok, "1980-02-29 in UTC")
	// Date strings, whole and partial.
	for s, want := range map[string]bool{"1983": true, "1980": false, "1980-03": true, "1985-06": true, "1985-07": false, " 1984-02-29 ": true, "not a date": false, "": false} {
		ok, err := c.MatchDateRange(&yearsOnly{Born: fields.New(s)}, "Born", r)
		require.NoError(t, err)
		assert.Equal(t, want, ok, "%q", s)
	}
	ok, err = c.MatchDateRange(&yearsOnly{}, "Born", r)
	require.NoError(t, err)
	assert.False(t, ok, "NULL")
	var scanned yearsOnly
	require.NoError(t, scanned.Born.Scan("phi1.xxxx"))
	_, err = c.MatchDateRange(&scanned, "Born", r)
	assert.ErrorIs(t, err, fields.ErrNotOpened)
	_, err = c.MatchDateRange(&yearsOnly{}, "Nope", r)
	assert.Error(t, err)
}
