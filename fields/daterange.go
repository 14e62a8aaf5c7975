package fields

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/phicrypt/phicrypt/keys"
)

// This file holds date range searches by buckets. A blind index over a
// date keeps one bucket of it (normalize=year, yearmonth or date), so it
// answers "born in 1983" or "born in March 1980", never "born between".
// A range is turned into the buckets that cover it: the coarsest buckets
// that fit inside the range, and finer ones at its edges, so that
// 1980-03..1985-06 becomes the months March to December 1980, the years
// 1981 to 1984, and the months January to June 1985 (20 buckets, each
// looked up in its own index). When the finer index is missing, an edge
// takes the bucket that holds it, which is wider than the range: the
// post-filter (MatchDateRange) drops what lies outside.
//
// What equality of buckets leaks: a year index reveals which rows share a
// birth year, a month index which share a birth month, a date index which
// share a birth date; together they reveal no more than the date index
// alone, since its bucket determines the others, but the coarse indexes
// give their answer to anyone who reads the table, with fewer false
// positives to hide them. Birth years of a population are spread over
// about a hundred values, so a year index of n rows puts about n/100 rows
// in each bucket whatever its bits: its truncation hides little, and a
// reader who knows one patient's birth year learns which rows share it.
// A search also shows the database which buckets it asked for, so a log
// of queries reveals the range searched. Keep date indexes per tenant
// (the record's scope), and count them in the leakage of the columns they
// are compounded with (see SuggestIndexBits).

// DefaultMaxTerms is the number of terms a search may produce when its
// Query sets no limit: enough for a range of a few decades with month
// edges under two live index key versions.
const DefaultMaxTerms = 256

// ErrTooManyTerms means a search would produce more terms than its limit
// (DefaultMaxTerms, or Query.MaxTerms); the error is a *TermLimitError.
var ErrTooManyTerms = errors.New("fields: search would produce too many terms")

// ErrInvalidDateRange means a date range is malformed, reversed, or out
// of the years 1 to 9999. Its messages never quote the range.
var ErrInvalidDateRange = errors.New("fields: invalid date range")

// ErrNoDateIndex means a type has no date index (an index over one field
// whose normalize= chain holds year, yearmonth or date) over the field
// named.
var ErrNoDateIndex = errors.New("fields: no date index over the field")

// TermLimitError is a search that would produce more terms than its
// limit. It unwraps to ErrTooManyTerms.
type TermLimitError struct {
	// Terms is how many terms the search needed, counted until it went
	// over the limit (so at least Limit+1, possibly more); Limit is the
	// limit.
	Terms, Limit int
}

// Error gives the count and the limit.
func (e *TermLimitError) Error() string {
	return fmt.Sprintf("fields: search needs more than %d terms (counted %d): narrow it, or raise Query.MaxTerms", e.Limit, e.Terms)
}

// Unwrap returns ErrTooManyTerms.
func (e *TermLimitError) Unwrap() error { return ErrTooManyTerms }

// DateRange is a range of calendar dates, both ends included. Only the
// year, month and day of From and To count.
type DateRange struct {
	From, To time.Time
}

// ParseDateRange parses "A..B", where A and B are each a year (1980), a
// month (1980-03) or a date (1980-03-15): the range runs from the first
// day of A to the last day of B, so "1980-03..1985-06" is 1980-03-01 to
// 1985-06-30. A single A is the range of A alone ("1983" is the year
// 1983). Errors match ErrInvalidDateRange and do not quote the text.
func ParseDateRange(s string) (DateRange, error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "..")
	if !isRange {
		b = a
	}
	from, _, err := parsePartialDate(strings.TrimSpace(a))
	if err != nil {
		return DateRange{}, fmt.Errorf("%w: start: %v", ErrInvalidDateRange, err)
	}
	start, prec, err := parsePartialDate(strings.TrimSpace(b))
	if err != nil {
		return DateRange{}, fmt.Errorf("%w: end: %v", ErrInvalidDateRange, err)
	}
	r := DateRange{From: from, To: bucketEnd(start, prec)}
	return r, r.Validate()
}

// parsePartialDate parses a year, a month or a date, and returns its first
// day and its precision.
func parsePartialDate(s string) (time.Time, int, error) {
	for _, l := range []struct {
		layout string
		prec   int
	}{{"2006-01-02", precDay}, {"2006-01", precMonth}, {"2006", precYear}} {
		if len(s) != len(l.layout) {
			continue
		}
		if t, err := time.Parse(l.layout, s); err == nil {
			return t, l.prec, nil
		}
	}
	return time.Time{}, 0, errors.New("want YYYY, YYYY-MM or YYYY-MM-DD")
}

// Validate checks that the range runs forwards within the years 1 to
// 9999. Its errors match ErrInvalidDateRange.
func (r DateRange) Validate() error {
	from, to := dayOf(r.From), dayOf(r.To)
	switch {
	case from.Year() < 1 || to.Year() > 9999:
		return fmt.Errorf("%w: years must be 1 to 9999", ErrInvalidDateRange)
	case to.Before(from):
		return fmt.Errorf("%w: it ends before it starts", ErrInvalidDateRange)
	}
	return nil
}

// String writes the range as ParseDateRange reads it, day by day.
func (r DateRange) String() string {
	return dayOf(r.From).Format(time.DateOnly) + ".." + dayOf(r.To).Format(time.DateOnly)
}

// Contains reports whether the calendar date of t lies in the range.
func (r DateRange) Contains(t time.Time) bool {
	d := dayOf(t)
	return !d.Before(dayOf(r.From)) && !d.After(dayOf(r.To))
}

// dayOf returns the calendar date of t, at midnight UTC.
func dayOf(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// bucketEnd returns the last day of the bucket of precision prec that
// starts at day d.
func bucketEnd(d time.Time, prec int) time.Time {
	switch prec {
	case precYear:
		return time.Date(d.Year(), 12, 31, 0, 0, 0, 0, time.UTC)
	case precMonth:
		return time.Date(d.Year(), d.Month()+1, 0, 0, 0, 0, 0, time.UTC)
	}
	return d
}

// bucketStart returns the first day of the bucket of precision prec that
// holds day d.
func bucketStart(d time.Time, prec int) time.Time {
	switch prec {
	case precYear:
		return time.Date(d.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
	case precMonth:
		return time.Date(d.Year(), d.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return d
}

// dateBucket is one bucket of a range's cover: its first day and its
// precision.
type dateBucket struct {
	start time.Time
	prec  int
}

// coverRange returns the buckets that cover r with the precisions in
// have (indexed by precYear, precMonth, precDay): at each step, the
// coarsest bucket that starts there and ends inside the range; where none
// fits, the finest bucket available that holds the day, which may stick
// out of the range. It stops, returning false, once it has more than max
// buckets.
func coverRange(r DateRange, have [precDay + 1]bool, max int) ([]dateBucket, bool) {
	var out []dateBucket
	to := dayOf(r.To)
	for d := dayOf(r.From); !d.After(to); {
		if len(out) >= max {
			return out, false
		}
		b := dateBucket{prec: 0}
		for prec := precYear; prec <= precDay; prec++ {
			if have[prec] && bucketStart(d, prec).Equal(d) && !bucketEnd(d, prec).After(to) {
				b = dateBucket{start: d, prec: prec}
				break
			}
		}
		if b.prec == 0 {
			// An edge without an index fine enough: the finest bucket
			// that holds d (a month, or a year).
			for prec := precDay; prec >= precYear; prec-- {
				if have[prec] {
					b = dateBucket{start: bucketStart(d, prec), prec: prec}
					break
				}
			}
		}
		out = append(out, b)
		d = bucketEnd(b.start, b.prec).AddDate(0, 0, 1)
	}
	return out, true
}

// ColumnTerms are the values to look for in one blind index column: the
// row matches when the column holds one of them.
type ColumnTerms struct {
	// Index is the Go name of the BlindIndex field; Column its column.
	Index, Column string
	// Terms are the values, each bucket or value under every live index
	// key version.
	Terms []BlindIndex
}

// RangeTerms is what DateRangeSearch computed for a range: the indexes to
// search, one entry per index used, each with its buckets' terms. A row
// is a candidate when any one of them matches (OR).
type RangeTerms struct {
	// Field is the date field searched.
	Field string
	// Columns are the indexes used, coarsest first.
	Columns []ColumnTerms
	// Buckets is the number of buckets in the cover; Terms the number of
	// terms, Buckets times the live key versions of their indexes.
	Buckets, Terms int
}

// dateIndexes returns the date indexes over field of plan p, the first of
// each precision.
func dateIndexes(p *plan, field string) (idx [precDay + 1]*indexPlan, found bool) {
	for i := range p.indexes {
		ip := &p.indexes[i]
		if len(ip.sources) != 1 || p.fields[ip.sources[0]].name != field || ip.chains[0].prefix != 0 {
			continue
		}
		prec := map[string]int{"year": precYear, "yearmonth": precMonth, "date": precDay}[ip.chains[0].date]
		if prec != 0 && idx[prec] == nil {
			idx[prec], found = ip, true
		}
	}
	return idx, found
}

// DateRangeSearch returns the terms that find the records of template's
// type whose date field (the Go name of an encrypted time.Time or date
// string) lies in r, through the field's date indexes (indexes tagged
// of=field,normalize=year, yearmonth or date; one of each at most is
// used). The range is covered by buckets, the coarsest that fit inside it
// and finer ones at its edges (see the file's comment), each bucket
// searched in its index under every live index key version, as IndexTerms
// does. Only template's scope (or the indexes' scope fields) is read.
//
// maxTerms bounds the terms (DefaultMaxTerms when 0 or less); a wider
// search fails with a *TermLimitError before computing any MAC. A field
// without date indexes fails with ErrNoDateIndex.
//
// An index matches whole buckets, and truncated indexes match other
// buckets too: keep the candidates for which MatchDateRange is true.
func (c *Codec) DateRangeSearch(ctx context.Context, template any, field string, r DateRange, maxTerms int) (RangeTerms, error) {
	if err := r.Validate(); err != nil {
		return RangeTerms{}, err
	}
	if maxTerms <= 0 {
		maxTerms = DefaultMaxTerms
	}
	rv := reflect.ValueOf(template)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return RangeTerms{}, ErrUnsupported
	}
	rv = rv.Elem()
	p, err := c.plan(rv.Type())
	if err != nil {
		return RangeTerms{}, err
	}
	idx, found := dateIndexes(p, field)
	if !found {
		return RangeTerms{}, fmt.Errorf("%w: %v has none over %q", ErrNoDateIndex, rv.Type(), field)
	}
	recordScope, err := p.scope.read(rv)
	if err != nil {
		return RangeTerms{}, err
	}
	var have [precDay + 1]bool
	for prec := range idx {
		have[prec] = idx[prec] != nil
	}
	buckets, ok := coverRange(r, have, maxTerms)
	if !ok {
		return RangeTerms{}, &TermLimitError{Terms: maxTerms + 1, Limit: maxTerms}
	}
	// The live key versions of each index the cover uses: each bucket is
	// one term per version of its index.
	var ks [precDay + 1][]*keys.IndexKey
	var fetched [precDay + 1]bool
	terms := 0
	for _, b := range buckets {
		if !fetched[b.prec] {
			fetched[b.prec] = true
			ip := idx[b.prec]
			scope, err := p.indexScope(ip, rv, recordScope)
			if err != nil {
				return RangeTerms{}, err
			}
			if ks[b.prec], err = c.cfg.Keyring.AppendIndexKeys(ctx, nil, scope, p.table, ip.column); err != nil {
				return RangeTerms{}, err
			}
		}
		terms += len(ks[b.prec])
	}
	if terms > maxTerms {
		return RangeTerms{}, &TermLimitError{Terms: terms, Limit: maxTerms}
	}
	out := RangeTerms{Field: field, Buckets: len(buckets), Terms: terms}
	sc := c.getScratch()
	defer c.putScratch(sc)
	for prec := precYear; prec <= precDay; prec++ {
		ip := idx[prec]
		if ip == nil {
			continue
		}
		ct := ColumnTerms{Index: ip.name, Column: ip.column}
		for _, b := range buckets {
			if b.prec != prec {
				continue
			}
			msg, err := bucketInput(sc, ip, b)
			if err != nil {
				return RangeTerms{}, err
			}
			ct.Terms = append(ct.Terms, indexTerms(ks[prec], ip.params, sc.mac[:0], msg, ip.bits, ip.text)...)
		}
		if len(ct.Terms) > 0 {
			out.Columns = append(out.Columns, ct)
		}
	}
	return out, nil
}

// bucketInput returns the MAC input of bucket b in date index ip: the
// bucket's first day, as a date string, through the index's chain. The
// chain must give its last day the same text, or it is not a bucket of
// that precision (a chain like digits+date turns dates into nothing).
func bucketInput(sc *scratch, ip *indexPlan, b dateBucket) ([]byte, error) {
	tmp := sc.tmp()
	norm := func(d time.Time) []byte {
		tmp[0] = d.AppendFormat(tmp[0][:0], time.DateOnly)
		for _, n := range ip.chains[0].fns {
			tmp[1] = n(tmp[1][:0], tmp[0])
			tmp[0], tmp[1] = tmp[1], tmp[0]
		}
		return tmp[0]
	}
	first := norm(b.start)
	// The input is the length and the text, as indexInput writes it.
	msg := binary.BigEndian.AppendUint32(sc.buf[0][:0], uint32(len(first)))
	msg = append(msg, first...)
	sc.buf[0] = msg
	if len(first) == 0 || !bytes.Equal(msg[4:], norm(bucketEnd(b.start, b.prec))) {
		return nil, fmt.Errorf("%w: the normalize= chain of %s does not keep a date bucket", ErrNoDateIndex, ip.name)
	}
	return msg, nil
}

// MatchDateRange reports whether the opened record rec's date field lies
// in r: the post-filter of DateRangeSearch. The field's value is read as
// the indexes read it (a time.Time by its date in UTC; a date string by
// the date written). A partial date ("1983", "1980-03") matches when the
// whole of its year or month lies in the range; a NULL value, or text
// that is not a date, matches nothing.
func (c *Codec) MatchDateRange(rec any, field string, r DateRange) (bool, error) {
	if err := r.Validate(); err != nil {
		return false, err
	}
	rv := reflect.ValueOf(rec)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return false, ErrUnsupported
	}
	rv = rv.Elem()
	p, err := c.plan(rv.Type())
	if err != nil {
		return false, err
	}
	fi := -1
	for i := range p.fields {
		if p.fields[i].name == field {
			fi = i
		}
	}
	if fi < 0 {
		return false, fmt.Errorf("fields: %v has no encrypted field %q", rv.Type(), field)
	}
	vf := p.fields[fi].field(recordBase(rv))
	switch vf.fieldState() {
	case stateNull:
		return false, nil
	case stateScanned:
		return false, ErrNotOpened
	}
	text, err := vf.indexText(nil)
	if err != nil {
		return false, err
	}
	defer clear(text)
	day, prec, ok := readDate(text)
	if !ok {
		return false, nil
	}
	return r.Contains(day) && r.Contains(bucketEnd(day, prec)), nil
}

// readDate reads text as the date normalizers do, and returns its first
// day and precision.
func readDate(text []byte) (time.Time, int, bool) {
	s := strings.TrimSpace(string(text))
	for _, l := range dateLayouts {
		if t, err := time.Parse(l.layout, s); err == nil {
			return bucketStart(dayOf(t), l.prec), l.prec, true
		}
	}
	return time.Time{}, 0, false
}
