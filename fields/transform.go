package fields

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// This file holds the transforms of the normalize= grammar (last4,
// prefix:N, nysiis, year, yearmonth, date) and its per-source chains:
//
//	normalize=CHAIN            one chain, applied to every source
//	normalize=CHAIN|CHAIN|...  one chain per source, in the order of of=
//	CHAIN = NAME+NAME+...      normalizers applied left to right, or "-" for
//	                           none (an empty chain between bars is an error)
//	NAME  = trim | lower | fold | digits | alnum | nfc | collapse | last4 |
//	        nysiis | year | yearmonth | date | prefix:N
//
// prefix:N must end its chain.

// maxPrefix is the longest prefix:N.
const maxPrefix = 255

// normChain is one parsed normalizer chain.
type normChain struct {
	fns []normalizer
	// prefix is N of the chain's final prefix:N, or 0.
	prefix int
	// date names the chain's first date normalizer, or "".
	date string
	// names are the chain's normalizers as written ("prefix:3"), for the
	// planner and the index parameters bound into new index keys.
	names []string
}

// base returns the chain without its final prefix:N: the normalization
// that a prefix search's post-filter compares.
func (c normChain) base() []normalizer {
	if c.prefix > 0 {
		return c.fns[:len(c.fns)-1]
	}
	return c.fns
}

// transforms are the normalizers that reduce a value to a part of it or a
// code, kept apart from normalizers only for documentation.
var transforms = map[string]normalizer{
	// last4 keeps the last four decimal digits (as digits does); a value
	// with fewer than four digits normalizes to nothing (a NULL index).
	"last4": func(dst, s []byte) []byte {
		start := len(dst)
		dst = normalizers["digits"](dst, s)
		if len(dst)-start < 4 {
			return dst[:start]
		}
		copy(dst[start:], dst[len(dst)-4:])
		return dst[:start+4]
	},
	// nysiis is the NYSIIS phonetic code of the letters (phonetic.go).
	"nysiis": func(dst, s []byte) []byte { return appendNYSIIS(dst, s, true) },
	// year, yearmonth and date keep "2006", "2006-01" or "2006-01-02" of
	// a date (dateNormalizer).
	"year":      dateNormalizer(precYear),
	"yearmonth": dateNormalizer(precMonth),
	"date":      dateNormalizer(precDay),
}

func init() {
	for n, fn := range transforms {
		normalizers[n] = fn
	}
}

// Date precisions.
const (
	precYear = iota + 1
	precMonth
	precDay
)

// dateLayouts are the date texts that date normalizers read, with their
// precision: a time.Time's index text (RFC 3339, in UTC), and the ISO 8601
// and FHIR forms of dates, date-times and partial dates.
var dateLayouts = []struct {
	layout string
	prec   int
}{
	{time.RFC3339Nano, precDay},
	{"2006-01-02T15:04:05.999999999", precDay},
	{"2006-01-02", precDay},
	{"2006-01", precMonth},
	{"2006", precYear},
}

// dateNormalizer returns the normalizer that keeps a date to precision
// prec. Text that is not a date, or a partial date less precise than prec
// ("1993" under date), normalizes to nothing. A time.Time is indexed in
// UTC (its index text); a date string's calendar date is the one written,
// whatever its offset.
func dateNormalizer(prec int) normalizer {
	layout := [...]string{precYear: "2006", precMonth: "2006-01", precDay: "2006-01-02"}[prec]
	return func(dst, s []byte) []byte {
		text := string(bytes.TrimSpace(s))
		for _, l := range dateLayouts {
			if l.prec < prec {
				continue
			}
			if t, err := time.Parse(l.layout, text); err == nil {
				return t.AppendFormat(dst, layout)
			}
		}
		return dst
	}
}

// prefixNormalizer keeps the first n code points.
func prefixNormalizer(n int) normalizer {
	return func(dst, s []byte) []byte {
		i := 0
		for k := 0; k < n && i < len(s); k++ {
			_, size := utf8.DecodeRune(s[i:])
			i += size
		}
		return append(dst, s[:i]...)
	}
}

// parseChain parses one chain (NAME+NAME+..., or "-" for none).
func parseChain(spec string) (normChain, error) {
	var c normChain
	if spec == "-" {
		return c, nil
	}
	if spec == "" {
		return c, errors.New(`empty normalizer chain (write "-" for none)`)
	}
	for _, n := range strings.Split(spec, "+") {
		if c.prefix > 0 {
			return c, fmt.Errorf("prefix:%d must be the last normalizer of its chain", c.prefix)
		}
		if arg, ok := strings.CutPrefix(n, "prefix:"); ok {
			k, err := strconv.Atoi(arg)
			if err != nil || k < 1 || k > maxPrefix || arg != strconv.Itoa(k) {
				return c, fmt.Errorf("%q: want prefix:N with N from 1 to %d", n, maxPrefix)
			}
			c.prefix = k
			c.fns = append(c.fns, prefixNormalizer(k))
			c.names = append(c.names, n)
			continue
		}
		fn, ok := normalizers[n]
		if !ok {
			return c, fmt.Errorf("unknown normalizer %q (want %s, prefix:N)", n, normalizerNames())
		}
		if _, isDate := dateNormalizerNames[n]; isDate && c.date == "" {
			c.date = n
		}
		c.fns = append(c.fns, fn)
		c.names = append(c.names, n)
	}
	return c, nil
}

var dateNormalizerNames = map[string]bool{"year": true, "yearmonth": true, "date": true}

// parseNormalize parses a normalize= option for an index over sources
// sources: one chain for all of them, or one per source separated by |.
// An empty spec is one empty chain.
func parseNormalize(spec string, sources int) ([]normChain, error) {
	if spec == "" {
		return []normChain{{}}, nil
	}
	parts := strings.Split(spec, "|")
	if len(parts) != 1 && len(parts) != sources {
		return nil, fmt.Errorf("%d normalizer chains for %d sources: give one chain, or one per source in the order of of=", len(parts), sources)
	}
	out := make([]normChain, len(parts))
	for i, part := range parts {
		c, err := parseChain(part)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// dateSource reports whether date normalizers accept element type t:
// times, and strings or bytes holding a date.
func dateSource(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t == timeType || t.Kind() == reflect.String ||
		(t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8)
}

// setNormalize parses the index's normalize= option against its sources
// (already resolved in ip.sources) of struct type t.
func (ip *indexPlan) setNormalize(t reflect.Type, p *plan, spec string) error {
	chains, err := parseNormalize(spec, len(ip.sources))
	if err != nil {
		return err
	}
	for i, s := range ip.sources {
		c := chains[0]
		if len(chains) > 1 {
			c = chains[i]
		}
		if c.date == "" {
			continue
		}
		f := &p.fields[s]
		elem := reflect.New(t.FieldByIndex(f.path).Type).Interface().(valueField).elemType()
		if !dateSource(elem) {
			return fmt.Errorf("normalizer %s applies to dates (time.Time or a date string), not to %s's %v", c.date, f.name, elem)
		}
	}
	ip.chains = chains
	ip.normalizers = chains[0].fns
	return nil
}

// chain returns the normalizers of source i.
func (ip *indexPlan) chain(i int) []normalizer {
	if len(ip.chains) > 1 {
		return ip.chains[i].fns
	}
	return ip.normalizers
}
