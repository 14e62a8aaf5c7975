package fields_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
)

// frontDesk is a registration desk's record with the searches of issue 16:
// last four of the SSN with the birth date, last-name prefixes of 2 to 5
// letters, sounds-like first and last names, and birth-date ranges by year
// and month buckets. Its bits are those the planner accepts for a table of
// 10 million patients (frontDeskConfig).
type frontDesk struct {
	ID        string                      `phi:"id,table=front_desk"`
	TenantID  string                      `phi:"scope"`
	SSN       fields.String               `phi:"encrypt"`
	First     fields.String               `phi:"encrypt"`
	Last      fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
	Last4DOB  fields.BlindIndex           `phi:"index,of=SSN+BirthDate,normalize=digits+last4|date,bits=12"`
	LastP2    fields.BlindIndex           `phi:"index,of=Last,normalize=nfc+fold+prefix:2,bits=10"`
	LastP3    fields.BlindIndex           `phi:"index,of=Last,normalize=nfc+fold+prefix:3,bits=12"`
	LastP4    fields.BlindIndex           `phi:"index,of=Last,normalize=nfc+fold+prefix:4,bits=14"`
	LastP5    fields.BlindIndex           `phi:"index,of=Last,normalize=nfc+fold+prefix:5,bits=16"`
	LastSound fields.BlindIndex           `phi:"index,of=Last,normalize=nysiis,bits=16"`
	FirstSnd  fields.BlindIndex           `phi:"index,of=First,normalize=nysiis,bits=14"`
	BornYear  fields.BlindIndex           `phi:"index,of=BirthDate,normalize=year,bits=4"`
	BornMonth fields.BlindIndex           `phi:"index,of=BirthDate,normalize=yearmonth,bits=6"`
}

// Domains of the name fields, in bits: the US Census 2010 counted 162,253
// surnames held by 100 people or more (2^17.3); the Social Security
// Administration's list of given names since 1880 holds about 100,000
// (2^16.6). The SSN has 10^9 values (2^29.9).
var frontDeskDomains = map[string]float64{"front_desk.last": 17.3, "front_desk.first": 16.6, "front_desk.ssn": 29.9}

const tenMillion = 10_000_000

func frontDeskConfig(rows int64) fields.Config {
	return fields.Config{ExpectedRows: rows, SourceBits: frontDeskDomains, OnPlanWarning: func(fields.PlanWarning) {}}
}

// TestPlannerFrontDesk: the planner's figures for the front desk over 10
// million patients, computed from its model (the package documentation's
// "Planning blind indexes") by hand here.
func TestPlannerFrontDesk(t *testing.T) {
	c := newCodec(t, frontDeskConfig(tenMillion))
	rep, err := c.PlanReport(&frontDesk{})
	require.NoError(t, err)
	require.NoError(t, rep.Err)
	budget := math.Log2(tenMillion / 2)
	assert.InDelta(t, 22.25, rep.Budget, 0.01)
	assert.InDelta(t, budget, rep.Budget, 1e-9)

	byName := map[string]fields.IndexLeak{}
	for _, il := range rep.Indexes {
		byName[il.Index] = il
		t.Logf("%-9s bits %2d  domain %5.1f  leak %5.1f  matches %10.1f  false positives %9.1f  rows/query %10.1f  max bits %2d",
			il.Index, il.Bits, il.DomainBits, il.LeakBits, il.Matches, il.FalsePositives, il.RowsPerQuery, il.MaxBits)
	}
	date := math.Log2(150 * 365.25)
	last4DOB := byName["Last4DOB"]
	assert.Equal(t, "digits+last4|date", last4DOB.Normalize)
	assert.InDelta(t, math.Log2(1e4)+date, last4DOB.DomainBits, 1e-9)
	assert.InDelta(t, 12, last4DOB.LeakBits, 1e-9)
	assert.InDelta(t, tenMillion/math.Exp2(last4DOB.DomainBits), last4DOB.Matches, 1e-9)
	assert.InDelta(t, (tenMillion-last4DOB.Matches)/4096, last4DOB.FalsePositives, 1e-6)
	assert.InDelta(t, 2441.4, last4DOB.RowsPerQuery, 0.1, "a last4+DOB search decrypts about 2,441 rows of 10 million")
	// BirthDate: Last4DOB (12 bits) and the year and month buckets (4 + 6
	// bits, under the 10.8 bits of a year-month) add up to 22 bits: the
	// compound may grow to 12 bits only.
	assert.Equal(t, 12, last4DOB.MaxBits)
	assert.Equal(t, 6, byName["BornMonth"].MaxBits, "4 + 7 bits of nested buckets would reveal 10.8 bits, over the 10.25 the 12-bit compound leaves")
	assert.InDelta(t, math.Log2(150), byName["BornYear"].DomainBits, 1e-9)

	// The last name's five indexes together reveal at most its domain,
	// 17.3 bits: any length is within budget.
	p2 := byName["LastP2"]
	assert.InDelta(t, 2*math.Log2(27), p2.DomainBits, 1e-9)
	assert.InDelta(t, p2.DomainBits, p2.LeakBits, 1e-9, "10 bits cover the 9.5 bits of two letters")
	assert.InDelta(t, tenMillion/math.Exp2(p2.DomainBits)+(tenMillion-tenMillion/math.Exp2(p2.DomainBits))/1024, p2.RowsPerQuery, 1e-6)
	assert.InDelta(t, 17.3, byName["LastSound"].DomainBits, 1e-9, "capped by the declared domain")
	assert.Equal(t, fields.MaxIndexBits, byName["LastSound"].MaxBits)

	fieldsBy := map[string]fields.FieldLeak{}
	for _, fl := range rep.Fields {
		fieldsBy[fl.Field] = fl
		t.Logf("%-9s indexes %v leak %.2f bits, %.1f candidate rows", fl.Field, fl.Indexes, fl.LeakBits, fl.Candidates)
	}
	assert.InDelta(t, 12, fieldsBy["SSN"].LeakBits, 1e-9)
	assert.InDelta(t, 22, fieldsBy["BirthDate"].LeakBits, 1e-9)
	assert.InDelta(t, tenMillion/math.Exp2(22), fieldsBy["BirthDate"].Candidates, 1e-9)
	assert.InDelta(t, 17.3, fieldsBy["Last"].LeakBits, 1e-9)
	assert.ElementsMatch(t, []string{"Last4DOB", "BornYear", "BornMonth"}, fieldsBy["BirthDate"].Indexes)

	// Low-cardinality warnings: the prefixes of 2, 3 letters, the year
	// and month buckets, and Last4DOB's... not: its input has 29 bits.
	var warned []string
	for _, w := range rep.Warnings {
		warned = append(warned, w.Index)
	}
	assert.ElementsMatch(t, []string{"LastP2", "LastP3", "BornYear", "BornMonth"}, warned)
}

// frontDeskWide is frontDesk with a 20-bit Last4DOB: with the date
// buckets, the birth date's indexes reveal 30.8 bits, more than 10
// million rows allow.
type frontDeskWide struct {
	ID        string                      `phi:"id,table=front_desk"`
	TenantID  string                      `phi:"scope"`
	SSN       fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
	Last4DOB  fields.BlindIndex           `phi:"index,of=SSN+BirthDate,normalize=digits+last4|date,bits=20"`
	BornYear  fields.BlindIndex           `phi:"index,of=BirthDate,normalize=year,bits=8"`
	BornMonth fields.BlindIndex           `phi:"index,of=BirthDate,normalize=yearmonth,bits=12"`
}

// TestPlannerRefuses: a tag set whose indexes together single out values
// is refused with a *LeakError, at NewCodec when listed in Types, and
// otherwise at its first Seal, search or Open: it fails closed.
func TestPlannerRefuses(t *testing.T) {
	ctx := context.Background()
	cfg := frontDeskConfig(tenMillion)
	cfg.Keyring = newKeyring(t)
	cfg.Types = []any{&frontDesk{}, frontDeskWide{}}
	_, err := fields.NewCodec(cfg)
	require.ErrorIs(t, err, fields.ErrIndexLeak)
	assert.ErrorIs(t, err, fields.ErrInvalidTag)
	var le *fields.LeakError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "BirthDate", le.Field)
	assert.Equal(t, "birth_date", le.Column)
	assert.Equal(t, []string{"Last4DOB", "BornYear", "BornMonth"}, le.Indexes)
	assert.InDelta(t, 20+math.Log2(150*12), le.LeakBits, 1e-9, "20 bits, and the nested buckets capped at a year-month's 10.8")
	assert.Less(t, le.Candidates, 2.0)
	assert.Equal(t, int64(tenMillion), le.Rows)

	cfg.Types = []any{&frontDesk{}}
	c, err := fields.NewCodec(cfg)
	require.NoError(t, err, "the front desk is within budget")
	r := &frontDeskWide{ID: "1", TenantID: "t", SSN: fields.New("999-12-3456"), BirthDate: fields.New(time.Date(1980, 3, 1, 0, 0, 0, 0, time.UTC))}
	assert.ErrorIs(t, c.Seal(ctx, r), fields.ErrIndexLeak, "Seal refuses, and writes nothing")
	assert.True(t, r.Last4DOB.IsNull())
	assert.False(t, r.SSN.Sealed())
	_, err = c.IndexTerms(ctx, r, "Last4DOB")
	assert.ErrorIs(t, err, fields.ErrIndexLeak)
	assert.ErrorIs(t, c.Plan(r), fields.ErrIndexLeak)

	// A 12-bit compound passes (the report's MaxBits); so does the wide
	// one on a table large enough.
	big := newCodec(t, frontDeskConfig(1<<32))
	assert.NoError(t, big.Plan(&frontDeskWide{}))
	// MinCandidates of 2^k tightens the budget by k-1 bits.
	strict := frontDeskConfig(tenMillion)
	strict.MinCandidates = 1 << 10
	assert.ErrorIs(t, newCodec(t, strict).Plan(&frontDesk{}), fields.ErrIndexLeak, "22 bits leave 2.4 candidates, fewer than 1,024")
	// The escape hatch for tests.
	skip := frontDeskConfig(tenMillion)
	skip.InsecureSkipIndexPlanner = true
	assert.NoError(t, newCodec(t, skip).Plan(&frontDeskWide{}))
}

// TestPlannerDefaultBound: without ExpectedRows the planner assumes
// DefaultExpectedRows (a million), and refuses two 16-bit indexes over a
// field of unknown domain (32 bits > 18.9).
func TestPlannerDefaultBound(t *testing.T) {
	type twoWide struct {
		ID    string            `phi:"id,table=tw"`
		Scope string            `phi:"scope"`
		MRN   fields.String     `phi:"encrypt"`
		A     fields.BlindIndex `phi:"index,of=MRN,normalize=alnum,bits=16"`
		B     fields.BlindIndex `phi:"index,of=MRN,normalize=alnum+fold,bits=16"`
	}
	c := newCodec(t, fields.Config{})
	err := c.Plan(&twoWide{})
	var le *fields.LeakError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, int64(fields.DefaultExpectedRows), le.Rows)
	assert.Equal(t, int64(fields.DefaultMinCandidates), le.MinCandidates)
	assert.InDelta(t, 32, le.LeakBits, 1e-9)
	assert.InDelta(t, math.Log2(fields.DefaultExpectedRows/2), le.Budget, 1e-9)
	// The Synthea Patient of the other tests, one 16-bit index per field,
	// passes the default bound.
	assert.NoError(t, c.Plan(&Patient{}))
}

// TestPlannerNesting: prefixes of one text (or buckets of one date) are
// functions of the longest one, so together they reveal no more than its
// domain; unrelated indexes over one field add up, compounds count for
// each field they read.
func TestPlannerNesting(t *testing.T) {
	type nested struct {
		ID    string            `phi:"id,table=nest"`
		Scope string            `phi:"scope"`
		Name  fields.String     `phi:"encrypt"`
		City  fields.String     `phi:"encrypt"`
		P1    fields.BlindIndex `phi:"index,of=Name,normalize=fold+prefix:1,bits=8"`
		P2    fields.BlindIndex `phi:"index,of=Name,normalize=fold+prefix:2,bits=8"`
		P3    fields.BlindIndex `phi:"index,of=Name,normalize=fold+prefix:3,bits=8"`
		Other fields.BlindIndex `phi:"index,of=Name,normalize=trim+prefix:2,bits=3"`
		Both  fields.BlindIndex `phi:"index,of=City+Name,normalize=fold+prefix:1,bits=5"`
	}
	c := newCodec(t, fields.Config{ExpectedRows: 1 << 30, OnPlanWarning: func(fields.PlanWarning) {}})
	rep, err := c.PlanReport(&nested{})
	require.NoError(t, err)
	got := map[string]float64{}
	for _, fl := range rep.Fields {
		got[fl.Field] = fl.LeakBits
	}
	// P1..P3: min(4.75 + 8 + 8, 14.26); Other (another base chain): 3;
	// Both: min(5, 9.5).
	want := min(math.Log2(27)+8+8, 3*math.Log2(27)) + 3 + 5
	assert.InDelta(t, want, got["Name"], 1e-9)
	assert.InDelta(t, 5, got["City"], 1e-9)
}

// TestPlannerWarnings: a low-cardinality source is reported once per
// type to OnPlanWarning, naming the index and never a value.
func TestPlannerWarnings(t *testing.T) {
	type sexIndexed struct {
		ID    string            `phi:"id,table=sx"`
		Scope string            `phi:"scope"`
		Sex   fields.String     `phi:"encrypt"`
		Born  fields.String     `phi:"encrypt"`
		SexX  fields.BlindIndex `phi:"index,of=Sex,normalize=fold,bits=8"`
		Year  fields.BlindIndex `phi:"index,of=Born,normalize=year,bits=4"`
	}
	var got []fields.PlanWarning
	c := newCodec(t, fields.Config{SourceBits: map[string]float64{"sx.sex": 2}, OnPlanWarning: func(w fields.PlanWarning) { got = append(got, w) }})
	ctx := context.Background()
	for i := range 3 {
		require.NoError(t, c.Seal(ctx, &sexIndexed{ID: fmt.Sprint(i), Scope: "s", Sex: fields.New("female"), Born: fields.New("1980-03-01")}))
	}
	require.Len(t, got, 2, "once per type")
	assert.Equal(t, "SexX", got[0].Index)
	assert.Contains(t, got[0].Reason, "one to one")
	assert.Equal(t, "Year", got[1].Index)
	assert.NotContains(t, got[1].Reason, "one to one", "4 bits under 7.2")
	for _, w := range got {
		assert.NotContains(t, w.String(), "female")
		assert.NotContains(t, w.String(), "1980")
	}
}

// TestLeakErrorNamesNoValue: the refusal names fields, indexes and
// figures only.
func TestLeakErrorNamesNoValue(t *testing.T) {
	c := newCodec(t, frontDeskConfig(tenMillion))
	r := &frontDeskWide{ID: "1", TenantID: "t", SSN: fields.New("999-12-3456")}
	err := c.Seal(context.Background(), r)
	require.Error(t, err)
	assert.False(t, strings.Contains(err.Error(), "3456"))
	var le *fields.LeakError
	assert.True(t, errors.As(err, &le))
}
