package fields_test

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/phicrypt/phicrypt/fields"
)

// This file is issue 16's proof on real data: every query type of the
// front desk (frontDesk, planned for 10 million patients) over the 1,174
// Synthea patients of the CSV export and the 1,144 of the bulk FHIR export,
// with recall, rows decrypted per query, and the false positive rate before
// the post-filter against the planner's 2^-L.
//
// Normalization of the data: Synthea appends digits to every name
// ("Lemuel304", "MacGyver246") so that its names are unique; a registration
// desk would never type them. The loader strips trailing digits, and the
// indexes see "Lemuel" and "MacGyver" (nfc+fold for prefixes, NYSIIS's own
// A-to-Z cleaning for the sounds-like indexes).

// person is one patient of a data set, as a front desk knows them.
type person struct {
	ID, SSN, First, Last string
	Born                 time.Time
}

// desuffix removes Synthea's numeric suffix.
func desuffix(name string) string { return strings.TrimRightFunc(name, unicode.IsDigit) }

func loadCSVPeople(t testing.TB) []person {
	t.Helper()
	f, err := os.Open("../testdata/synthea/patients.csv")
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	var out []person
	for _, r := range rows[1:] {
		born, err := time.Parse("2006-01-02", r[col["BIRTHDATE"]])
		require.NoError(t, err)
		out = append(out, person{ID: r[col["Id"]], SSN: r[col["SSN"]], First: desuffix(r[col["FIRST"]]), Last: desuffix(r[col["LAST"]]), Born: born})
	}
	return out
}

func loadBulkPeople(t testing.TB) []person {
	t.Helper()
	f, err := os.Open("../testdata/fhir-synthea/bulk-1000/Patient.000.ndjson")
	require.NoError(t, err)
	defer f.Close()
	var out []person
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var p struct {
			ID   string `json:"id"`
			Name []struct {
				Use    string   `json:"use"`
				Family string   `json:"family"`
				Given  []string `json:"given"`
			} `json:"name"`
			BirthDate  string `json:"birthDate"`
			Identifier []struct {
				System, Value string
			} `json:"identifier"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &p))
		born, err := time.Parse("2006-01-02", p.BirthDate)
		require.NoError(t, err)
		q := person{ID: p.ID, Born: born}
		for _, id := range p.Identifier {
			if id.System == "http://hl7.org/fhir/sid/us-ssn" {
				q.SSN = id.Value
			}
		}
		for _, n := range p.Name {
			if n.Use == "official" && len(n.Given) > 0 {
				q.First, q.Last = desuffix(n.Given[0]), desuffix(n.Family)
				break
			}
		}
		require.NotEmpty(t, q.Last, p.ID)
		out = append(out, q)
	}
	require.NoError(t, sc.Err())
	return out
}

// recallTable is a data set sealed under the front desk's indexes, with
// each index column as a database would hold it: value to row numbers.
type recallTable struct {
	c      *fields.Codec
	people []person
	rows   []*frontDesk
	cols   map[string]map[string][]int
}

const recallTenant = "tenant:recall"

func newRecallTable(t *testing.T, c *fields.Codec, people []person) *recallTable {
	t.Helper()
	ctx := context.Background()
	tb := &recallTable{c: c, people: people, cols: map[string]map[string][]int{}}
	for i, p := range people {
		r := &frontDesk{ID: p.ID, TenantID: recallTenant, SSN: fields.New(p.SSN), First: fields.New(p.First), Last: fields.New(p.Last), BirthDate: fields.New(p.Born)}
		require.NoError(t, c.Seal(ctx, r))
		tb.rows = append(tb.rows, r)
		for name, x := range map[string]fields.BlindIndex{"Last4DOB": r.Last4DOB, "LastP2": r.LastP2, "LastP3": r.LastP3, "LastP4": r.LastP4,
			"LastP5": r.LastP5, "LastSound": r.LastSound, "FirstSnd": r.FirstSnd, "BornYear": r.BornYear, "BornMonth": r.BornMonth} {
			if x.IsNull() {
				continue
			}
			if tb.cols[name] == nil {
				tb.cols[name] = map[string][]int{}
			}
			k := indexKey(t, x)
			tb.cols[name][k] = append(tb.cols[name][k], i)
		}
	}
	return tb
}

func indexKey(t *testing.T, x fields.BlindIndex) string {
	v, err := x.Value()
	require.NoError(t, err)
	return string(v.([]byte))
}

// candidates returns the rows of index whose value is one of terms: the
// rows a query decrypts.
func (tb *recallTable) candidates(t *testing.T, index string, terms []fields.BlindIndex) []int {
	var out []int
	for _, term := range terms {
		out = append(out, tb.cols[index][indexKey(t, term)]...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// queryStats gathers one query type's figures.
type queryStats struct {
	name              string
	bits              int
	queries, expected int
	found             int // expected rows found after the post-filter
	decrypted         int // candidate rows, before the post-filter
	falsePos          int // candidates whose value does not match
	nonMatching       int // rows that do not match, summed over queries
	maxDecrypted      int
	misses            []string
	// The same, per distinct value (class) rather than per row: HMACs
	// of distinct values collide independently, rows of one value
	// together.
	valuesNonMatching, valuesFalsePos int
}

// addValues counts the distinct values of the false positives among cands,
// and the distinct values that do not match the query's value q; class
// holds each row's value as the index sees it.
func (s *queryStats) addValues(class []string, q string, cands []int) {
	all := map[string]bool{}
	for _, c := range class {
		if c != "" {
			all[c] = true
		}
	}
	s.valuesNonMatching += len(all)
	if all[q] {
		s.valuesNonMatching--
	}
	fp := map[string]bool{}
	for _, c := range cands {
		if class[c] != q {
			fp[class[c]] = true
		}
	}
	s.valuesFalsePos += len(fp)
}

func (s *queryStats) add(want, cands, kept []int, n int) {
	s.queries++
	s.expected += len(want)
	s.decrypted += len(cands)
	s.maxDecrypted = max(s.maxDecrypted, len(cands))
	s.nonMatching += n - len(want)
	for _, c := range cands {
		if !slices.Contains(want, c) {
			s.falsePos++
		}
	}
	for _, w := range want {
		if slices.Contains(kept, w) {
			s.found++
		}
	}
}

func (s *queryStats) recall() float64 { return float64(s.found) / float64(s.expected) }

// fpRate is the share of non-matching rows that the index returned.
func (s *queryStats) fpRate() float64 { return float64(s.falsePos) / float64(s.nonMatching) }

func (s *queryStats) log(t *testing.T) {
	t.Helper()
	if s.bits == 0 {
		t.Logf("%-22s       queries %5d  recall %7.3f%% (%d/%d)  rows decrypted/query %7.1f (max %4d)",
			s.name, s.queries, 100*s.recall(), s.found, s.expected, float64(s.decrypted)/float64(s.queries), s.maxDecrypted)
		return
	}
	t.Logf("%-22s L=%2d queries %5d  recall %7.3f%% (%d/%d)  rows decrypted/query %7.1f (max %4d)  false positives %5d: rate %.2e vs planner 2^-L %.2e",
		s.name, s.bits, s.queries, 100*s.recall(), s.found, s.expected, float64(s.decrypted)/float64(s.queries), s.maxDecrypted,
		s.falsePos, s.fpRate(), math.Exp2(-float64(s.bits)))
}

// checkFalsePositives asserts that the false positives before the
// post-filter are what 2^-L predicts, counted per distinct value: each
// non-matching value collides with the query's with probability 2^-L, so
// their count is binomial; it must be within 6 standard deviations (and 3
// of slack; a pair of values is counted from both sides). Counted per row,
// the expectation is the same, but rows of one value collide together.
func (s *queryStats) checkFalsePositives(t *testing.T) {
	t.Helper()
	p := math.Exp2(-float64(s.bits))
	want := float64(s.valuesNonMatching) * p
	sd := math.Sqrt(2 * want * (1 - p))
	assert.InDelta(t, want, float64(s.valuesFalsePos), 6*sd+3, "%s: %d values collided, %0.1f predicted", s.name, s.valuesFalsePos, want)
	t.Logf("%-22s       per value: %d of %d non-matching values collided: %.2e vs 2^-L %.2e", "", s.valuesFalsePos, s.valuesNonMatching,
		float64(s.valuesFalsePos)/float64(s.valuesNonMatching), p)
}

func TestRecallSynthea(t *testing.T) {
	for _, ds := range []struct {
		name string
		load func(testing.TB) []person
		n    int
	}{{"csv", loadCSVPeople, 1174}, {"bulk", loadBulkPeople, 1144}} {
		t.Run(ds.name, func(t *testing.T) {
			if testing.Short() && ds.name == "bulk" {
				t.Skip("-short: the CSV export only")
			}
			people := ds.load(t)
			require.Len(t, people, ds.n)
			c := newCodec(t, frontDeskConfig(tenMillion))
			tb := newRecallTable(t, c, people)
			rep, err := c.PlanReport(&frontDesk{})
			require.NoError(t, err)
			bits := map[string]int{}
			for _, il := range rep.Indexes {
				bits[il.Index] = il.Bits
			}
			for _, s := range []*queryStats{tb.last4DOB(t, bits), tb.prefixes(t, bits), tb.dateRanges(t, bits)} {
				s.log(t)
				assert.Equal(t, s.expected, s.found, "%s: recall must be 100%%", s.name)
				if s.bits > 0 {
					s.checkFalsePositives(t)
				}
			}
			for _, s := range tb.soundsLike(t, bits) {
				s.log(t)
				if strings.HasSuffix(s.name, "exact") {
					assert.Equal(t, s.expected, s.found, "%s: an exact spelling is always found", s.name)
				}
				s.checkFalsePositives(t)
				for _, m := range s.misses[:min(3, len(s.misses))] {
					t.Logf("    miss: %s", m)
				}
			}
		})
	}
}

// last4DOB searches every patient by the last four digits of the SSN and
// the birth date.
func (tb *recallTable) last4DOB(t *testing.T, bits map[string]int) *queryStats {
	ctx := context.Background()
	s := &queryStats{name: "last4+DOB", bits: bits["Last4DOB"]}
	seen := map[string]bool{}
	class := make([]string, len(tb.people))
	for i, o := range tb.people {
		class[i] = o.SSN[len(o.SSN)-4:] + o.Born.Format(time.DateOnly)
	}
	for _, p := range tb.people {
		last4 := p.SSN[len(p.SSN)-4:]
		key := last4 + p.Born.Format(time.DateOnly)
		if seen[key] {
			continue
		}
		seen[key] = true
		q := &frontDesk{TenantID: recallTenant, SSN: fields.New(last4), BirthDate: fields.New(p.Born)}
		terms, err := tb.c.IndexTerms(ctx, q, "Last4DOB")
		require.NoError(t, err)
		cands := tb.candidates(t, "Last4DOB", terms)
		var kept, want []int
		for _, i := range cands {
			ok, err := tb.c.Match(tb.rows[i], q, "Last4DOB")
			require.NoError(t, err)
			if ok {
				kept = append(kept, i)
			}
		}
		for i, o := range tb.people {
			if strings.HasSuffix(o.SSN, last4) && o.Born.Equal(p.Born) {
				want = append(want, i)
			}
		}
		s.add(want, cands, kept, len(tb.people))
		s.addValues(class, key, cands)
	}
	return s
}

// prefixes searches every distinct prefix of 2 to 5 letters of the last
// names, upper-cased as typed at a desk.
func (tb *recallTable) prefixes(t *testing.T, bits map[string]int) *queryStats {
	ctx := context.Background()
	fold := cases.Fold()
	s := &queryStats{name: "prefix 2-5 letters"}
	per := map[int]*queryStats{}
	classes := map[int][]string{}
	folded := make([]string, len(tb.people))
	for i, o := range tb.people {
		folded[i] = fold.String(norm.NFC.String(o.Last))
	}
	for k := 2; k <= 5; k++ {
		for _, o := range tb.people {
			c := ""
			if utf8.RuneCountInString(o.Last) >= k {
				c = fold.String(string([]rune(norm.NFC.String(o.Last))[:k]))
			}
			classes[k] = append(classes[k], c)
		}
	}
	queries := map[string]bool{}
	for _, p := range tb.people {
		for k := 2; k <= 5 && k <= utf8.RuneCountInString(p.Last); k++ {
			queries[fold.String(string([]rune(p.Last)[:k]))] = true
		}
	}
	for _, q := range slices.Sorted(func(yield func(string) bool) {
		for q := range queries {
			if !yield(q) {
				return
			}
		}
	}) {
		tmpl := &frontDesk{TenantID: recallTenant, Last: fields.New(strings.ToUpper(q))}
		pt, err := tb.c.PrefixSearch(ctx, tmpl, "Last")
		require.NoError(t, err)
		require.Equal(t, utf8.RuneCountInString(q), pt.Length)
		cands := tb.candidates(t, pt.Index, pt.Terms)
		var kept, want []int
		for _, i := range cands {
			ok, err := tb.c.MatchPrefix(tb.rows[i], tmpl, pt.Index)
			require.NoError(t, err)
			if ok {
				kept = append(kept, i)
			}
		}
		for i, f := range folded {
			if strings.HasPrefix(f, q) {
				want = append(want, i)
			}
		}
		ps := per[pt.Length]
		if ps == nil {
			ps = &queryStats{name: fmt.Sprintf("prefix %d letters", pt.Length), bits: bits[pt.Index]}
			per[pt.Length] = ps
		}
		ps.add(want, cands, kept, len(tb.people))
		ps.addValues(classes[pt.Length], q, cands)
		s.add(want, cands, kept, len(tb.people))
	}
	for k := 2; k <= 5; k++ {
		per[k].log(t)
		assert.Equal(t, per[k].expected, per[k].found)
		per[k].checkFalsePositives(t)
	}
	s.bits = 0 // several lengths: checked per length above
	return s
}

// dateRanges searches 300 random birth-date ranges (seeded): each becomes
// the year buckets inside it and the month buckets at its edges, and the
// post-filter compares the dates.
func (tb *recallTable) dateRanges(t *testing.T, bits map[string]int) *queryStats {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(16, 6))
	s := &queryStats{name: "birth-date ranges"}
	years := queryStats{name: "year buckets", bits: bits["BornYear"]}
	months := queryStats{name: "month buckets", bits: bits["BornMonth"]}
	buckets := map[string]bool{}
	bucketClass := map[string][]string{}
	for _, layout := range []string{"2006", "2006-01"} {
		for _, o := range tb.people {
			bucketClass[layout] = append(bucketClass[layout], o.Born.Format(layout))
		}
	}
	lo := time.Date(1910, 1, 1, 0, 0, 0, 0, time.UTC)
	span := int(time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC).Sub(lo).Hours() / 24)
	for range 300 {
		from := lo.AddDate(0, 0, rng.IntN(span))
		to := from.AddDate(0, 0, rng.IntN(15*365))
		var terms []fields.BlindIndex
		var cands []int
		add := func(index string, day time.Time) {
			ts, err := tb.c.IndexTerms(ctx, &frontDesk{TenantID: recallTenant, BirthDate: fields.New(day)}, index)
			require.NoError(t, err)
			terms = append(terms, ts...)
			bc := tb.candidates(t, index, ts)
			cands = append(cands, bc...)
			// Each bucket's own false positives, once per bucket.
			layout, bs := "2006", &years
			if index == "BornMonth" {
				layout, bs = "2006-01", &months
			}
			if key := day.Format(layout); !buckets[key] {
				buckets[key] = true
				var want []int
				for i, o := range tb.people {
					if o.Born.Format(layout) == key {
						want = append(want, i)
					}
				}
				bs.add(want, bc, want, len(tb.people))
				bs.addValues(bucketClass[layout], key, bc)
			}
		}
		nYears, nMonths := 0, 0
		for m := time.Date(from.Year(), from.Month(), 1, 0, 0, 0, 0, time.UTC); !m.After(to); {
			// A whole year inside the range is one year bucket; the
			// months at the edges are month buckets.
			if m.Month() == time.January && !m.Before(from) && !m.AddDate(1, 0, -1).After(to) {
				add("BornYear", m)
				nYears++
				m = m.AddDate(1, 0, 0)
				continue
			}
			add("BornMonth", m)
			nMonths++
			m = m.AddDate(0, 1, 0)
		}
		require.LessOrEqual(t, nMonths, 24, "at most 11 months at each edge, and the partial ones")
		slices.Sort(cands)
		cands = slices.Compact(cands)
		var kept, want []int
		for _, i := range cands {
			b := tb.rows[i].BirthDate.Get()
			if !b.Before(from) && !b.After(to) {
				kept = append(kept, i)
			}
		}
		for i, o := range tb.people {
			if !o.Born.Before(from) && !o.Born.After(to) {
				want = append(want, i)
			}
		}
		s.add(want, cands, kept, len(tb.people))
	}
	// The candidates outside a range are the buckets' false positives
	// (term collisions) and the days of the edge months outside it: the
	// planner's rate is checked on each bucket index.
	for _, bs := range []*queryStats{&years, &months} {
		bs.log(t)
		bs.checkFalsePositives(t)
	}
	return s
}

// keyboard is the QWERTY neighbourhood of each letter.
var keyboard = map[rune]string{
	'q': "wa", 'w': "qeas", 'e': "wrsd", 'r': "etdf", 't': "ryfg", 'y': "tugh", 'u': "yihj", 'i': "uojk", 'o': "ipkl", 'p': "ol",
	'a': "qwsz", 's': "awedxz", 'd': "serfcx", 'f': "drtgvc", 'g': "ftyhbv", 'h': "gyujnb", 'j': "huikmn", 'k': "jiolm", 'l': "kop",
	'z': "asx", 'x': "zsdc", 'c': "xdfv", 'v': "cfgb", 'b': "vghn", 'n': "bhjm", 'm': "njk",
}

// confusions are spellings heard alike over the phone, each way.
var confusions = [][2]string{
	{"ph", "f"}, {"ck", "k"}, {"c", "k"}, {"s", "z"}, {"ie", "y"}, {"ei", "ie"}, {"y", "i"}, {"ee", "ea"},
	{"ou", "ow"}, {"v", "w"}, {"th", "t"}, {"mm", "m"}, {"ll", "l"}, {"tt", "t"}, {"son", "sen"}, {"man", "mann"},
}

// typoKinds are the error model's operations.
var typoKinds = []string{"adjacent key", "transposition", "doubled letter", "dropped letter", "phonetic confusion"}

// misspell applies one error of kind to name (never to its first
// letter, which a caller spells out; see misspellFirst for those) and
// reports false when the name offers no place for it. The model knows
// nothing of NYSIIS: it is the keyboard and the ear.
func misspell(rng *rand.Rand, name, kind string, fromFirst bool) (string, bool) {
	r := []rune(strings.ToLower(name))
	start := 1
	if fromFirst {
		start = 0
	}
	if len(r) < 3 {
		return "", false
	}
	pick := func(n int) int { return start + rng.IntN(n-start) }
	switch kind {
	case "adjacent key":
		for range 8 {
			i := pick(len(r))
			if near, ok := keyboard[r[i]]; ok {
				out := slices.Clone(r)
				out[i] = rune(near[rng.IntN(len(near))])
				return string(out), true
			}
		}
	case "transposition":
		for range 8 {
			i := pick(len(r) - 1)
			if r[i] != r[i+1] {
				out := slices.Clone(r)
				out[i], out[i+1] = out[i+1], out[i]
				return string(out), true
			}
		}
	case "doubled letter":
		i := pick(len(r))
		return string(slices.Insert(slices.Clone(r), i, r[i])), true
	case "dropped letter":
		i := pick(len(r))
		return string(slices.Delete(slices.Clone(r), i, i+1)), true
	case "phonetic confusion":
		s := string(r)
		var options [][2]string
		for _, c := range confusions {
			for _, d := range [][2]string{c, {c[1], c[0]}} {
				if at := strings.Index(s[start:], d[0]); at >= 0 {
					options = append(options, [2]string{d[0], d[1]})
				}
			}
		}
		if len(options) == 0 {
			return "", false
		}
		o := options[rng.IntN(len(options))]
		at := start + strings.Index(s[start:], o[0])
		return s[:at] + o[1] + s[at+len(o[0]):], true
	}
	return "", false
}

// soundsLike searches every patient's last and first names misspelled by
// the error model (seeded), and spelled right, through the NYSIIS indexes:
// recall is the share of searches that find the patient.
func (tb *recallTable) soundsLike(t *testing.T, bits map[string]int) []*queryStats {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(16, 61))
	var out []*queryStats
	for _, field := range []struct{ name, index string }{{"Last", "LastSound"}, {"First", "FirstSnd"}} {
		exact := &queryStats{name: "sounds-like " + field.name + " exact", bits: bits[field.index]}
		stats := map[string]*queryStats{}
		exactSeen := map[string]bool{}
		class := make([]string, len(tb.people))
		for j, o := range tb.people {
			class[j] = fields.NYSIISCode(o.Last)
			if field.name == "First" {
				class[j] = fields.NYSIISCode(o.First)
			}
		}
		for _, k := range typoKinds {
			stats[k] = &queryStats{name: "sounds-like " + field.name + " " + k, bits: bits[field.index]}
		}
		for i, p := range tb.people {
			name := p.Last
			if field.name == "First" {
				name = p.First
			}
			run := func(s *queryStats, q string) {
				tmpl := &frontDesk{TenantID: recallTenant, Last: fields.New(q), First: fields.New(q)}
				terms, err := tb.c.IndexTerms(ctx, tmpl, field.index)
				if err != nil { // no letters A to Z: nothing to search
					s.add([]int{i}, nil, nil, len(tb.people))
					s.misses = append(s.misses, fmt.Sprintf("%q for %q: no phonetic code", q, name))
					return
				}
				cands := tb.candidates(t, field.index, terms)
				var kept, want []int
				for _, c := range cands {
					ok, err := tb.c.Match(tb.rows[c], tmpl, field.index)
					require.NoError(t, err)
					if ok {
						kept = append(kept, c)
					}
				}
				// The rows whose name codes like the query: what the
				// post-filter keeps, and the truth for the false
				// positive count.
				code := fields.NYSIISCode(q)
				for j := range tb.people {
					if class[j] == code {
						want = append(want, j)
					}
				}
				s.queries++
				s.expected++
				s.decrypted += len(cands)
				s.maxDecrypted = max(s.maxDecrypted, len(cands))
				s.nonMatching += len(tb.people) - len(want)
				for _, c := range cands {
					if !slices.Contains(want, c) {
						s.falsePos++
					}
				}
				s.addValues(class, code, cands)
				if slices.Contains(kept, i) {
					s.found++
				} else {
					s.misses = append(s.misses, fmt.Sprintf("%q for %q", q, name))
				}
			}
			if !exactSeen[strings.ToLower(name)] {
				exactSeen[strings.ToLower(name)] = true
				run(exact, name)
			}
			k := typoKinds[i%len(typoKinds)]
			if q, ok := misspell(rng, name, k, false); ok && q != strings.ToLower(name) {
				run(stats[k], q)
			}
		}
		out = append(out, exact)
		for _, k := range typoKinds {
			out = append(out, stats[k])
		}
	}
	return out
}

// TestMisspellIsDeterministic: the error model gives the same misspellings
// for the same seed, and each operation does what it says.
func TestMisspellIsDeterministic(t *testing.T) {
	a, b := rand.New(rand.NewPCG(1, 2)), rand.New(rand.NewPCG(1, 2))
	for _, k := range typoKinds {
		x, okx := misspell(a, "Johnson", k, false)
		y, oky := misspell(b, "Johnson", k, false)
		require.True(t, okx && oky, k)
		assert.Equal(t, x, y, k)
		assert.NotEqual(t, "johnson", x, k)
		assert.Equal(t, byte('j'), x[0], "%s: the first letter is kept", k)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	got, _ := misspell(rng, "Smith", "doubled letter", false)
	assert.Len(t, got, 6)
	got, _ = misspell(rng, "Smith", "dropped letter", false)
	assert.Len(t, got, 4)
	got, _ = misspell(rng, "Phelps", "phonetic confusion", true)
	assert.NotEqual(t, "phelps", got)
}
