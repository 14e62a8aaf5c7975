package fields_test

import (
	"context"
	"database/sql/driver"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/cases"

	"github.com/phicrypt/phicrypt/fields"
)

// searchPatient has the transforms' indexes: SSN last four and birth date
// (a compound index with a chain per source), last-name prefixes of 2 to 5
// characters, and a phonetic code of the last name.
type searchPatient struct {
	ID        string                      `phi:"id,table=patients"`
	TenantID  string                      `phi:"scope"`
	SSN       fields.String               `phi:"encrypt"`
	Last      fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
	Last4DOB  fields.BlindIndex           `phi:"index,of=SSN+BirthDate,normalize=digits+last4|date,bits=12"`
	LastP2    fields.BlindIndex           `phi:"index,of=Last,normalize=nfc+fold+prefix:2,bits=8"`
	LastP3    fields.BlindIndex           `phi:"index,of=Last,normalize=nfc+fold+prefix:3,bits=8"`
	LastP4    fields.BlindIndex           `phi:"index,of=Last,normalize=nfc+fold+prefix:4,bits=8"`
	LastP5    fields.BlindIndex           `phi:"index,of=Last,normalize=nfc+fold+prefix:5,bits=8"`
	LastSound fields.BlindIndex           `phi:"index,of=Last,normalize=nysiis,bits=8"`
}

func (p *searchPatient) columns() []any {
	return []any{&p.SSN, &p.Last, &p.BirthDate, &p.Last4DOB, &p.LastP2, &p.LastP3, &p.LastP4, &p.LastP5, &p.LastSound}
}

// searchConfig declares the domain of last names, about 2^17.3: the US
// Census 2010 counted 162,253 surnames held by 100 people or more. The
// planner caps what the five indexes over Last reveal together at it.
var searchConfig = fields.Config{SourceBits: map[string]float64{"patients.last": 17.3}}

var searchColumn = map[string]int{"Last4DOB": 3, "LastP2": 4, "LastP3": 5, "LastP4": 6, "LastP5": 7, "LastSound": 8}

// searchTable is the Synthea patients sealed, stored as driver values,
// scanned back and opened: what a database round trip gives.
type searchTable struct {
	stored map[string][]driver.Value
	opened map[string]*searchPatient
	plain  map[string]*Patient
}

func newSearchTable(t *testing.T, c *fields.Codec) *searchTable {
	t.Helper()
	ctx := context.Background()
	tb := &searchTable{stored: map[string][]driver.Value{}, opened: map[string]*searchPatient{}, plain: map[string]*Patient{}}
	for _, p := range loadCSV(t) {
		sp := &searchPatient{ID: p.ID, TenantID: "tenant:st-mary", SSN: fields.New(p.SSN.Get()), Last: fields.New(p.Last.Get()), BirthDate: fields.New(p.BirthDate.Get())}
		require.NoError(t, c.Seal(ctx, sp))
		var r []driver.Value
		for _, col := range sp.columns() {
			v, err := col.(driver.Valuer).Value()
			require.NoError(t, err)
			r = append(r, v)
		}
		back := &searchPatient{ID: p.ID, TenantID: sp.TenantID}
		for i, col := range back.columns() {
			require.NoError(t, col.(interface{ Scan(any) error }).Scan(r[i]))
		}
		require.NoError(t, c.Open(ctx, back))
		tb.stored[p.ID], tb.opened[p.ID], tb.plain[p.ID] = r, back, p
	}
	return tb
}

// candidates returns the ids whose stored index column holds one of terms.
func (tb *searchTable) candidates(t *testing.T, index string, terms []fields.BlindIndex) []string {
	t.Helper()
	var out []string
	for id, r := range tb.stored {
		var stored fields.BlindIndex
		require.NoError(t, stored.Scan(r[searchColumn[index]]))
		for _, term := range terms {
			if stored.Equal(term) {
				out = append(out, id)
				break
			}
		}
	}
	return out
}

// TestSyntheaLast4DOB searches every Synthea patient by the last four
// digits of the SSN and the birth date (written differently): each one is
// found, and the post-filter keeps exactly the patients who share both.
func TestSyntheaLast4DOB(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, searchConfig)
	tb := newSearchTable(t, c)
	falsePositives := 0
	for id, p := range tb.plain {
		ssn := p.SSN.Get()
		q := &searchPatient{TenantID: "tenant:st-mary", SSN: fields.New("xxx-xx-" + ssn[len(ssn)-4:]),
			BirthDate: fields.New(p.BirthDate.Get().Add(13 * time.Hour))} // another time, same day
		terms, err := c.IndexTerms(ctx, q, "Last4DOB")
		require.NoError(t, err)
		var got []string
		for _, cand := range tb.candidates(t, "Last4DOB", terms) {
			ok, err := c.Match(tb.opened[cand], q, "Last4DOB")
			require.NoError(t, err)
			if ok {
				got = append(got, cand)
			} else {
				falsePositives++
			}
		}
		var want []string
		for oid, o := range tb.plain {
			os := o.SSN.Get()
			if os[len(os)-4:] == ssn[len(ssn)-4:] && o.BirthDate.Get().Equal(p.BirthDate.Get()) {
				want = append(want, oid)
			}
		}
		assert.Contains(t, got, id)
		assert.ElementsMatch(t, want, got, "exactly the patients with these last four and this birth date")
	}
	t.Logf("%d searches, recall 100%%, %d false positives removed by Match", len(tb.plain), falsePositives)
	assert.Positive(t, falsePositives, "a 12-bit index has false positives for Match to remove")
}

// TestSyntheaPrefixSearch searches the prefixes of 2 to 5 letters, and
// the whole last name, of every Synthea patient: recall and precision are
// 100% after MatchPrefix, and each query uses the index it should.
func TestSyntheaPrefixSearch(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, searchConfig)
	tb := newSearchTable(t, c)
	fold := cases.Fold()
	queries := map[string]bool{}
	for _, p := range tb.plain {
		last := p.Last.Get()
		for k := 2; k <= 5; k++ {
			queries[string([]rune(last)[:k])] = true
		}
		queries[last] = true
	}
	filtered := 0
	for q := range queries {
		// Upper-case the query: the index folds case.
		tmpl := &searchPatient{TenantID: "tenant:st-mary", Last: fields.New(strings.ToUpper(q))}
		pt, err := c.PrefixSearch(ctx, tmpl, "Last")
		require.NoError(t, err, q)
		n := utf8.RuneCountInString(q)
		assert.Equal(t, fmt.Sprintf("LastP%d", min(n, 5)), pt.Index, q)
		assert.Equal(t, min(n, 5), pt.Length, q)
		var got []string
		for _, cand := range tb.candidates(t, pt.Index, pt.Terms) {
			ok, err := c.MatchPrefix(tb.opened[cand], tmpl, pt.Index)
			require.NoError(t, err)
			if ok {
				got = append(got, cand)
			} else {
				filtered++
			}
		}
		var want []string
		for id, p := range tb.plain {
			if strings.HasPrefix(fold.String(p.Last.Get()), fold.String(q)) {
				want = append(want, id)
			}
		}
		require.NotEmpty(t, want, q)
		assert.ElementsMatch(t, want, got, "query %q", q)
	}
	t.Logf("%d distinct queries, recall and precision 100%%, %d candidates removed by MatchPrefix", len(queries), filtered)
	assert.Greater(t, len(queries), 1000)
	assert.Positive(t, filtered, "the post-filter removed candidates")
}

func TestPrefixSearchChoice(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{SourceBits: map[string]float64{"g.name": 17.3}})
	type gaps struct {
		ID    string            `phi:"id,table=g"`
		Scope string            `phi:"scope"`
		Name  fields.String     `phi:"encrypt"`
		SSN   fields.String     `phi:"encrypt"`
		N2    fields.BlindIndex `phi:"index,of=Name,normalize=trim+fold+prefix:2,bits=8"`
		N4    fields.BlindIndex `phi:"index,of=Name,normalize=trim+fold+prefix:4,bits=8"`
		Whole fields.BlindIndex `phi:"index,of=Name,normalize=trim+fold,bits=8"`
	}
	for q, want := range map[string]string{"Sm": "N2", "Smi": "N2", "Smit": "N4", "Smithson": "N4", "  SMIT  ": "N4", "Zoë": "N2", "Zoë1": "N4"} {
		pt, err := c.PrefixSearch(ctx, &gaps{Scope: "s", Name: fields.New(q)}, "Name")
		require.NoError(t, err, q)
		assert.Equal(t, want, pt.Index, q)
		// The terms are those of the chosen index for the query.
		terms, err := c.IndexTerms(ctx, &gaps{Scope: "s", Name: fields.New(q)}, want)
		require.NoError(t, err)
		require.Len(t, pt.Terms, len(terms))
		assert.True(t, pt.Terms[0].Equal(terms[0]))
	}
	for _, q := range []string{"S", " s ", "", "é"} {
		_, err := c.PrefixSearch(ctx, &gaps{Scope: "s", Name: fields.New(q)}, "Name")
		assert.ErrorIs(t, err, fields.ErrPrefixTooShort, "%q", q)
	}
	_, err := c.PrefixSearch(ctx, &gaps{Scope: "s", SSN: fields.New("999")}, "SSN")
	assert.ErrorIs(t, err, fields.ErrNoPrefixIndex)
	_, err = c.MatchPrefix(&gaps{}, &gaps{}, "Whole")
	assert.ErrorIs(t, err, fields.ErrNoPrefixIndex)
	_, err = c.PrefixSearch(ctx, &gaps{Name: fields.New("Smith")}, "Name")
	assert.ErrorIs(t, err, fields.ErrMissingRecordID, "no scope")

	// MatchPrefix compares the whole query, not only the index's prefix.
	rec := &gaps{Scope: "s", Name: fields.New("Smithson")}
	for q, want := range map[string]bool{"smith": true, "SMITHSON": true, "Smithsonian": false, "Smyth": false, "Smi": true} {
		ok, err := c.MatchPrefix(rec, &gaps{Scope: "s", Name: fields.New(q)}, "N4")
		require.NoError(t, err)
		assert.Equal(t, want, ok, q)
	}
	ok, err := c.MatchPrefix(&gaps{Scope: "s"}, &gaps{Scope: "s", Name: fields.New("Smith")}, "N4")
	require.NoError(t, err)
	assert.False(t, ok, "a NULL value matches nothing")
}

type chained struct {
	ID      string                      `phi:"id,table=chained"`
	Scope   string                      `phi:"scope"`
	SSN     fields.String               `phi:"encrypt"`
	Born    fields.Encrypted[time.Time] `phi:"encrypt"`
	Name    fields.String               `phi:"encrypt"`
	SSNBorn fields.BlindIndex           `phi:"index,of=SSN+Born,normalize=digits+last4|date,bits=32"`
	BornSSN fields.BlindIndex           `phi:"index,of=Born+SSN,normalize=yearmonth|last4,bits=32"`
	Both    fields.BlindIndex           `phi:"index,of=SSN+Name,normalize=trim+fold,bits=32"`
	Year    fields.BlindIndex           `phi:"index,of=Born,normalize=year,bits=32"`
	Sound   fields.BlindIndex           `phi:"index,of=Name,normalize=nysiis,bits=32"`
}

// TestPerSourceChains checks that each source of a compound index gets its
// own chain, in the order of of=.
func TestPerSourceChains(t *testing.T) {
	ctx := context.Background()
	// 32-bit indexes keep this test free of collisions; no real table
	// could hold them all.
	c := newCodec(t, fields.Config{InsecureSkipIndexPlanner: true})
	day := time.Date(1993, 5, 10, 0, 0, 0, 0, time.UTC)
	seal := func(ssn string, born time.Time, name string) *chained {
		r := &chained{ID: "1", Scope: "s", SSN: fields.New(ssn), Born: fields.New(born), Name: fields.New(name)}
		require.NoError(t, c.Seal(ctx, r))
		return r
	}
	a := seal("999-12-3456", day, "Smith")
	b := seal("123-45-3456", day.Add(20*time.Hour), "SCHMIT")
	assert.True(t, a.SSNBorn.Equal(b.SSNBorn), "same last four, same day")
	assert.True(t, a.BornSSN.Equal(b.BornSSN), "same month, same last four")
	assert.True(t, a.Sound.Equal(b.Sound), "Smith and Schmit sound alike")
	assert.False(t, a.Both.Equal(b.Both))
	cc := seal("999-12-3457", day, "Smith")
	assert.False(t, a.SSNBorn.Equal(cc.SSNBorn), "another last four")
	d := seal("999-12-3456", day.AddDate(0, 0, 1), "Smith")
	assert.False(t, a.SSNBorn.Equal(d.SSNBorn), "another day")
	assert.True(t, a.BornSSN.Equal(d.BornSSN), "same month")
	assert.True(t, a.Year.Equal(seal("1", day.AddDate(0, 6, 0), "x").Year), "same year")
	assert.False(t, a.Year.Equal(seal("1", day.AddDate(1, 0, 0), "x").Year), "another year")

	// Inputs that normalize to nothing get a NULL index and can't be searched.
	e := seal("N/A", day, "2002")
	assert.True(t, e.SSNBorn.IsNull(), "last4 of N/A")
	assert.True(t, e.Sound.IsNull(), "no letters, no phonetic code")
	assert.False(t, e.Year.IsNull())
	_, err := c.IndexTerms(ctx, &chained{Scope: "s", SSN: fields.New("12"), Born: fields.New(day)}, "SSNBorn")
	assert.Error(t, err, "fewer than four digits")
	_, err = c.IndexTerms(ctx, &chained{Scope: "s", Name: fields.New("李")}, "Sound")
	assert.Error(t, err)

	// A search by last four and date, written differently, finds a.
	terms, err := c.IndexTerms(ctx, &chained{Scope: "s", SSN: fields.New("xxx-xx-3456"), Born: fields.New(day.Add(9 * time.Hour))}, "SSNBorn")
	require.NoError(t, err)
	assert.True(t, terms[0].Equal(a.SSNBorn))
}

// TestPerSourceChainsAreNotSwapped: the first chain goes to the first
// source of of=, so date on an SSN normalizes it to nothing.
func TestPerSourceChainsAreNotSwapped(t *testing.T) {
	type swapped struct {
		ID    string                      `phi:"id,table=sw"`
		Scope string                      `phi:"scope"`
		SSN   fields.String               `phi:"encrypt"`
		Born  fields.Encrypted[time.Time] `phi:"encrypt"`
		Idx   fields.BlindIndex           `phi:"index,of=SSN+Born,normalize=date|digits+last4,bits=32"`
	}
	c := newCodec(t, fields.Config{InsecureSkipIndexPlanner: true})
	r := &swapped{ID: "1", Scope: "s", SSN: fields.New("999-12-3456"), Born: fields.New(time.Date(1993, 5, 10, 0, 0, 0, 0, time.UTC))}
	require.NoError(t, c.Seal(context.Background(), r))
	assert.True(t, r.Idx.IsNull())
}

func TestTransformTagErrors(t *testing.T) {
	c := newCodec(t, fields.Config{})
	type tooMany struct {
		ID    string                      `phi:"id,table=t"`
		Scope string                      `phi:"scope"`
		SSN   fields.String               `phi:"encrypt"`
		Born  fields.Encrypted[time.Time] `phi:"encrypt"`
		Idx   fields.BlindIndex           `phi:"index,of=SSN+Born,normalize=digits|date|trim,bits=16"`
	}
	type dateOnInt struct {
		ID    string                `phi:"id,table=t"`
		Scope string                `phi:"scope"`
		Age   fields.Encrypted[int] `phi:"encrypt"`
		Idx   fields.BlindIndex     `phi:"index,of=Age,normalize=year,bits=16"`
	}
	type dateOnIntPerSource struct {
		ID    string                `phi:"id,table=t"`
		Scope string                `phi:"scope"`
		SSN   fields.String         `phi:"encrypt"`
		Age   fields.Encrypted[int] `phi:"encrypt"`
		Idx   fields.BlindIndex     `phi:"index,of=SSN+Age,normalize=-|date,bits=16"` // date on Age
		Idx2  fields.BlindIndex     `phi:"index,of=SSN+Age,normalize=date|-,bits=16"` // date on SSN: a date string, fine
	}
	type prefixNotLast struct {
		ID    string            `phi:"id,table=t"`
		Scope string            `phi:"scope"`
		Name  fields.String     `phi:"encrypt"`
		Idx   fields.BlindIndex `phi:"index,of=Name,normalize=prefix:3+fold,bits=16"`
	}
	type prefixZero struct {
		ID    string            `phi:"id,table=t"`
		Scope string            `phi:"scope"`
		Name  fields.String     `phi:"encrypt"`
		Idx   fields.BlindIndex `phi:"index,of=Name,normalize=fold+prefix:0,bits=16"`
	}
	type emptyChain struct {
		ID    string                      `phi:"id,table=t"`
		Scope string                      `phi:"scope"`
		SSN   fields.String               `phi:"encrypt"`
		Born  fields.Encrypted[time.Time] `phi:"encrypt"`
		Idx   fields.BlindIndex           `phi:"index,of=SSN+Born,normalize=digits|,bits=16"`
	}
	for name, v := range map[string]any{
		"3 normalizer chains for 2 sources": &tooMany{},
		"not a date":                        &dateOnInt{},
		"not a date (second source)":        &dateOnIntPerSource{},
		"must be the last":                  &prefixNotLast{},
		"want prefix:N":                     &prefixZero{},
		"empty normalizer chain":            &emptyChain{},
	} {
		err := c.Plan(v)
		var te *fields.TagError
		require.ErrorAs(t, err, &te, name)
		assert.Equal(t, "Idx", te.Field, name)
		want := name
		if strings.HasPrefix(name, "not a date") {
			want = "applies to dates"
		}
		assert.Contains(t, te.Reason, want, name)
	}
	// Today's tags stay valid: one chain for every source.
	err := c.Plan(&Patient{})
	assert.NoError(t, err)
	_, err = fields.Describe(&chained{})
	assert.NoError(t, err)
	assert.ErrorIs(t, c.Plan(&chained{}), fields.ErrIndexLeak, "valid tags, but their 32-bit indexes leak too much together")
	// IndexSpec takes the new normalizers too (one chain).
	assert.NoError(t, fields.IndexSpec{Table: "t", Column: "c", Bits: 8, Normalize: "fold+prefix:3"}.Validate())
	assert.ErrorIs(t, fields.IndexSpec{Table: "t", Column: "c", Bits: 8, Normalize: "digits|date"}.Validate(), fields.ErrInvalidIndexSpec)
	assert.ErrorIs(t, fields.IndexSpec{Table: "t", Column: "c", Bits: 8, Normalize: "prefix:x"}.Validate(), fields.ErrInvalidIndexSpec)
}

// Prefix indexes of several lengths over a last name: a search uses the
// longest one its query covers, then MatchPrefix keeps the real matches.
func ExampleCodec_PrefixSearch() {
	type Patient struct {
		ID       string            `phi:"id,table=patients"`
		TenantID string            `phi:"scope"`
		LastName fields.String     `phi:"encrypt"`
		LastP2   fields.BlindIndex `phi:"index,of=LastName,normalize=trim+fold+prefix:2,bits=6"`
		LastP3   fields.BlindIndex `phi:"index,of=LastName,normalize=trim+fold+prefix:3,bits=6"`
		LastP5   fields.BlindIndex `phi:"index,of=LastName,normalize=trim+fold+prefix:5,bits=6"`
	}
	ctx := context.Background()
	codec := exampleCodec()
	rows := []*Patient{
		{ID: "1", TenantID: "tenant:st-mary", LastName: fields.New("Smith")},
		{ID: "2", TenantID: "tenant:st-mary", LastName: fields.New("Smithson")},
		{ID: "3", TenantID: "tenant:st-mary", LastName: fields.New("Smyth")},
	}
	if err := codec.Seal(ctx, rows); err != nil {
		fmt.Println(err)
		return
	}
	for _, q := range []string{"SMI", "smithso", "S"} {
		query := &Patient{TenantID: "tenant:st-mary", LastName: fields.New(q)}
		pt, err := codec.PrefixSearch(ctx, query, "LastName")
		if err != nil {
			fmt.Printf("%s: %v\n", q, err)
			continue
		}
		// SELECT ... WHERE tenant_id = $1 AND last_p3 IN (pt.Terms...), then:
		var found []string
		for _, r := range rows { // the candidate rows, opened
			if ok, _ := codec.MatchPrefix(r, query, pt.Index); ok {
				found = append(found, r.ID)
			}
		}
		fmt.Printf("%s: index %s, rows %v\n", q, pt.Index, found)
	}
	// Output:
	// SMI: index LastP3, rows [1 2]
	// smithso: index LastP5, rows [2]
	// S: fields: prefix query shorter than the shortest prefix index (2 characters)
}
