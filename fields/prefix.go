package fields

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"unicode/utf8"
)

// ErrPrefixTooShort means a prefix search's query, once normalized, has
// fewer characters than the shortest prefix index over its field.
var ErrPrefixTooShort = errors.New("fields: prefix query shorter than the shortest prefix index")

// ErrNoPrefixIndex means a type has no prefix index (an index over one
// field whose normalize= chain ends with prefix:N) over the field named.
var ErrNoPrefixIndex = errors.New("fields: no prefix index over the field")

// PrefixTerms is what PrefixSearch chose for a query: the prefix index to
// search, and the values to look for in it.
type PrefixTerms struct {
	// Index is the Go name of the BlindIndex field chosen; Column its
	// column.
	Index, Column string
	// Length is the index's prefix length N, in code points.
	Length int
	// Terms are the values to search for, one per live index key
	// version, the active one first (as IndexTerms).
	Terms []BlindIndex
}

// PrefixSearch chooses, among the prefix indexes over field (the Go name
// of an encrypted field of template's type: indexes tagged
// of=field,normalize=...+prefix:N), the one to search for the text in
// template's field, and computes its terms as IndexTerms does. Each prefix
// length is its own index with its own key. The query is normalized by
// each index's chain without its prefix:N; the index whose N equals the
// query's length in code points wins, or else the longest one the query
// covers: with indexes of 2, 3 and 5, "Smi" searches the length-3 index
// and "Smith" or "Smithson" the length-5 one. A query shorter than every
// index fails with ErrPrefixTooShort, a field without prefix indexes with
// ErrNoPrefixIndex.
//
// A prefix index finds every row whose value starts with the index's N
// characters; keep those for which MatchPrefix(row, template,
// terms.Index) is true, which compares the whole query.
func (c *Codec) PrefixSearch(ctx context.Context, template any, field string) (PrefixTerms, error) {
	rv := reflect.ValueOf(template)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return PrefixTerms{}, ErrUnsupported
	}
	rv = rv.Elem()
	p, err := c.plan(rv.Type())
	if err != nil {
		return PrefixTerms{}, err
	}
	var best *indexPlan
	found, shortest := false, 0
	for i := range p.indexes {
		ip := &p.indexes[i]
		if len(ip.sources) != 1 || p.fields[ip.sources[0]].name != field || ip.chains[0].prefix == 0 {
			continue
		}
		n := ip.chains[0].prefix
		if !found || n < shortest {
			shortest = n
		}
		found = true
		q, ok, err := prefixText(p, ip, rv)
		if err != nil {
			return PrefixTerms{}, err
		}
		length := utf8.RuneCount(q)
		clear(q)
		if !ok || length < n {
			continue
		}
		switch b := best; {
		case b == nil,
			length == n && b.chains[0].prefix != length,
			b.chains[0].prefix != length && n > b.chains[0].prefix:
			best = ip
		}
	}
	switch {
	case !found:
		return PrefixTerms{}, fmt.Errorf("%w: %v has none over %q", ErrNoPrefixIndex, rv.Type(), field)
	case best == nil:
		return PrefixTerms{}, fmt.Errorf("%w (%d characters)", ErrPrefixTooShort, shortest)
	}
	terms, err := c.IndexTerms(ctx, template, best.name)
	if err != nil {
		return PrefixTerms{}, err
	}
	return PrefixTerms{Index: best.name, Column: best.column, Length: best.chains[0].prefix, Terms: terms}, nil
}

// MatchPrefix reports whether the opened record rec's source of prefix
// index index starts with template's: both normalized by the index's chain
// without its prefix:N. It is the post-filter of PrefixSearch, which
// removes the false positives of a truncated index and the rows that share
// only the index's first N characters with a longer query.
func (c *Codec) MatchPrefix(rec, template any, index string) (bool, error) {
	p, ip, rv, err := c.indexOf(rec, index)
	if err != nil {
		return false, err
	}
	_, _, tv, err := c.indexOf(template, index)
	if err != nil {
		return false, err
	}
	if tv.Type() != rv.Type() {
		return false, fmt.Errorf("fields: record and template are of different types")
	}
	if len(ip.sources) != 1 || ip.chains[0].prefix == 0 {
		return false, fmt.Errorf("%w: %s is not a prefix index", ErrNoPrefixIndex, index)
	}
	a, okA, err := prefixText(p, ip, rv)
	if err != nil {
		return false, err
	}
	defer clear(a)
	q, okQ, err := prefixText(p, ip, tv)
	if err != nil {
		return false, err
	}
	defer clear(q)
	return okA && okQ && bytes.HasPrefix(a, q), nil
}

// prefixText returns the text of prefix index ip's source in rv,
// normalized by the index's chain without its prefix:N, and false when
// the source is NULL or normalizes to nothing.
func prefixText(p *plan, ip *indexPlan, rv reflect.Value) ([]byte, bool, error) {
	vf := rv.FieldByIndex(p.fields[ip.sources[0]].path).Addr().Interface().(valueField)
	switch vf.fieldState() {
	case stateNull:
		return nil, false, nil
	case stateScanned:
		return nil, false, ErrNotOpened
	}
	text, err := vf.indexText(nil)
	if err != nil {
		return nil, false, err
	}
	var tmp []byte
	for _, n := range ip.chains[0].base() {
		tmp = n(tmp[:0], text)
		text, tmp = tmp, text
	}
	clear(tmp[:cap(tmp)]) // held plaintext
	return text, len(text) > 0, nil
}
