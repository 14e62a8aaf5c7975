package fields

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// ErrNoIndex means a query asks for a field or an index that the type has
// no usable blind index for: Query.EqualSet with a set field that no
// index covers, or no field set at all.
var ErrNoIndex = errors.New("fields: no blind index for the query")

// ErrUnsafeIdentifier means a column or table name that a query would
// write into SQL is not a plain identifier (ASCII letters, digits, _ and
// ., starting with a letter or _, at most 63 bytes). Names come from tags
// and are quoted anyway; one that needs more is refused rather than
// escaped.
var ErrUnsafeIdentifier = errors.New("fields: column name is not a plain SQL identifier")

// Query is a search on a record type: conditions on its blind indexes,
// joined by AND, over the plaintext of a template record (a pointer to a
// struct of the type, with its scope set and the fields searched for).
// Build it with NewQuery and its methods, which return the query for
// chaining; Codec.Search computes its terms. A Query is not safe for
// concurrent modification.
//
//	q := fields.NewQuery(&Patient{TenantID: t, Last: fields.New("smi")}).
//		Prefix("Last").
//		DateRange("BirthDate", born)
type Query struct {
	template any
	conds    []queryCond
	maxTerms int
	scopeCol *string
}

type condKind uint8

const (
	condEqual condKind = iota + 1
	condPrefix
	condRange
	condSet
)

type queryCond struct {
	kind condKind
	name string // index (equal) or field (prefix, range)
	rng  DateRange
}

// NewQuery returns an empty query on template's type.
func NewQuery(template any) *Query { return &Query{template: template} }

// Template returns the query's template.
func (q *Query) Template() any { return q.template }

// Equal adds the condition that blind index index (a Go name) holds the
// value of the template's sources: candidates by IndexTerms, confirmed by
// Match.
func (q *Query) Equal(index string) *Query {
	q.conds = append(q.conds, queryCond{kind: condEqual, name: index})
	return q
}

// SoundsLike adds the condition that index, a phonetic index
// (normalize=nysiis), holds the code of the template's source: Equal on
// that index, named for what it finds. The post-filter compares codes, so
// every name that sounds alike is kept.
func (q *Query) SoundsLike(index string) *Query { return q.Equal(index) }

// Prefix adds the condition that field (a Go name) starts with the
// template's value of it, through the field's prefix indexes: candidates
// by PrefixSearch, confirmed by MatchPrefix.
func (q *Query) Prefix(field string) *Query {
	q.conds = append(q.conds, queryCond{kind: condPrefix, name: field})
	return q
}

// DateRange adds the condition that the date field (a Go name) lies in r,
// through the field's date indexes: candidates by DateRangeSearch,
// confirmed by MatchDateRange.
func (q *Query) DateRange(field string, r DateRange) *Query {
	q.conds = append(q.conds, queryCond{kind: condRange, name: field, rng: r})
	return q
}

// EqualSet adds Equal on every blind index whose source fields are all set
// in the template, except prefix indexes: what an ORM's find by example
// does. Each set field must be covered by one of them, or Search fails
// with ErrNoIndex. An index matches as its normalizers compare: a
// template with a last name matches by a phonetic index too, but when an
// index of the whole name also applies, both must match.
func (q *Query) EqualSet() *Query {
	q.conds = append(q.conds, queryCond{kind: condSet})
	return q
}

// MaxTerms sets the most terms the query may produce (default
// DefaultMaxTerms); more fail with a *TermLimitError.
func (q *Query) MaxTerms(n int) *Query {
	q.maxTerms = n
	return q
}

// ScopeColumn names the column that holds the record's scope, for
// Search.Where: by default the snake_case name of the scope field (as
// default column names are made), and none when a PHIScope method gives
// the scope. "" adds no scope condition; Search.Match still checks the
// scope.
func (q *Query) ScopeColumn(column string) *Query {
	q.scopeCol = &column
	return q
}

// Search is a Query with its terms computed: the SQL condition for the
// database, and the post-filter for the rows it returns. It keeps the
// query's template, which Match compares with: leave the template as it
// is while the Search is in use. It is safe for concurrent use by Where
// and Match.
type Search struct {
	// Table is the record type's table.
	Table string
	// ScopeColumn is the column compared with Scope, the template's
	// scope; "" when no scope condition is written.
	ScopeColumn, Scope string
	// Conds are the conditions, joined by AND; a row meets a condition
	// when one of its columns holds one of its terms (OR).
	Conds []SearchCond
	// Terms is the number of terms over all conditions.
	Terms int

	c        *Codec
	template any
	typ      reflect.Type
}

// SearchCond is one condition of a Search.
type SearchCond struct {
	// Kind is "equal", "prefix" or "range".
	Kind string
	// Columns are the indexes searched: one for equal and prefix, one
	// per precision for a range.
	Columns []ColumnTerms

	match func(rec any) (bool, error)
}

// Search computes the terms of q, and checks every column name it would
// write into SQL (ErrUnsafeIdentifier). The template must have its scope
// set (ErrMissingRecordID). Errors are those of IndexTerms, PrefixSearch
// and DateRangeSearch, a *TermLimitError when the conditions together
// need more than the query's limit, and ErrNoIndex.
func (c *Codec) Search(ctx context.Context, q *Query) (*Search, error) {
	if q == nil {
		return nil, ErrUnsupported
	}
	rv := reflect.ValueOf(q.template)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return nil, ErrUnsupported
	}
	p, err := c.plan(rv.Elem().Type())
	if err != nil {
		return nil, err
	}
	scope, err := p.scope.read(rv.Elem())
	if err != nil {
		return nil, err
	}
	if scope == "" {
		return nil, fmt.Errorf("%w (%s)", ErrMissingRecordID, p.scope.name)
	}
	limit := q.maxTerms
	if limit <= 0 {
		limit = DefaultMaxTerms
	}
	s := &Search{Table: p.table, Scope: scope, c: c, template: q.template, typ: p.typ}
	switch {
	case q.scopeCol != nil:
		s.ScopeColumn = *q.scopeCol
	case p.scope.method == "":
		s.ScopeColumn = columnName(p.typ.FieldByIndex(p.scope.path))
	}
	if len(q.conds) == 0 {
		return nil, fmt.Errorf("%w: the query has no condition", ErrNoIndex)
	}
	conds, err := expandSet(p, rv.Elem(), q.conds)
	if err != nil {
		return nil, err
	}
	for _, qc := range conds {
		var sc SearchCond
		switch qc.kind {
		case condEqual:
			_, ip, _, err := c.indexOf(q.template, qc.name)
			if err != nil {
				return nil, err
			}
			terms, err := c.IndexTerms(ctx, q.template, qc.name)
			if err != nil {
				return nil, err
			}
			name := qc.name
			sc = SearchCond{Kind: "equal", Columns: []ColumnTerms{{Index: name, Column: ip.column, Terms: terms}},
				match: func(rec any) (bool, error) { return c.Match(rec, q.template, name) }}
		case condPrefix:
			pt, err := c.PrefixSearch(ctx, q.template, qc.name)
			if err != nil {
				return nil, err
			}
			sc = SearchCond{Kind: "prefix", Columns: []ColumnTerms{{Index: pt.Index, Column: pt.Column, Terms: pt.Terms}},
				match: func(rec any) (bool, error) { return c.MatchPrefix(rec, q.template, pt.Index) }}
		case condRange:
			rt, err := c.DateRangeSearch(ctx, q.template, qc.name, qc.rng, limit-s.Terms)
			if err != nil {
				var tl *TermLimitError
				if errors.As(err, &tl) {
					err = &TermLimitError{Terms: s.Terms + tl.Terms, Limit: limit}
				}
				return nil, err
			}
			field, rng := qc.name, qc.rng
			sc = SearchCond{Kind: "range", Columns: rt.Columns,
				match: func(rec any) (bool, error) { return c.MatchDateRange(rec, field, rng) }}
		}
		for _, ct := range sc.Columns {
			s.Terms += len(ct.Terms)
			if err := checkIdent(ct.Column); err != nil {
				return nil, err
			}
		}
		if s.Terms > limit {
			return nil, &TermLimitError{Terms: s.Terms, Limit: limit}
		}
		s.Conds = append(s.Conds, sc)
	}
	if s.ScopeColumn != "" {
		if err := checkIdent(s.ScopeColumn); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// expandSet replaces an EqualSet condition by Equal on the indexes it
// picks for template rv.
func expandSet(p *plan, rv reflect.Value, conds []queryCond) ([]queryCond, error) {
	var out []queryCond
	for _, qc := range conds {
		if qc.kind != condSet {
			out = append(out, qc)
			continue
		}
		base := recordBase(rv)
		set := map[int]bool{}
		for i := range p.fields {
			if p.fields[i].field(base).fieldState() != stateNull {
				set[i] = false // not yet covered
			}
		}
		if len(set) == 0 {
			return nil, fmt.Errorf("%w: the template of %v sets no encrypted field", ErrNoIndex, p.typ)
		}
	indexes:
		for i := range p.indexes {
			ip := &p.indexes[i]
			for _, ch := range ip.chains {
				if ch.prefix != 0 {
					continue indexes
				}
			}
			for _, src := range ip.sources {
				if _, ok := set[src]; !ok {
					continue indexes
				}
			}
			for _, src := range ip.sources {
				set[src] = true
			}
			out = append(out, queryCond{kind: condEqual, name: ip.name})
		}
		for i := range p.fields {
			if covered, ok := set[i]; ok && !covered {
				return nil, fmt.Errorf("%w: no blind index of %v has %s and only fields set in the template as sources", ErrNoIndex, p.typ, p.fields[i].name)
			}
		}
	}
	return out, nil
}

// Match reports whether the opened record rec (of the query's type) meets
// every condition of the search and has the template's scope: the
// post-filter that removes the false positives of truncated indexes, the
// rows that share only a prefix index's first characters with a longer
// query, and the rows of a range's edge buckets that lie outside it.
func (s *Search) Match(rec any) (bool, error) {
	rv := reflect.ValueOf(rec)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Type() != s.typ {
		return false, fmt.Errorf("fields: Search.Match takes a *%v", s.typ)
	}
	p, err := s.c.plan(s.typ)
	if err != nil {
		return false, err
	}
	if scope, err := p.scope.read(rv.Elem()); err != nil || scope != s.Scope {
		return false, err
	}
	for _, sc := range s.Conds {
		if ok, err := sc.match(rec); err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// SQLStyle is how Search.Where writes placeholders and identifiers.
type SQLStyle struct {
	// Dollar writes $1, $2, ... (PostgreSQL: pgx, lib/pq) instead of ?.
	Dollar bool
	// First is the number of the first $n placeholder (1 when 0), for a
	// condition that follows other arguments.
	First int
	// Backquote quotes identifiers as `name` (MySQL) instead of "name".
	Backquote bool
}

// Styles of Search.Where for common databases.
var (
	// Postgres: $n placeholders and "name" identifiers, for pgx and
	// database/sql with pgx's stdlib or lib/pq.
	Postgres = SQLStyle{Dollar: true}
	// SQLite: ? placeholders and "name" identifiers.
	SQLite = SQLStyle{}
	// MySQL: ? placeholders and `name` identifiers.
	MySQL = SQLStyle{Backquote: true}
)

// Where writes the search as a SQL condition for a WHERE clause, with its
// arguments in the order of the placeholders:
//
//	"tenant_id" = $1 AND "last_p3" IN ($2,$3) AND ("birth_year" IN ($4) OR "birth_ym" IN ($5,$6))
//
// The arguments are driver values ([]byte, or string for text indexes),
// so database/sql, pgx and GORM's Raw/Where take them as they are. The
// identifiers are quoted and were checked by Codec.Search. Run it with
// the table's columns, then Open the rows and keep those for which Match
// is true.
func (s *Search) Where(style SQLStyle) (string, []any, error) {
	var b strings.Builder
	var args []any
	n := style.First
	if n <= 0 {
		n = 1
	}
	ph := func() {
		if style.Dollar {
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		} else {
			b.WriteByte('?')
		}
		n++
	}
	ident := func(name string) error {
		if err := checkIdent(name); err != nil {
			return err
		}
		q := byte('"')
		if style.Backquote {
			q = '`'
		}
		b.WriteByte(q)
		b.WriteString(name)
		b.WriteByte(q)
		return nil
	}
	and := ""
	if s.ScopeColumn != "" {
		if err := ident(s.ScopeColumn); err != nil {
			return "", nil, err
		}
		b.WriteString(" = ")
		ph()
		args = append(args, s.Scope)
		and = " AND "
	}
	for _, sc := range s.Conds {
		b.WriteString(and)
		and = " AND "
		if len(sc.Columns) > 1 {
			b.WriteByte('(')
		}
		for i, ct := range sc.Columns {
			if i > 0 {
				b.WriteString(" OR ")
			}
			if err := ident(ct.Column); err != nil {
				return "", nil, err
			}
			b.WriteString(" IN (")
			for j, t := range ct.Terms {
				if j > 0 {
					b.WriteByte(',')
				}
				ph()
				v, err := t.Value()
				if err != nil {
					return "", nil, err
				}
				args = append(args, v)
			}
			b.WriteByte(')')
		}
		if len(sc.Columns) > 1 {
			b.WriteByte(')')
		}
	}
	return b.String(), args, nil
}

// checkIdent refuses a name that is not a plain identifier.
func checkIdent(name string) error {
	ok := name != "" && len(name) <= 63
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' ||
			i > 0 && ('0' <= c && c <= '9' || c == '.')
	}
	if !ok {
		return fmt.Errorf("%w (%d bytes)", ErrUnsafeIdentifier, len(name))
	}
	return nil
}
