package fhir

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScannerAccepts(t *testing.T) {
	for _, s := range []string{
		`{}`, `[]`, `0`, `-0.5e+10`, `"a"`, `true`, `null`, " \t\r\n{ } ",
		`{"a":[1,2,{"b":null}],"c":"\u00e9\"\\\/\b\f\n\r\t","d":-1.25E-3}`,
		`"\ud83d\ude00"`, `"\ud800"`, `"é😀"`,
		`{"a":1,"\u0061b":2}`,
	} {
		var tr tree
		assert.NoError(t, tr.parse([]byte(s)), s)
		assert.True(t, json.Valid([]byte(s)), s)
	}
}

func TestScannerRefuses(t *testing.T) {
	for _, tc := range []struct{ in, reason string }{
		{``, "unexpected end of input"},
		{`{`, "expected a member name"},
		{`{"a"}`, "expected ':'"},
		{`{"a":1,}`, "expected a member name"},
		{`[1,]`, "expected a value"},
		{`[1 2]`, "expected ',' or ']'"},
		{`{"a":1 "b":2}`, "expected ',' or '}'"},
		{`01`, "data after the top-level value"},
		{`1.`, "no digit after the decimal point"},
		{`1e`, "no digit in the exponent"},
		{`-`, "invalid number"},
		{`+1`, "expected a value"},
		{`.5`, "expected a value"},
		{`tru`, "invalid literal"},
		{`nul`, "invalid literal"},
		{`"a`, "unexpected end of input in a string"},
		{"\"a\tb\"", "control character"},
		{`"\x"`, "invalid escape"},
		{`"\u12g4"`, `invalid \u escape`},
		{"\"\xff\"", "invalid UTF-8"},
		{"\"\xed\xa0\x80\"", "invalid UTF-8"}, // an encoded surrogate
		{`{"a":1,"a":2}`, "duplicate member name"},
		{`{"a":1,"\u0061":2}`, "duplicate member name"},
		{`{} {}`, "data after the top-level value"},
		{strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), "nesting deeper"},
	} {
		var tr tree
		err := tr.parse([]byte(tc.in))
		require.ErrorIs(t, err, ErrSyntax, tc.in)
		var se *SyntaxError
		require.ErrorAs(t, err, &se)
		assert.Contains(t, se.Reason, tc.reason, tc.in)
	}
}

func TestScannerWideObject(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{`)
	for i := range 5000 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k`)
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(`_`)
		b.WriteString(strings.Repeat("y", i/182))
		b.WriteString(`":1`)
	}
	b.WriteString(`}`)
	var tr tree
	require.NoError(t, tr.parse([]byte(b.String())), "5,000 distinct keys")
	dup := b.String()[:b.Len()-1] + `,"ka_":2}`
	assert.ErrorIs(t, tr.parse([]byte(dup)), ErrSyntax, "a duplicate among many keys")
}

// FuzzScanner checks the scanner against encoding/json: whatever it
// accepts is valid JSON, and it refuses what encoding/json accepts only
// for a duplicate key, excessive depth or invalid UTF-8 (which
// encoding/json replaces with U+FFFD; RFC 8259 requires UTF-8).
func FuzzScanner(f *testing.F) {
	for _, s := range []string{`{"a":[1,"x",{"b":null}]}`, `"\ud800"`, `{"a":1,"a":2}`, `[1e5,-0.0]`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var tr tree
		err := tr.parse(b)
		if err == nil {
			if !json.Valid(b) {
				t.Fatalf("accepted invalid JSON")
			}
			for i, n := range tr.nodes {
				if n.end <= n.start || int(n.end) > len(b) || (i > 0 && n.parent == none) {
					t.Fatalf("node %d has a bad span or parent", i)
				}
			}
			return
		}
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Fatalf("untyped error %v", err)
		}
		if json.Valid(b) && se.Reason != "duplicate member name" && se.Reason != "invalid UTF-8 in a string" &&
			!strings.Contains(se.Reason, "nesting deeper") {
			t.Fatalf("refused valid JSON: %v", err)
		}
	})
}

// selected returns the paths (relative to the root) that path selects in doc.
func selected(t *testing.T, doc, path string) []string {
	t.Helper()
	var tr tree
	require.NoError(t, tr.parse([]byte(doc)))
	p, err := ParsePath(path)
	require.NoError(t, err)
	ev := evaluator{t: &tr}
	var out []string
	for _, n := range ev.selectPath(nil, 0, p.steps) {
		out = append(out, string(tr.appendPath(nil, 0, n, false)))
	}
	return out
}

func TestEvaluate(t *testing.T) {
	const patient = `{
	  "resourceType": "Patient",
	  "identifier": [
	    {"type": {"coding": [{"code": "MR"}]}, "value": "m1"},
	    {"type": {"coding": [{"system": "x", "code": "XX"}, {"code": "SS"}]}, "system": "http://hl7.org/fhir/sid/us-ssn", "value": "s1"},
	    {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "s2"},
	    {"type": {"text": "no coding"}, "value": "other"}
	  ],
	  "name": [{"family": "F1", "given": ["G1", "G2"]}, {"given": ["G3"]}],
	  "deceasedDateTime": "2020-01-01", "valueSomething": 1, "deceasedlower": 2, "deceased": 3,
	  "extension": [
	    {"url": "u1", "valueString": "v1"},
	    {"url": "u2", "valueAddress": {"city": "C"}},
	    {"url": "u1", "extension": [{"url": "lat", "valueDecimal": 1.5}]}
	  ],
	  "a.b": {"c": "weird"},
	  "\u0074ext": {"div": "escaped key"}
	}`
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"identifier.value", []string{"identifier[0].value", "identifier[1].value", "identifier[2].value", "identifier[3].value"}},
		{"identifier.where(type.coding.code = 'SS').value", []string{"identifier[1].value"}},
		{"identifier.where(type.coding.code = 'SS' or system = 'http://hl7.org/fhir/sid/us-ssn').value", []string{"identifier[1].value", "identifier[2].value"}},
		{"identifier.where(type.coding.code = 'SS' and system = 'nope').value", nil},
		{"identifier.where(type.coding.where(system = 'x').code = 'XX').value", []string{"identifier[1].value"}},
		{"identifier.where(type.coding.where(system = 'x').code = 'SS').value", nil},
		{"Patient.name.given", []string{"name[0].given[0]", "name[0].given[1]", "name[1].given[0]"}},
		{"name.given[2]", []string{"name[1].given[0]"}},
		{"name[1].given", []string{"name[1].given[0]"}},
		{"name[5].given", nil},
		{"name", []string{"name[0]", "name[1]"}},
		{"deceased[x]", []string{"deceasedDateTime"}},
		{"value[x]", []string{"valueSomething"}},
		{"extension('u1').value[x]", []string{"extension[0].valueString"}},
		{"extension.where(url = 'u2').valueAddress", []string{"extension[1].valueAddress"}},
		{"extension('u2').value[x].city", []string{"extension[1].valueAddress.city"}},
		{"extension('u1').extension('lat').value[x]", []string{"extension[2].extension[0].valueDecimal"}},
		{"extension('nope').value[x]", nil},
		{"text.div", []string{"text.div"}},
		{"nothing.here", nil},
		{"name.family.given", nil},
		{"identifier.value.where(x = 'y')", nil},
	} {
		assert.Equal(t, tc.want, selected(t, patient, tc.path), tc.path)
	}
	// Paths of members whose names are not identifiers are quoted, so no
	// two locations share a path.
	var tr tree
	require.NoError(t, tr.parse([]byte(patient)))
	ab := tr.member(tr.member(0, "a.b"), "c")
	assert.Equal(t, `["a.b"].c`, string(tr.appendPath(nil, 0, ab, false)))
}
