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

// table is an in-memory stand-in for a database table of sealed patients.
type table struct {
	rows map[string]row // by id
	meta map[string]*Patient
}

func sealTable(t *testing.T, c *fields.Codec, patients []*Patient) *table {
	t.Helper()
	require.NoError(t, c.Seal(context.Background(), patients))
	tb := &table{rows: map[string]row{}, meta: map[string]*Patient{}}
	for _, p := range patients {
		tb.rows[p.ID] = store(t, p)
		tb.meta[p.ID] = p
	}
	return tb
}

// search runs "SELECT * WHERE tenant = ? AND <index column> IN (terms)",
// then opens the candidates and keeps those that Match the template.
func (tb *table) search(t *testing.T, c *fields.Codec, template *Patient, index string) (candidates, matches []string) {
	t.Helper()
	ctx := context.Background()
	terms, err := c.IndexTerms(ctx, template, index)
	require.NoError(t, err)
	col := map[string]int{"SSNIndex": 11, "NameDOB": 12}[index]
	for id, r := range tb.rows {
		if tb.meta[id].TenantID != template.TenantID {
			continue
		}
		var stored fields.BlindIndex
		require.NoError(t, stored.Scan(r[col]))
		for _, term := range terms {
			if stored.Equal(term) {
				candidates = append(candidates, id)
				p := load(t, id, template.TenantID, r)
				require.NoError(t, c.Open(ctx, p))
				ok, err := c.Match(p, template, index)
				require.NoError(t, err)
				if ok {
					matches = append(matches, id)
				}
			}
		}
	}
	return candidates, matches
}

func TestBlindIndexSearch(t *testing.T) {
	c := newCodec(t, fields.Config{})
	patients := loadCSV(t)
	tb := sealTable(t, c, patients)
	for _, want := range patients[:40] {
		// By SSN, written another way: the digits normalizer ignores dashes.
		ssn := want.SSN.Get()
		template := &Patient{TenantID: want.TenantID, SSN: fields.New(" " + ssn[:3] + ssn[4:6] + "-" + ssn[7:] + " ")}
		_, matches := tb.search(t, c, template, "SSNIndex")
		assert.Equal(t, []string{want.ID}, matches, "SSN %s", want.ID)

		// By last name and birth date, in another case and with spaces.
		template = &Patient{TenantID: want.TenantID, Last: fields.New("  " + upper(want.Last.Get()) + " "), BirthDate: fields.New(want.BirthDate.Get())}
		_, matches = tb.search(t, c, template, "NameDOB")
		assert.Contains(t, matches, want.ID)
		for _, id := range matches {
			got := tb.meta[id]
			assert.Equal(t, want.Last.Get(), got.Last.Get())
			assert.True(t, want.BirthDate.Get().Equal(got.BirthDate.Get()))
		}
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// tiny has a 3-bit index: most searches return many candidates, and the
// post-filter must still give exactly the right rows.
type tiny struct {
	ID       string            `phi:"id,table=tiny"`
	TenantID string            `phi:"scope"`
	SSN      fields.String     `phi:"encrypt"`
	SSNIndex fields.BlindIndex `phi:"index,of=SSN,normalize=digits,bits=3,text"`
}

func TestBlindIndexTinyBits(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	var all []*tiny
	for _, p := range loadCSV(t) {
		all = append(all, &tiny{ID: p.ID, TenantID: "tenant:x", SSN: fields.New(p.SSN.Get())})
	}
	require.NoError(t, c.Seal(ctx, all))
	distinct := map[string]bool{}
	for _, p := range all {
		v, err := p.SSNIndex.Value()
		require.NoError(t, err)
		_, isText := v.(string)
		assert.True(t, isText, "the text option stores base64url")
		distinct[v.(string)] = true
	}
	assert.LessOrEqual(t, len(distinct), 8, "3 bits: at most 8 index values")
	for _, want := range all[:25] {
		terms, err := c.IndexTerms(ctx, &tiny{TenantID: "tenant:x", SSN: fields.New(want.SSN.Get())}, "SSNIndex")
		require.NoError(t, err)
		var candidates, matches int
		for _, p := range all {
			if p.SSNIndex.Equal(terms[0]) {
				candidates++
				ok, err := c.Match(p, &tiny{TenantID: "tenant:x", SSN: fields.New(want.SSN.Get())}, "SSNIndex")
				require.NoError(t, err)
				if ok {
					matches++
					assert.Equal(t, want.SSN.Get(), p.SSN.Get())
				}
			}
		}
		assert.Greater(t, candidates, 50, "a 3-bit index matches about an eighth of the table")
		assert.Equal(t, 1, matches)
	}
}

func TestBlindIndexRotation(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t)
	c := newCodec(t, fields.Config{Keyring: kr})
	patients := loadCSV(t)[:30]
	for _, p := range patients {
		p.TenantID = "tenant:r"
	}
	old := sealTable(t, c, patients[:15])
	id, err := keys.IndexKeyID("tenant:r", "patients", "ssn_index")
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, id)
	require.NoError(t, err)
	fresh := sealTable(t, c, patients[15:])
	for _, p := range patients[15:] {
		assert.Equal(t, uint32(2), p.SSNIndex.Version())
	}
	// Rows indexed under either version are found while reindexing runs.
	for _, want := range patients {
		tb := old
		if _, ok := fresh.rows[want.ID]; ok {
			tb = fresh
		}
		_, matches := tb.search(t, c, &Patient{TenantID: "tenant:r", SSN: fields.New(want.SSN.Get())}, "SSNIndex")
		assert.Equal(t, []string{want.ID}, matches)
	}
	// Once the old version is retired, only the new one is searched.
	require.NoError(t, kr.SetMinDecryptVersion(ctx, id, 2))
	terms, err := c.IndexTerms(ctx, &Patient{TenantID: "tenant:r", SSN: fields.New("999-00-0000")}, "SSNIndex")
	require.NoError(t, err)
	require.Len(t, terms, 1)
	assert.Equal(t, uint32(2), terms[0].Version())
}

// perPatient has per-patient data keys but one SSN index per tenant, so
// that a tenant can search.
type perPatient struct {
	ID       string            `phi:"id,table=pp"`
	Patient  string            `phi:"scope"`
	TenantID string            //
	SSN      fields.String     `phi:"encrypt"`
	SSNIndex fields.BlindIndex `phi:"index,of=SSN,normalize=digits,bits=8,scope=TenantID"`
}

func TestIndexScope(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	a := perPatient{ID: "1", Patient: "patient:1", TenantID: "tenant:t", SSN: fields.New("999-11-1111")}
	b := perPatient{ID: "2", Patient: "patient:2", TenantID: "tenant:t", SSN: fields.New("999-11-1111")}
	require.NoError(t, c.Seal(ctx, []*perPatient{&a, &b}))
	assert.True(t, a.SSNIndex.Equal(b.SSNIndex), "one index key per tenant, whatever the data key")
	sa, _ := a.SSN.Value()
	sb, _ := b.SSN.Value()
	assert.NotEqual(t, sa, sb)
	terms, err := c.IndexTerms(ctx, &perPatient{TenantID: "tenant:t", Patient: "any", SSN: fields.New("999111111")}, "SSNIndex")
	require.NoError(t, err)
	assert.True(t, terms[0].Equal(a.SSNIndex))
}

// orgScoped takes its scope from a method, so no column holds it and a
// query by index alone returns every organisation's candidates.
type orgScoped struct {
	ID       string            `phi:"id,table=org_scoped"`
	Org      string            //
	SSN      fields.String     `phi:"encrypt"`
	SSNIndex fields.BlindIndex `phi:"index,of=SSN,normalize=digits,bits=8"`
}

func (r *orgScoped) PHIScope() string { return "tenant:" + r.Org }

// TestMatchChecksScope checks that Match keeps only the records of the
// scope that keys the index, whatever their plaintext: the record's
// scope, from a field or a method, or the index's own scope field.
func TestMatchChecksScope(t *testing.T) {
	c := newCodec(t, fields.Config{})
	const ssn = "999-12-3456"
	match := func(rec, template any) bool {
		t.Helper()
		ok, err := c.Match(rec, template, "SSNIndex")
		require.NoError(t, err)
		return ok
	}
	assert.True(t, match(&tiny{TenantID: "tenant:a", SSN: fields.New(ssn)}, &tiny{TenantID: "tenant:a", SSN: fields.New(ssn)}))
	assert.False(t, match(&tiny{TenantID: "tenant:b", SSN: fields.New(ssn)}, &tiny{TenantID: "tenant:a", SSN: fields.New(ssn)}))
	assert.True(t, match(&orgScoped{Org: "a", SSN: fields.New(ssn)}, &orgScoped{Org: "a", SSN: fields.New(ssn)}))
	assert.False(t, match(&orgScoped{Org: "b", SSN: fields.New(ssn)}, &orgScoped{Org: "a", SSN: fields.New(ssn)}))
	// A tenant-wide index over per-patient keys: any patient of the
	// tenant, no patient of another.
	assert.True(t, match(&perPatient{Patient: "patient:1", TenantID: "tenant:a", SSN: fields.New(ssn)},
		&perPatient{Patient: "patient:2", TenantID: "tenant:a", SSN: fields.New(ssn)}))
	assert.False(t, match(&perPatient{Patient: "patient:1", TenantID: "tenant:b", SSN: fields.New(ssn)},
		&perPatient{Patient: "patient:1", TenantID: "tenant:a", SSN: fields.New(ssn)}))
}

func TestNormalizers(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{InsecureSkipIndexPlanner: true}) // 32-bit indexes, free of collisions
	type n struct {
		ID    string            `phi:"id,table=n"`
		Scope string            `phi:"scope"`
		Name  fields.String     `phi:"encrypt"`
		Idx   fields.BlindIndex `phi:"index,of=Name,normalize=nfc+fold+collapse+trim,bits=32"`
	}
	index := func(s string) fields.BlindIndex {
		v, err := c.IndexValue(ctx, &n{Scope: "s", Name: fields.New(s)}, "Idx")
		require.NoError(t, err)
		return v
	}
	assert.True(t, index("Zoë  Ñúñez").Equal(index(" ZOË ÑÚÑEZ ")), "case and spacing")
	assert.True(t, index("Zoë").Equal(index("Zoe\u0308")), "composed and decomposed accents")
	assert.True(t, index("Straße").Equal(index("STRASSE")), "full case folding")
	assert.False(t, index("Zoë").Equal(index("Zoe")))

	type dob struct {
		ID    string                      `phi:"id,table=d"`
		Scope string                      `phi:"scope"`
		Born  fields.Encrypted[time.Time] `phi:"encrypt"`
		Idx   fields.BlindIndex           `phi:"index,of=Born,bits=32"`
	}
	d1, err := c.IndexValue(ctx, &dob{Scope: "s", Born: fields.New(time.Date(1972, 3, 14, 0, 0, 0, 0, time.UTC))}, "Idx")
	require.NoError(t, err)
	est := time.FixedZone("EST", -5*3600)
	d2, err := c.IndexValue(ctx, &dob{Scope: "s", Born: fields.New(time.Date(1972, 3, 13, 19, 0, 0, 0, est))}, "Idx")
	require.NoError(t, err)
	assert.True(t, d1.Equal(d2), "times index as the same instant in UTC")
}

func TestIndexSpecMatchesStructIndex(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	p := &Patient{ID: "1", TenantID: "tenant:s", SSN: fields.New("999-12-3456"), Last: fields.New("Gottlieb798"),
		BirthDate: fields.New(time.Date(1993, 5, 10, 0, 0, 0, 0, time.UTC))}
	require.NoError(t, c.Seal(ctx, p))
	v, err := c.IndexFor(ctx, "tenant:s", fields.IndexSpec{Table: "patients", Column: "ssn_index", Bits: 16, Normalize: "digits"}, "999 12 3456")
	require.NoError(t, err)
	assert.True(t, v.Equal(p.SSNIndex), "an IndexSpec computes what the struct tag does")
	v, err = c.IndexFor(ctx, "tenant:s", fields.IndexSpec{Table: "patients", Column: "name_dob", Bits: 16, Normalize: "trim+fold+nfc"},
		"GOTTLIEB798 ", "1993-05-10T00:00:00Z")
	require.NoError(t, err)
	assert.True(t, v.Equal(p.NameDOB), "compound too")
	terms, err := c.TermsFor(ctx, "tenant:s", fields.IndexSpec{Table: "patients", Column: "ssn_index", Bits: 16, Normalize: "digits"}, "999123456")
	require.NoError(t, err)
	assert.True(t, terms[0].Equal(p.SSNIndex))
	for _, bad := range []fields.IndexSpec{{Column: "c", Bits: 8}, {Table: "t", Column: "c"}, {Table: "t", Column: "c", Bits: 8, Normalize: "nope"}} {
		_, err := c.IndexFor(ctx, "tenant:s", bad, "x")
		assert.ErrorIs(t, err, fields.ErrInvalidIndexSpec)
	}
}

func TestIndexSpecValidate(t *testing.T) {
	good := fields.IndexSpec{Table: "Patient", Column: "ssn_index", Bits: 16, Normalize: "trim+digits"}
	assert.NoError(t, good.Validate())
	assert.NoError(t, fields.IndexSpec{Table: "t", Column: "c", Bits: fields.MaxIndexBits}.Validate(), "no normalizer is fine")
	for name, bad := range map[string]fields.IndexSpec{
		"no table":           {Column: "c", Bits: 8},
		"no column":          {Table: "t", Bits: 8},
		"zero bits":          {Table: "t", Column: "c"},
		"too many bits":      {Table: "t", Column: "c", Bits: fields.MaxIndexBits + 1},
		"unknown normalizer": {Table: "t", Column: "c", Bits: 8, Normalize: "trim+nope"},
		"empty normalizer":   {Table: "t", Column: "c", Bits: 8, Normalize: "trim+"},
	} {
		assert.ErrorIs(t, bad.Validate(), fields.ErrInvalidIndexSpec, name)
	}
}

// TestIndexTermsPerVersion: IndexTerms gives one value per live index key
// version, each equal to what Seal stored under that version, in values
// that do not share bytes; a warm search with one version allocates once.
func TestIndexTermsPerVersion(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t)
	c := newCodec(t, fields.Config{Keyring: kr})
	template := &tiny{TenantID: "tenant:v", SSN: fields.New("999-12-3456")}
	terms, err := c.IndexTerms(ctx, template, "SSNIndex")
	require.NoError(t, err)
	require.Len(t, terms, 1)
	before, err := c.IndexValue(ctx, template, "SSNIndex")
	require.NoError(t, err)
	assert.True(t, terms[0].Equal(before))
	if !raceEnabled {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := c.IndexTerms(ctx, template, "SSNIndex"); err != nil {
				t.Fatal(err)
			}
		})
		assert.LessOrEqual(t, allocs, 1.0, "one allocation for one term")
	}

	id, err := keys.IndexKeyID("tenant:v", "tiny", "ssn_index")
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, id)
	require.NoError(t, err)
	after, err := c.IndexValue(ctx, template, "SSNIndex")
	require.NoError(t, err)
	terms, err = c.IndexTerms(ctx, template, "SSNIndex")
	require.NoError(t, err)
	require.Len(t, terms, 2)
	assert.Equal(t, []uint32{2, 1}, []uint32{terms[0].Version(), terms[1].Version()})
	assert.True(t, terms[0].Equal(after))
	assert.True(t, terms[1].Equal(before))
	v0, _ := terms[0].Value()
	v1, _ := terms[1].Value()
	want, _ := after.Value()
	assert.Equal(t, want, v0, "the active value, text form")
	assert.NotEqual(t, v0, v1)
}

// TestSealIsAllOrNothingWithIndexes: an index that fails (here its scope
// field is empty) fails Seal before anything is stored: the fields keep
// their plaintext, unsealed, and the indexes their values.
func TestSealIsAllOrNothingWithIndexes(t *testing.T) {
	type rec struct {
		ID       string            `phi:"id,table=all_or_nothing_idx"`
		Patient  string            `phi:"scope"`
		TenantID string            // the index's scope
		SSN      fields.String     `phi:"encrypt"`
		Name     fields.String     `phi:"encrypt"`
		NameIdx  fields.BlindIndex `phi:"index,of=Name,bits=8"`
		SSNIdx   fields.BlindIndex `phi:"index,of=SSN,normalize=digits,bits=8,scope=TenantID"`
	}
	ctx := t.Context()
	c := newCodec(t, fields.Config{InsecureSkipIndexPlanner: true})
	r := &rec{ID: "1", Patient: "patient:1", TenantID: "tenant:a", SSN: fields.New("999-11-1111"), Name: fields.New("Ann")}
	require.NoError(t, c.Seal(ctx, r))
	nameIdx := r.NameIdx

	r.TenantID = "" // forgotten
	r.SSN.Set("999-22-2222")
	r.Name.Set("Bob")
	err := c.Seal(ctx, r)
	require.ErrorIs(t, err, fields.ErrMissingRecordID)
	assert.False(t, r.SSN.Sealed(), "Seal failed, yet SSN took a new ciphertext")
	assert.False(t, r.Name.Sealed(), "Seal failed, yet Name took a new ciphertext")
	assert.True(t, r.NameIdx.Equal(nameIdx), "Seal failed, yet NameIdx changed")
	assert.Equal(t, "Bob", r.Name.Get())
}

// TestCompoundIndexNeverStale: a compound index over a changed source and
// a source read but not opened cannot be recomputed: Seal fails with
// ErrNotOpened instead of keeping the index of the old value. With no
// source changed, the stored index is kept; with a NULL source it is
// NULL, whatever the order of the sources.
func TestCompoundIndexNeverStale(t *testing.T) {
	type rec struct {
		ID     string            `phi:"id,table=stale_compound"`
		Tenant string            `phi:"scope"`
		SSN    fields.String     `phi:"encrypt"`
		Last   fields.String     `phi:"encrypt"`
		Both   fields.BlindIndex `phi:"index,of=SSN+Last,bits=32"`
		Rev    fields.BlindIndex `phi:"index,of=Last+SSN,bits=32"`
	}
	ctx := t.Context()
	c := newCodec(t, fields.Config{InsecureSkipIndexPlanner: true})
	r := &rec{ID: "1", Tenant: "t:a", SSN: fields.New("111"), Last: fields.New("Smith")}
	require.NoError(t, c.Seal(ctx, r))
	read := func() *rec {
		got := &rec{ID: "1", Tenant: "t:a"}
		copyCT(t, r.SSN, &got.SSN)
		copyCT(t, r.Last, &got.Last)
		copyCT(t, r.Both, &got.Both)
		copyCT(t, r.Rev, &got.Rev)
		return got
	}

	got := read()
	got.SSN = fields.New("222")
	err := c.Seal(ctx, got)
	require.ErrorIs(t, err, fields.ErrNotOpened)
	assert.False(t, got.SSN.Sealed(), "nothing is stored")
	assert.True(t, got.Both.Equal(r.Both))

	got = read()
	require.NoError(t, c.Seal(ctx, got), "nothing changed: the stored index stays")
	assert.True(t, got.Both.Equal(r.Both))

	got = read()
	got.SSN.Clear()
	require.NoError(t, c.Seal(ctx, got))
	assert.True(t, got.Both.IsNull())
	assert.True(t, got.Rev.IsNull(), "a NULL source makes the index NULL, first or not")
}
