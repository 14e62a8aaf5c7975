package fields_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/cases"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/phicrypt/phicrypt/fields"
)

// queryConfig is the codec configuration of the query and range tests:
// their record types carry more and wider indexes than the planner allows
// together on a real table, to test every kind of condition at once. The
// planner itself is tested in planner_test.go.
var queryConfig = fields.Config{InsecureSkipIndexPlanner: true}

func TestSearchWhere(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, queryConfig)
	r, _ := fields.ParseDateRange("1980-03..1985-06")
	q := fields.NewQuery(&rangePatient{TenantID: "tenant:a", Last: fields.New("Smi")}).Prefix("Last").DateRange("BirthDate", r)
	s, err := c.Search(ctx, q)
	require.NoError(t, err)
	assert.Equal(t, "patients", s.Table)
	assert.Equal(t, 1+20, s.Terms)
	require.Len(t, s.Conds, 2)
	assert.Equal(t, "prefix", s.Conds[0].Kind)
	assert.Equal(t, "last_p3", s.Conds[0].Columns[0].Column)

	where, args, err := s.Where(fields.Postgres)
	require.NoError(t, err)
	want := `"tenant_id" = $1 AND "last_p3" IN ($2) AND ("born_y" IN ($3,$4,$5,$6) OR "born_ym" IN ($7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22))`
	assert.Equal(t, want, where)
	require.Len(t, args, 22)
	assert.Equal(t, "tenant:a", args[0])
	for _, a := range args[1:] {
		assert.IsType(t, []byte(nil), a, "driver values")
	}

	where, args2, err := s.Where(fields.SQLite)
	require.NoError(t, err)
	assert.Equal(t, regexp.MustCompile(`\$\d+`).ReplaceAllString(want, "?"), where)
	assert.Equal(t, args, args2)

	where, _, err = s.Where(fields.SQLStyle{Dollar: true, First: 5, Backquote: true})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(where, "`tenant_id` = $5 AND `last_p3` IN ($6)"), where)

	// The scope column can be renamed or left out.
	s, err = c.Search(ctx, fields.NewQuery(&rangePatient{TenantID: "tenant:a", Last: fields.New("Smith")}).SoundsLike("LastSound").ScopeColumn("org"))
	require.NoError(t, err)
	where, args, err = s.Where(fields.SQLite)
	require.NoError(t, err)
	assert.Equal(t, `"org" = ? AND "last_sound" IN (?)`, where)
	assert.Len(t, args, 2)
	s, err = c.Search(ctx, fields.NewQuery(&rangePatient{TenantID: "tenant:a", Last: fields.New("Smith")}).Equal("LastSound").ScopeColumn(""))
	require.NoError(t, err)
	where, _, err = s.Where(fields.SQLite)
	require.NoError(t, err)
	assert.Equal(t, `"last_sound" IN (?)`, where)

	// Errors.
	_, err = c.Search(ctx, fields.NewQuery(&rangePatient{Last: fields.New("Smith")}).Equal("LastSound"))
	assert.ErrorIs(t, err, fields.ErrMissingRecordID)
	_, err = c.Search(ctx, fields.NewQuery(&rangePatient{TenantID: "a"}))
	assert.ErrorIs(t, err, fields.ErrNoIndex)
	_, err = c.Search(ctx, fields.NewQuery(&rangePatient{TenantID: "a", Last: fields.New("S")}).Prefix("Last"))
	assert.ErrorIs(t, err, fields.ErrPrefixTooShort)
	_, err = c.Search(ctx, fields.NewQuery(rangePatient{}).Equal("LastSound"))
	assert.ErrorIs(t, err, fields.ErrUnsupported)
	_, err = c.Search(ctx, fields.NewQuery(&rangePatient{TenantID: "a", Last: fields.New("Smith")}).Equal("Nope"))
	assert.Error(t, err)
}

// hostile has column names that would inject SQL if written as they are.
type hostile struct {
	ID    string            `phi:"id,table=h"`
	Scope string            `phi:"scope"`
	Name  fields.String     `phi:"encrypt"`
	Inj   fields.BlindIndex `phi:"index,of=Name,column=x) OR (1=1,bits=8"`
	Quote fields.BlindIndex `phi:"index,of=Name,column=a\"b,bits=8"`
	Fine  fields.BlindIndex `phi:"index,of=Name,column=name_idx,bits=8"`
}

// TestSearchRefusesUnsafeColumns checks that names from tags that are not
// plain identifiers never reach SQL.
func TestSearchRefusesUnsafeColumns(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, queryConfig)
	tmpl := &hostile{Scope: "s", Name: fields.New("Ann")}
	for _, index := range []string{"Inj", "Quote"} {
		_, err := c.Search(ctx, fields.NewQuery(tmpl).Equal(index))
		assert.ErrorIs(t, err, fields.ErrUnsafeIdentifier, index)
	}
	for _, col := range []string{"tenant; DROP TABLE h", `t"`, "1abc", "", strings.Repeat("a", 64), "naïve"} {
		_, err := c.Search(ctx, fields.NewQuery(tmpl).Equal("Fine").ScopeColumn(col))
		if col == "" {
			assert.NoError(t, err)
			continue
		}
		assert.ErrorIs(t, err, fields.ErrUnsafeIdentifier, "%q", col)
	}
	s, err := c.Search(ctx, fields.NewQuery(tmpl).Equal("Fine").ScopeColumn("public.scope_1"))
	require.NoError(t, err)
	where, _, err := s.Where(fields.MySQL)
	require.NoError(t, err)
	assert.Equal(t, "`public.scope_1` = ? AND `name_idx` IN (?)", where)
	// A Search changed after it was computed is checked again.
	s.Conds[0].Columns[0].Column = "x) OR (1=1"
	_, _, err = s.Where(fields.Postgres)
	assert.ErrorIs(t, err, fields.ErrUnsafeIdentifier)
}

func TestEqualSet(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, queryConfig)
	type findable struct {
		ID      string                      `phi:"id,table=f"`
		Scope   string                      `phi:"scope"`
		SSN     fields.String               `phi:"encrypt"`
		Last    fields.String               `phi:"encrypt"`
		Born    fields.Encrypted[time.Time] `phi:"encrypt"`
		Note    fields.String               `phi:"encrypt"`
		SSNIdx  fields.BlindIndex           `phi:"index,of=SSN,normalize=digits,bits=16"`
		NameDOB fields.BlindIndex           `phi:"index,of=Last+Born,normalize=trim+fold|date,bits=16"`
		LastP3  fields.BlindIndex           `phi:"index,of=Last,normalize=fold+prefix:3,bits=8"`
		Sound   fields.BlindIndex           `phi:"index,of=Last,normalize=nysiis,bits=8"`
	}
	indexes := func(s *fields.Search) []string {
		var out []string
		for _, sc := range s.Conds {
			out = append(out, sc.Columns[0].Index)
		}
		return out
	}
	s, err := c.Search(ctx, fields.NewQuery(&findable{Scope: "s", SSN: fields.New("999-12-3456")}).EqualSet())
	require.NoError(t, err)
	assert.Equal(t, []string{"SSNIdx"}, indexes(s))
	s, err = c.Search(ctx, fields.NewQuery(&findable{Scope: "s", Last: fields.New("Smith"), Born: fields.New(day("1980-03-01"))}).EqualSet())
	require.NoError(t, err)
	assert.Equal(t, []string{"NameDOB", "Sound"}, indexes(s), "every index whose sources are set, but not the prefix index")
	s, err = c.Search(ctx, fields.NewQuery(&findable{Scope: "s", Last: fields.New("Smith")}).EqualSet())
	require.NoError(t, err)
	assert.Equal(t, []string{"Sound"}, indexes(s))
	_, err = c.Search(ctx, fields.NewQuery(&findable{Scope: "s", Born: fields.New(day("1980-03-01"))}).EqualSet())
	assert.ErrorIs(t, err, fields.ErrNoIndex, "Born alone has no index")
	_, err = c.Search(ctx, fields.NewQuery(&findable{Scope: "s", SSN: fields.New("1"), Note: fields.New("x")}).EqualSet())
	assert.ErrorIs(t, err, fields.ErrNoIndex, "Note has no index")
	_, err = c.Search(ctx, fields.NewQuery(&findable{Scope: "s"}).EqualSet())
	assert.ErrorIs(t, err, fields.ErrNoIndex)

	// The post-filter confirms every index, and the scope.
	rec := &findable{ID: "1", Scope: "s", Last: fields.New("SMITH"), Born: fields.New(day("1980-03-01"))}
	s, err = c.Search(ctx, fields.NewQuery(&findable{Scope: "s", Last: fields.New("smith "), Born: fields.New(day("1980-03-01"))}).EqualSet())
	require.NoError(t, err)
	ok, err := s.Match(rec)
	require.NoError(t, err)
	assert.True(t, ok)
	rec.Scope = "other"
	ok, err = s.Match(rec)
	require.NoError(t, err)
	assert.False(t, ok, "another scope")
	rec.Scope, rec.Born = "s", fields.New(day("1980-03-02"))
	ok, err = s.Match(rec)
	require.NoError(t, err)
	assert.False(t, ok, "another birth date")
	_, err = s.Match(&rangePatient{})
	assert.Error(t, err, "another type")

	// A prefix condition's own post-filter compares plaintext only: the
	// scope is Search.Match's to check.
	s, err = c.Search(ctx, fields.NewQuery(&findable{Scope: "s", Last: fields.New("smi")}).Prefix("Last"))
	require.NoError(t, err)
	rec = &findable{ID: "2", Scope: "s", Last: fields.New("Smith")}
	ok, err = s.Match(rec)
	require.NoError(t, err)
	assert.True(t, ok)
	rec.Scope = "other"
	ok, err = s.Match(rec)
	require.NoError(t, err)
	assert.False(t, ok, "another scope, by prefix")
}

// sqlPatients is the Synthea patients sealed into a SQLite table through
// database/sql, over two tenants.
type sqlPatients struct {
	db     *sql.DB
	plain  []*Patient
	tenant map[string]string
}

const rangeCols = "id, tenant_id, last, birth_date, born_y, born_ym, born_d, last_p2, last_p3, last_p4, last_sound"

func (p *rangePatient) cols() []any {
	return []any{&p.ID, &p.TenantID, &p.Last, &p.BirthDate, &p.BornY, &p.BornYM, &p.BornD, &p.LastP2, &p.LastP3, &p.LastP4, &p.LastSound}
}

func newSQLPatients(t *testing.T, c *fields.Codec) *sqlPatients {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "p.db"))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	_, err = db.Exec(`CREATE TABLE patients (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, last TEXT, birth_date TEXT,
		born_y BLOB, born_ym BLOB, born_d BLOB, last_p2 BLOB, last_p3 BLOB, last_p4 BLOB, last_sound BLOB)`)
	require.NoError(t, err)
	tx, err := db.Begin()
	require.NoError(t, err)
	sp := &sqlPatients{db: db, plain: loadCSV(t), tenant: map[string]string{}}
	for i, p := range sp.plain {
		rec := &rangePatient{ID: p.ID, TenantID: fmt.Sprintf("tenant:%d", i%2), Last: fields.New(p.Last.Get()), BirthDate: fields.New(p.BirthDate.Get())}
		sp.tenant[p.ID] = rec.TenantID
		require.NoError(t, c.Seal(ctx, rec))
		_, err := tx.Exec("INSERT INTO patients ("+rangeCols+") VALUES (?,?,?,?,?,?,?,?,?,?,?)", rec.cols()...)
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit())
	return sp
}

// run runs s on the table and returns the candidates' ids and the ids
// that Match keeps.
func (sp *sqlPatients) run(t *testing.T, c *fields.Codec, s *fields.Search) (candidates int, found []string) {
	t.Helper()
	where, args, err := s.Where(fields.SQLite)
	require.NoError(t, err)
	rows, err := sp.db.Query("SELECT "+rangeCols+" FROM patients WHERE "+where, args...)
	require.NoError(t, err)
	defer rows.Close()
	var recs []*rangePatient
	for rows.Next() {
		rec := &rangePatient{}
		require.NoError(t, rows.Scan(rec.cols()...))
		recs = append(recs, rec)
	}
	require.NoError(t, rows.Err())
	if len(recs) > 0 {
		require.NoError(t, c.Open(context.Background(), recs))
	}
	for _, rec := range recs {
		ok, err := s.Match(rec)
		require.NoError(t, err)
		if ok {
			found = append(found, rec.ID)
		}
	}
	return len(recs), found
}

// randomRange returns a range between 1910 and 2020 written at a random
// precision at each end, at most 20 years wide.
func randomRange(rng *rand.Rand) string {
	from := time.Date(1910, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(110*365))
	to := from.AddDate(0, 0, rng.IntN(20*365))
	layouts := []string{"2006", "2006-01", "2006-01-02"}
	return from.Format(layouts[rng.IntN(3)]) + ".." + to.Format(layouts[rng.IntN(3)])
}

// TestSyntheaSQLRanges searches the Synthea patients of a SQLite table by
// birth-date ranges, through Search.Where and database/sql: every patient
// of the tenant born in the range is found (recall 100%), and the
// post-filter keeps no one else.
func TestSyntheaSQLRanges(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, queryConfig)
	sp := newSQLPatients(t, c)
	rng := rand.New(rand.NewPCG(16, 3))
	ranges := []string{"1980-03..1985-06", "1910..2025", "2000-02-29", "1945-05-08..1945-05-08"}
	for range 150 {
		ranges = append(ranges, randomRange(rng))
	}
	var candidates, found, maxTerms int
	for i, text := range ranges {
		r, err := fields.ParseDateRange(text)
		require.NoError(t, err)
		tenant := fmt.Sprintf("tenant:%d", i%2)
		s, err := c.Search(ctx, fields.NewQuery(&rangePatient{TenantID: tenant}).DateRange("BirthDate", r))
		require.NoError(t, err, text)
		maxTerms = max(maxTerms, s.Terms)
		n, got := sp.run(t, c, s)
		var want []string
		for _, p := range sp.plain {
			if sp.tenant[p.ID] == tenant && r.Contains(p.BirthDate.Get()) {
				want = append(want, p.ID)
			}
		}
		assert.ElementsMatch(t, want, got, text)
		candidates += n
		found += len(got)
	}
	t.Logf("%d ranges: recall and precision 100%%; %d rows found, %d candidates decrypted (%d false positives removed), at most %d terms",
		len(ranges), found, candidates, candidates-found, maxTerms)
	assert.Greater(t, found, 5000, "the ranges find many patients")
	assert.Greater(t, candidates, found, "the post-filter removed candidates")
}

// TestSyntheaSQLCombined searches by last-name prefix and birth-date
// range together, and by sounds-like name and range, on SQLite.
func TestSyntheaSQLCombined(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, queryConfig)
	sp := newSQLPatients(t, c)
	fold := cases.Fold()
	rng := rand.New(rand.NewPCG(16, 4))
	var candidates, found, queries int
	for i := 0; i < len(sp.plain); i += 5 {
		p := sp.plain[i]
		tenant := sp.tenant[p.ID]
		born := p.BirthDate.Get()
		r := fields.DateRange{From: born.AddDate(-rng.IntN(5), -rng.IntN(12), -rng.IntN(28)), To: born.AddDate(rng.IntN(5), rng.IntN(12), rng.IntN(28))}
		k := 2 + i%4
		prefix := strings.ToUpper(string([]rune(p.Last.Get())[:k]))
		s, err := c.Search(ctx, fields.NewQuery(&rangePatient{TenantID: tenant, Last: fields.New(prefix)}).Prefix("Last").DateRange("BirthDate", r))
		require.NoError(t, err)
		n, got := sp.run(t, c, s)
		var want []string
		for _, o := range sp.plain {
			if sp.tenant[o.ID] == tenant && strings.HasPrefix(fold.String(o.Last.Get()), fold.String(prefix)) && r.Contains(o.BirthDate.Get()) {
				want = append(want, o.ID)
			}
		}
		assert.Contains(t, got, p.ID)
		assert.ElementsMatch(t, want, got, "%s %s", prefix, r)
		candidates, found, queries = candidates+n, found+len(got), queries+1

		// Sounds like the name (digits dropped), in the range.
		s, err = c.Search(ctx, fields.NewQuery(&rangePatient{TenantID: tenant, Last: fields.New(p.Last.Get())}).SoundsLike("LastSound").DateRange("BirthDate", r))
		require.NoError(t, err)
		_, got = sp.run(t, c, s)
		assert.Contains(t, got, p.ID, "sounds like itself")

		// All four kinds at once: prefix, sounds-like, range and
		// equality (the birth date's date index), joined by AND.
		if i%25 == 0 {
			first3 := string([]rune(p.Last.Get())[:3])
			all := &rangePatient{TenantID: tenant, Last: fields.New(first3), BirthDate: fields.New(born)}
			s, err = c.Search(ctx, fields.NewQuery(all).Prefix("Last").SoundsLike("LastSound").DateRange("BirthDate", r).Equal("BornD"))
			require.NoError(t, err)
			require.Len(t, s.Conds, 4)
			_, got = sp.run(t, c, s)
			want = nil
			for _, o := range sp.plain {
				rec := &rangePatient{TenantID: sp.tenant[o.ID], Last: o.Last, BirthDate: o.BirthDate}
				sounds, err := c.Match(rec, all, "LastSound")
				require.NoError(t, err)
				if sp.tenant[o.ID] == tenant && strings.HasPrefix(fold.String(o.Last.Get()), fold.String(first3)) &&
					sounds && o.BirthDate.Get().Equal(born) {
					want = append(want, o.ID)
				}
			}
			assert.ElementsMatch(t, want, got, "four conditions")
		}
	}
	t.Logf("%d prefix+range queries: recall and precision 100%%; %d found, %d candidates decrypted", queries, found, candidates)
	assert.Greater(t, candidates, found, "the post-filter removed candidates")
}

func ExampleCodec_Search() {
	ctx := context.Background()
	c := exampleCodec()
	type Patient struct {
		ID        string                      `phi:"id,table=patients"`
		TenantID  string                      `phi:"scope"`
		Last      fields.String               `phi:"encrypt"`
		BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
		LastP3    fields.BlindIndex           `phi:"index,of=Last,normalize=fold+prefix:3,bits=12"`
		BornYear  fields.BlindIndex           `phi:"index,of=BirthDate,normalize=year,bits=12"`
		BornMonth fields.BlindIndex           `phi:"index,of=BirthDate,normalize=yearmonth,bits=12"`
	}
	born, err := fields.ParseDateRange("1980-03..1985-06")
	if err != nil {
		panic(err)
	}
	q := fields.NewQuery(&Patient{TenantID: "tenant:st-mary", Last: fields.New("smi")}).
		Prefix("Last").
		DateRange("BirthDate", born)
	s, err := c.Search(ctx, q)
	if err != nil {
		panic(err)
	}
	where, args, err := s.Where(fields.Postgres)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(where) > 0, len(args), s.Terms)
	// Then: SELECT ... FROM patients WHERE <where>, Open the rows, and
	// keep those for which s.Match(row) is true.

	smith := &Patient{ID: "p1", TenantID: "tenant:st-mary", Last: fields.New("Smith"), BirthDate: fields.New(time.Date(1983, 7, 4, 0, 0, 0, 0, time.UTC))}
	ok, _ := s.Match(smith)
	fmt.Println(ok)
	// Output:
	// true 22 21
	// true
}

// TestSyntheaSQLPrefixes searches every distinct prefix of 2 to 5
// letters of every Synthea last name, and every whole name, on SQLite
// through Search.Where: recall and precision 100% after Match.
func TestSyntheaSQLPrefixes(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, queryConfig)
	sp := newSQLPatients(t, c)
	fold := cases.Fold()
	type key struct{ tenant, prefix string }
	queries := map[key]bool{}
	for _, p := range sp.plain {
		last := fold.String(p.Last.Get())
		for k := 2; k <= 5; k++ {
			queries[key{sp.tenant[p.ID], string([]rune(last)[:k])}] = true
		}
		queries[key{sp.tenant[p.ID], last}] = true
	}
	var candidates, found int
	for q := range queries {
		s, err := c.Search(ctx, fields.NewQuery(&rangePatient{TenantID: q.tenant, Last: fields.New(strings.ToUpper(q.prefix))}).Prefix("Last"))
		require.NoError(t, err)
		n, got := sp.run(t, c, s)
		var want []string
		for _, p := range sp.plain {
			if sp.tenant[p.ID] == q.tenant && strings.HasPrefix(fold.String(p.Last.Get()), q.prefix) {
				want = append(want, p.ID)
			}
		}
		require.NotEmpty(t, want)
		assert.ElementsMatch(t, want, got, "%q", q.prefix)
		candidates, found = candidates+n, found+len(got)
	}
	t.Logf("%d prefix queries: recall and precision 100%%; %d found, %d candidates decrypted", len(queries), found, candidates)
	assert.Greater(t, len(queries), 2000)
	assert.Greater(t, candidates, found, "the post-filter removed candidates")
}

// BenchmarkDateRangeSearch measures the terms of 1980-03-15..1985-06-10
// (45 buckets over three indexes).
func BenchmarkDateRangeSearch(b *testing.B) {
	ctx := context.Background()
	c := newCodec(b, queryConfig)
	r, _ := fields.ParseDateRange("1980-03-15..1985-06-10")
	tmpl := &rangePatient{TenantID: "tenant:a"}
	_, err := c.DateRangeSearch(ctx, tmpl, "BirthDate", r, 0)
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.DateRangeSearch(ctx, tmpl, "BirthDate", r, 0); err != nil {
			b.Fatal(err)
		}
	}
}
