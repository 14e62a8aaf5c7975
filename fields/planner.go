package fields

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"strings"
)

// This file holds the leakage planner of blind indexes (see the package
// documentation, "Planning blind indexes", for the model and its numbers).

// Planner defaults.
const (
	// DefaultExpectedRows is the table size the planner assumes when
	// Config.ExpectedRows is not set: a million patients, the master
	// patient index of a large hospital. Set ExpectedRows to the real
	// table's size: a smaller table leaks more per index bit.
	DefaultExpectedRows = 1_000_000
	// DefaultMinCandidates is the fewest rows that must share the values
	// of all the indexes over a field when Config.MinCandidates is not
	// set: two, CipherSweet's rule.
	DefaultMinCandidates = 2
	// LowCardinalityBits is the domain size, in bits, at or under which
	// an index source is low-cardinality (65,536 values or fewer), and
	// the planner warns.
	LowCardinalityBits = 16
)

// Domain sizes, in bits, that the planner assumes for the transforms
// (log2 of the number of values they can produce).
var (
	// dateSpanYears is the span of dates the date transforms assume.
	dateSpanYears = 150.0
	bitsYear      = math.Log2(dateSpanYears)
	bitsYearMonth = math.Log2(dateSpanYears * 12)
	bitsDate      = math.Log2(dateSpanYears * 365.25)
	bitsLast4     = math.Log2(10_000)
	// bitsPerChar is one character of a prefix: 26 letters and a
	// separator.
	bitsPerChar = math.Log2(27)
	// bitsNYSIIS is a NYSIIS code of up to six letters.
	bitsNYSIIS = 6 * math.Log2(26)
)

// ErrIndexLeak means that the blind indexes over a field leak too much
// together: the rows that share a row's values of all of them are
// expected to be fewer than Config.MinCandidates. The error is a
// *LeakError, which also matches ErrInvalidTag.
var ErrIndexLeak = errors.New("fields: blind indexes leak too much together")

// LeakError is the planner's refusal of a record type: the indexes over
// Field, together, would narrow a value down to Candidates rows of a
// table of Rows, fewer than MinCandidates. It names no value.
type LeakError struct {
	Type, Field, Column string
	// Indexes are the Go names of the indexes that read the field,
	// compound ones included.
	Indexes []string
	// LeakBits is what they reveal together, in bits; Budget the most
	// they may reveal: log2(Rows/MinCandidates).
	LeakBits, Budget float64
	// Candidates is Rows / 2^LeakBits.
	Candidates    float64
	Rows          int64
	MinCandidates int64
}

func (e *LeakError) Error() string {
	return fmt.Sprintf("fields: %s.%s (column %s): the indexes %s reveal %.1f bits together, more than %.1f: with %d rows they leave %.2g candidate rows, fewer than %d",
		e.Type, e.Field, e.Column, strings.Join(e.Indexes, ", "), e.LeakBits, e.Budget, e.Rows, e.Candidates, e.MinCandidates)
}

// Unwrap returns ErrIndexLeak and ErrInvalidTag.
func (e *LeakError) Unwrap() []error { return []error{ErrIndexLeak, ErrInvalidTag} }

// PlanWarning is a warning of the planner: an index whose sources have few
// values. It names no value.
type PlanWarning struct {
	Type, Index, Column string
	// DomainBits is log2 of the number of values the index's input can
	// take; Bits the index's length.
	DomainBits float64
	Bits       int
	Reason     string
}

func (w PlanWarning) String() string {
	return fmt.Sprintf("fields: %s.%s (column %s): %s", w.Type, w.Index, w.Column, w.Reason)
}

// IndexReport is the planner's view of one record type's blind indexes,
// for a table of Rows rows. Codec.PlanReport returns it; Seal and the
// other calls refuse the type when Err is set.
type IndexReport struct {
	Type          string
	Rows          int64
	MinCandidates int64
	// Budget is the most bits the indexes over one field may reveal
	// together: log2(Rows/MinCandidates).
	Budget   float64
	Indexes  []IndexLeak
	Fields   []FieldLeak
	Warnings []PlanWarning
	// Err is the *LeakError of the first field over budget, or nil.
	Err error
}

// IndexLeak is what one index reveals and costs, under the planner's
// model (uniform values; see the package documentation).
type IndexLeak struct {
	Index, Column string
	// Sources are the Go names of the index's source fields.
	Sources []string
	// Normalize is the index's normalizer chains, one per source.
	Normalize string
	// Bits is the index's length L; DomainBits is K, log2 of the number
	// of distinct inputs (+Inf when unbounded or unknown); LeakBits is
	// min(L, K), what the index reveals.
	Bits       int
	DomainBits float64
	LeakBits   float64
	// Matches is the expected number of rows whose value matches a
	// query, Rows/2^K; FalsePositives the expected number of other rows
	// whose index value collides with the query's, (Rows-Matches)/2^L.
	// A query decrypts RowsPerQuery = Matches + FalsePositives rows.
	Matches, FalsePositives, RowsPerQuery float64
	// FalsePositiveRate is the chance that a row whose value does not
	// match has the query's index value: 2^-L.
	FalsePositiveRate float64
	// MaxBits is the longest this index may be with the other indexes as
	// they are, keeping every field it reads within budget (CipherSweet's
	// recommendation); 0 when no length is safe.
	MaxBits int
}

// FieldLeak is what all the indexes reading one field reveal together.
type FieldLeak struct {
	Field, Column string
	Indexes       []string
	// LeakBits is the combined leak; Candidates the rows expected to share
	// a row's values of all these indexes, Rows / 2^LeakBits.
	LeakBits, Candidates float64
}

// planConfig is the planner's input.
type planConfig struct {
	rows       int64
	min        int64
	sourceBits map[string]float64
}

func (c *Codec) planConfig() planConfig {
	pc := planConfig{rows: c.cfg.ExpectedRows, min: c.cfg.MinCandidates, sourceBits: c.cfg.SourceBits}
	if pc.rows <= 0 {
		pc.rows = DefaultExpectedRows
	}
	if pc.min <= 0 {
		pc.min = DefaultMinCandidates
	}
	return pc
}

// PlanReport runs the planner on the record type of v (as Plan takes it)
// with the codec's configuration, and reports the bits of each index,
// what each reveals, the rows a query must decrypt, and the combined
// leak over each field. A refused type has Err set; tag errors are
// returned as errors.
func (c *Codec) PlanReport(v any) (*IndexReport, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	t, err := structType(v)
	if err != nil {
		return nil, err
	}
	p, err := planFor(t)
	if err != nil {
		return nil, err
	}
	return planIndexes(p, c.planConfig()), nil
}

func structType(v any) (reflect.Type, error) {
	t, ok := v.(reflect.Type)
	if !ok {
		t = reflect.TypeOf(v)
	}
	for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice) {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil, ErrUnsupported
	}
	return t, nil
}

// checkPlan runs the planner on p once per codec: the first call emits
// the warnings and remembers the verdict.
func (c *Codec) checkPlan(p *plan) error {
	if r, ok := c.checked.Load(p.typ); ok {
		err, _ := r.(error)
		return err
	}
	rep := planIndexes(p, c.planConfig())
	if c.cfg.InsecureSkipIndexPlanner {
		rep.Err = nil
	}
	var verdict any = true
	if rep.Err != nil {
		verdict = rep.Err
	}
	if _, loaded := c.checked.LoadOrStore(p.typ, verdict); !loaded {
		for _, w := range rep.Warnings {
			if c.cfg.OnPlanWarning != nil {
				c.cfg.OnPlanWarning(w)
			} else {
				slog.Warn("phicrypt blind index planner", "type", w.Type, "index", w.Index, "column", w.Column,
					"domain_bits", math.Round(w.DomainBits*10)/10, "bits", w.Bits, "reason", w.Reason)
			}
		}
	}
	return rep.Err
}

// chainDomain returns the domain, in bits, of source field f normalized by
// chain: the field's declared domain (Config.SourceBits) narrowed by each
// transform of the chain.
func chainDomain(declared float64, chain normChain) float64 {
	k := declared
	for _, n := range chain.names {
		switch {
		case n == "last4":
			k = min(k, bitsLast4)
		case n == "year":
			k = min(k, bitsYear)
		case n == "yearmonth":
			k = min(k, bitsYearMonth)
		case n == "date":
			k = min(k, bitsDate)
		case n == "nysiis":
			k = min(k, bitsNYSIIS)
		case strings.HasPrefix(n, "prefix:"):
			k = min(k, float64(chain.prefix)*bitsPerChar)
		}
	}
	return k
}

// refinement classifies a chain for the nesting rule: its base (the
// chain without its final reducing transform), the kind of that transform
// ("prefix", "date", or "" for none: the full value) and its rank (prefix
// length, or 1 to 3 for year, yearmonth, date).
func refinement(chain normChain) (base, kind string, rank int) {
	names := chain.names
	if len(names) == 0 {
		return "", "", math.MaxInt
	}
	last := names[len(names)-1]
	switch {
	case chain.prefix > 0:
		return strings.Join(names[:len(names)-1], "+"), "prefix", chain.prefix
	case last == "year", last == "yearmonth", last == "date":
		return strings.Join(names[:len(names)-1], "+"), "date", map[string]int{"year": 1, "yearmonth": 2, "date": 3}[last]
	}
	return strings.Join(names, "+"), "", math.MaxInt
}

// indexChain returns the chain of source i of ip.
func (ip *indexPlan) indexChain(i int) normChain {
	if len(ip.chains) > 1 {
		return ip.chains[i]
	}
	if len(ip.chains) == 1 {
		return ip.chains[0]
	}
	return normChain{}
}

// chainsString is the canonical form of ip's chains: one per source,
// joined by |, "-" for an empty chain.
func (ip *indexPlan) chainsString() string {
	parts := make([]string, len(ip.sources))
	for i := range ip.sources {
		c := ip.indexChain(i)
		if len(c.names) == 0 {
			parts[i] = "-"
		} else {
			parts[i] = strings.Join(c.names, "+")
		}
	}
	return strings.Join(parts, "|")
}

// leakModel holds the planner's per-index figures.
type leakModel struct {
	p   *plan
	pc  planConfig
	dom []float64 // K of each index
}

// fieldDomain is the declared domain of field f, +Inf when unknown.
func (m *leakModel) fieldDomain(f int) float64 {
	fp := &m.p.fields[f]
	for _, key := range []string{m.p.table + "." + fp.column, fp.column, fp.name} {
		if b, ok := m.pc.sourceBits[key]; ok && b > 0 {
			return b
		}
	}
	return math.Inf(1)
}

// groupLeak is the combined leak of the indexes in idx (indexes into
// p.indexes) that all read field f, with bits[i] as the length of index i.
func (m *leakModel) groupLeak(idx []int, bits []int) float64 {
	type family struct {
		sum, cap float64
		kinds    map[string]bool
	}
	families := map[string]*family{}
	var order []string
	total := 0.0
	// The inputs' joint domain caps the whole: per source field, the sum
	// of the domains of the distinct chains applied to it, or the field's
	// own domain.
	chainK := map[int]map[string]float64{}
	for _, i := range idx {
		ip := &m.p.indexes[i]
		leak := min(float64(bits[i]), m.dom[i])
		for s, f := range ip.sources {
			ch := ip.indexChain(s)
			if chainK[f] == nil {
				chainK[f] = map[string]float64{}
			}
			chainK[f][strings.Join(ch.names, "+")] = chainDomain(m.fieldDomain(f), ch)
		}
		if len(ip.sources) != 1 {
			total += leak
			continue
		}
		base, kind, _ := refinement(ip.indexChain(0))
		key := fmt.Sprint(ip.sources[0], "\x00", base)
		fam := families[key]
		if fam == nil {
			fam = &family{kinds: map[string]bool{}}
			families[key] = fam
			order = append(order, key)
		}
		fam.sum += leak
		fam.kinds[kind] = true
		fam.cap = max(fam.cap, m.dom[i])
	}
	for _, key := range order {
		fam := families[key]
		// Nested refinements (prefixes of one text, or year, month and
		// day of one date, with or without the full value) are functions
		// of the finest of them: together they reveal no more than its
		// domain. Unrelated kinds without the full value just add up.
		full := fam.kinds[""]
		delete(fam.kinds, "")
		if len(fam.kinds) <= 1 || full {
			total += min(fam.sum, fam.cap)
		} else {
			total += fam.sum
		}
	}
	joint := 0.0
	for f, chains := range chainK {
		s := 0.0
		for _, k := range chains {
			s += k
		}
		joint += min(s, m.fieldDomain(f))
	}
	return min(total, joint)
}

// planIndexes runs the planner on p.
func planIndexes(p *plan, pc planConfig) *IndexReport {
	rep := &IndexReport{Type: p.typ.String(), Rows: pc.rows, MinCandidates: pc.min}
	rows := float64(pc.rows)
	rep.Budget = math.Log2(rows / float64(pc.min))
	m := &leakModel{p: p, pc: pc, dom: make([]float64, len(p.indexes))}
	bits := make([]int, len(p.indexes))
	for i := range p.indexes {
		ip := &p.indexes[i]
		bits[i] = ip.bits
		k := 0.0
		for s, f := range ip.sources {
			k += chainDomain(m.fieldDomain(f), ip.indexChain(s))
		}
		m.dom[i] = k
	}
	// The groups: for each field, the indexes that read it.
	groups := make([][]int, len(p.fields))
	for i := range p.indexes {
		for _, f := range p.indexes[i].sources {
			if !slices.Contains(groups[f], i) {
				groups[f] = append(groups[f], i)
			}
		}
	}
	for f, g := range groups {
		if len(g) == 0 {
			continue
		}
		fl := FieldLeak{Field: p.fields[f].name, Column: p.fields[f].column, LeakBits: m.groupLeak(g, bits)}
		for _, i := range g {
			fl.Indexes = append(fl.Indexes, p.indexes[i].name)
		}
		fl.Candidates = rows / math.Exp2(fl.LeakBits)
		rep.Fields = append(rep.Fields, fl)
		if rep.Err == nil && fl.LeakBits > rep.Budget+1e-9 {
			rep.Err = &LeakError{Type: rep.Type, Field: fl.Field, Column: fl.Column, Indexes: fl.Indexes,
				LeakBits: fl.LeakBits, Budget: rep.Budget, Candidates: fl.Candidates, Rows: pc.rows, MinCandidates: pc.min}
		}
	}
	for i := range p.indexes {
		ip := &p.indexes[i]
		k := m.dom[i]
		il := IndexLeak{Index: ip.name, Column: ip.column, Normalize: ip.chainsString(), Bits: ip.bits, DomainBits: k,
			LeakBits: min(float64(ip.bits), k), FalsePositiveRate: math.Exp2(-float64(ip.bits))}
		for _, f := range ip.sources {
			il.Sources = append(il.Sources, p.fields[f].name)
		}
		il.Matches = rows / math.Exp2(k)
		il.FalsePositives = (rows - il.Matches) * il.FalsePositiveRate
		il.RowsPerQuery = il.Matches + il.FalsePositives
		// MaxBits: the longest length that keeps every group of this
		// index within budget, the others as tagged.
		trial := slices.Clone(bits)
		for l := MaxIndexBits; l >= 1; l-- {
			trial[i] = l
			ok := true
			for _, f := range ip.sources {
				if m.groupLeak(groups[f], trial) > rep.Budget+1e-9 {
					ok = false
					break
				}
			}
			if ok {
				il.MaxBits = l
				break
			}
		}
		rep.Indexes = append(rep.Indexes, il)
		if !math.IsInf(k, 1) && k <= LowCardinalityBits {
			reason := fmt.Sprintf("its input takes about %.0f values (%.1f bits): equal index values group rows by value, which frequency analysis can name", math.Exp2(k), k)
			if float64(ip.bits) >= k {
				reason += fmt.Sprintf("; with bits=%d, at least its %.1f bits, the index maps values one to one (a deterministic encryption of them)", ip.bits, k)
			}
			rep.Warnings = append(rep.Warnings, PlanWarning{Type: rep.Type, Index: ip.name, Column: ip.column, DomainBits: k, Bits: ip.bits, Reason: reason})
		}
	}
	return rep
}
