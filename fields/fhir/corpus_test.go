package fhir_test

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields/fhir"
)

// TestCorpus encrypts every test document (the Synthea bundles, the 1,144
// bulk Patients, the 10-patient bulk Patients, Conditions and Encounters,
// and the HL7 examples) with each envelope form, and checks against the
// independent walker (walker_test.go) that
//
//   - exactly the walker's PHI locations hold ciphertexts, and every other
//     element is unchanged (key order and bytes included);
//   - no PHI value shows anywhere in the output, outside ciphertexts,
//     more often than it shows in non-PHI elements of the input (dates of
//     birth recur as clinical dates); identifying values (names, SSNs,
//     phone numbers, address lines) show nowhere at all;
//   - decryption gives back the input byte for byte, non-ASCII names
//     included.
func TestCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("the corpus takes a few seconds")
	}
	ctx := context.Background()
	v := newEnv(t, nil)
	docs := corpus(t)
	names := slicesSorted(docs)
	v.forms(t, func(t *testing.T, e *fhir.Encryptor) {
		var stats corpusStats
		for _, name := range names {
			doc := docs[name]
			out, err := e.Encrypt(ctx, doc)
			require.NoError(t, err, name)
			stats.add(t, name, doc, out)
			back, err := e.Decrypt(ctx, out)
			require.NoError(t, err, name)
			if !bytes.Equal(doc, back) {
				t.Fatalf("%s: decryption does not give back the input", name)
			}
		}
		t.Logf("%d documents, %d resources, %d values encrypted, %d PHI values checked (%d identifying, %d non-ASCII)",
			len(names), stats.resources, stats.encrypted, stats.values, stats.identifying, stats.nonASCII)
		assert.GreaterOrEqual(t, stats.resources, 1144+1783+18+4*200, "every resource was seen")
		assert.Positive(t, stats.nonASCII, "non-ASCII PHI was checked")
	})
}

func slicesSorted(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type corpusStats struct {
	resources, encrypted, values, identifying, nonASCII int
}

// add checks one encrypted document.
func (s *corpusStats) add(t *testing.T, name string, doc, out []byte) {
	in, enc := parse(t, doc), parse(t, out)
	locs := phiLocations(in)
	s.resources += countResources(in)

	// Structure: ciphertexts exactly at the PHI locations, the rest equal.
	c := &comparer{t: t, name: name, locs: locs}
	c.compare(in, enc, "")
	assert.Equal(t, len(locs), c.armored, "%s: one ciphertext per PHI location", name)
	s.encrypted += c.armored

	// Leaks: no PHI value outside ciphertexts, beyond its non-PHI uses.
	ids := resourceIDs(in)
	outLeaves := leaves(enc, nil)
	residual := leaves(in, locs)
	for _, val := range phiValues(in, locs) {
		if val == "" || ids[val] {
			continue // a resource id (Synthea's MRNs are) is public by design
		}
		s.values++
		if !utf8.ValidString(val) || hasNonASCII(val) {
			s.nonASCII++
		}
		got, allowed := countContaining(outLeaves, val), countContaining(residual, val)
		if got > allowed {
			t.Errorf("%s: a PHI value shows %d times in the output, %d in non-PHI input elements", name, got, allowed)
		}
	}
	for _, val := range identifyingValues(in, locs) {
		if ids[val] {
			continue
		}
		s.identifying++
		if n := countContaining(outLeaves, val); n > 0 {
			t.Errorf("%s: an identifying value shows %d times outside ciphertexts (location %s)", name, n, whereContains(enc, val))
		}
	}
}

func hasNonASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}

// comparer walks the input and the encrypted document together.
type comparer struct {
	t       *testing.T
	name    string
	locs    map[string]bool
	armored int
}

func isArmored(v any) bool {
	s, ok := v.(string)
	return ok && strings.HasPrefix(s, envelope.ArmorPrefix)
}

func isIndexExt(v any) bool {
	o, ok := v.(obj)
	return ok && o["url"] == fhir.IndexExtensionURL
}

func (c *comparer) compare(in, out any, path string) {
	if c.locs[path] {
		if !isArmored(out) {
			c.t.Errorf("%s: %s is not encrypted", c.name, path)
		}
		c.armored++
		return
	}
	switch in := in.(type) {
	case obj:
		o, ok := out.(obj)
		if !ok {
			c.t.Errorf("%s: %s changed type", c.name, path)
			return
		}
		for k, x := range o {
			if _, had := in[k]; !had {
				if k == "extension" && isIndexOnly(x) {
					continue
				}
				c.t.Errorf("%s: %s.%s was added", c.name, path, k)
			}
		}
		for k, x := range in {
			y, ok := o[k]
			if !ok {
				c.t.Errorf("%s: %s.%s was removed", c.name, path, k)
				continue
			}
			c.compare(x, y, join(path, k))
		}
	case []any:
		o, ok := out.([]any)
		if !ok {
			c.t.Errorf("%s: %s changed type", c.name, path)
			return
		}
		if len(o) == len(in)+1 && isIndexExt(o[len(in)]) {
			o = o[:len(in)]
		}
		if len(o) != len(in) {
			c.t.Errorf("%s: %s changed length", c.name, path)
			return
		}
		for i := range in {
			c.compare(in[i], o[i], idx(path, i))
		}
	default:
		if isArmored(out) {
			c.t.Errorf("%s: %s is encrypted but not PHI", c.name, path)
			c.armored++
			return
		}
		if in != out {
			c.t.Errorf("%s: %s changed", c.name, path)
		}
	}
}

func isIndexOnly(v any) bool {
	a, ok := v.([]any)
	return ok && len(a) == 1 && isIndexExt(a[0])
}

// leaves returns the text of every string and number of v outside the
// locations skip, ciphertexts and index extensions.
func leaves(v any, skip map[string]bool) []string {
	var out []string
	var walk func(v any, path string)
	walk = func(v any, path string) {
		if skip[path] || isIndexExt(v) {
			return
		}
		switch v := v.(type) {
		case obj:
			for k, x := range v {
				walk(x, join(path, k))
			}
		case []any:
			for i, x := range v {
				walk(x, idx(path, i))
			}
		case string:
			if !strings.HasPrefix(v, envelope.ArmorPrefix) {
				out = append(out, v)
			}
		case json.Number:
			out = append(out, v.String())
		}
	}
	walk(v, "")
	return out
}

func countContaining(leaves []string, val string) int {
	n := 0
	for _, l := range leaves {
		if strings.Contains(l, val) {
			n++
		}
	}
	return n
}

// whereContains names a location of the output holding val, for the
// failure message (the location, not the value).
func whereContains(v any, val string) string {
	found := ""
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch x := v.(type) {
		case obj:
			for k, y := range x {
				walk(y, join(path, k))
			}
		case []any:
			for i, y := range x {
				walk(y, idx(path, i))
			}
		case string:
			if found == "" && strings.Contains(x, val) {
				found = path
			}
		}
	}
	walk(v, "")
	return found
}

var datelike = regexp.MustCompile(`^\d{4}(-\d{2}(-\d{2})?)?(T.*)?$`)

// identifyingValues returns the PHI values that identify a person on their
// own: names, identifiers, phone numbers, address lines, cities and postal
// codes, and the mother's maiden name, at least 5 characters long (so
// "Jim" and "Vic" are left to the residual count). They must show nowhere
// outside ciphertexts.
func identifyingValues(doc any, locs map[string]bool) []string {
	keys := []string{"family", "given", "value", "line", "city", "postalCode", "valueString"}
	var out []string
	for loc := range locs {
		last := loc[strings.LastIndexAny(loc, ".")+1:]
		if i := strings.IndexByte(last, '['); i >= 0 {
			last = last[:i]
		}
		if !slices.Contains(keys, last) {
			continue
		}
		if s, ok := lookup(doc, loc).(string); ok && len(s) >= 5 && !datelike.MatchString(s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

var pathPart = regexp.MustCompile(`([^.\[\]]+)|\[(\d+)\]`)

// lookup returns the value at a location.
func lookup(v any, loc string) any {
	for _, m := range pathPart.FindAllStringSubmatch(loc, -1) {
		switch x := v.(type) {
		case obj:
			v = x[m[1]]
		case []any:
			i := 0
			for _, c := range m[2] {
				i = i*10 + int(c-'0')
			}
			if i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// resourceIDs returns the ids of every resource of a document.
func resourceIDs(v any) map[string]bool {
	ids := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case obj:
			if _, ok := x["resourceType"]; ok {
				if id, ok := x["id"].(string); ok {
					ids[id] = true
				}
			}
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(v)
	return ids
}

func countResources(v any) int {
	n := 0
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case obj:
			if _, ok := x["resourceType"].(string); ok {
				n++
			}
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(v)
	return n
}

// TestNonASCII checks HL7's example with accented contact names by hand.
func TestNonASCII(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	doc := readFile(t, testdata+"fhir-hl7-examples/Patient-example.json")
	require.Contains(t, string(doc), "Bénédicte")
	v.forms(t, func(t *testing.T, e *fhir.Encryptor) {
		out, err := e.Encrypt(ctx, doc)
		require.NoError(t, err)
		for _, s := range []string{"Bénédicte", "du Marché", "Chalmers", "(03) 5555 6473", "1974-12-25T14:35:45"} {
			assert.NotContains(t, string(out), s)
		}
		assert.True(t, utf8.Valid(out) && json.Valid(out))
		back, err := e.Decrypt(ctx, out)
		require.NoError(t, err)
		assert.Equal(t, string(doc), string(back))
	})
}
