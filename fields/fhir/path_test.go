package fhir_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields/fhir"
)

func TestParsePathValid(t *testing.T) {
	for _, tc := range []struct{ in, canonical, typ string }{
		{"name.family", "name.family", ""},
		{"Patient.name.given", "Patient.name.given", "Patient"},
		{"birthDate", "birthDate", ""},
		{"deceased[x]", "deceased[x]", ""},
		{"Observation.value[x]", "Observation.value[x]", "Observation"},
		{"name[0].given[1]", "name[0].given[1]", ""},
		{"identifier.where(type.coding.code='SS').value", "identifier.where(type.coding.code = 'SS').value", ""},
		{"identifier.where( system = 'http://hl7.org/fhir/sid/us-ssn' or type.coding.code = 'SS' ).value",
			"identifier.where(system = 'http://hl7.org/fhir/sid/us-ssn' or type.coding.code = 'SS').value", ""},
		{"identifier.where(use='official' and type.coding.code='MR' or system='x').value",
			"identifier.where(use = 'official' and type.coding.code = 'MR' or system = 'x').value", ""},
		{"extension.where(url='http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName').valueString",
			"extension.where(url = 'http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName').valueString", ""},
		{"extension('http://hl7.org/fhir/StructureDefinition/patient-birthPlace').value[x]",
			"extension('http://hl7.org/fhir/StructureDefinition/patient-birthPlace').value[x]", ""},
		{"address.extension('http://hl7.org/fhir/StructureDefinition/geolocation').extension('latitude').valueDecimal",
			"address.extension('http://hl7.org/fhir/StructureDefinition/geolocation').extension('latitude').valueDecimal", ""},
		{"where(code.coding.code = '56799-0').value[x]", "where(code.coding.code = '56799-0').value[x]", ""},
		{"component.where(code.coding.where(system='http://loinc.org').code='8480-6').value[x]",
			"component.where(code.coding.where(system = 'http://loinc.org').code = '8480-6').value[x]", ""},
		{`name.where(family = 'O\'Hara\\ \u00e9').given`, `name.where(family = 'O\'Hara\\ é').given`, ""},
		{"contact.name", "contact.name", ""},
		{" text . div ", "text.div", ""},
		{"extension", "extension", ""}, // the element, not the function
		{"where", "where", ""},
	} {
		p, err := fhir.ParsePath(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.canonical, p.String(), tc.in)
		assert.Equal(t, tc.typ, p.ResourceType(), tc.in)
		again, err := fhir.ParsePath(p.String())
		require.NoError(t, err, "the canonical form parses: %s", tc.in)
		assert.Equal(t, p, again, "the canonical form is the same path: %s", tc.in)
	}
}

func TestParsePathInvalid(t *testing.T) {
	for _, tc := range []struct {
		in     string
		offset int
		reason string
	}{
		{"", 0, "expected an element name, found end of path"},
		{"Patient", 7, "expected '.' after the resource type"},
		{"Patient.", 8, "expected an element name"},
		{"name..family", 5, "expected an element name, found '.'"},
		{"name.", 5, "expected an element name, found end of path"},
		{".name", 0, "expected an element name, found '.'"},
		{"name.Family", 5, "lower-case"},
		{"Patient.Patient.name", 8, "lower-case"},
		{"_birthDate", 0, "encrypted with their primitive"},
		{"name._family", 5, "names start with a letter"},
		{"name[", 5, "expected an index, found end of path"},
		{"name[x", 6, "expected ']', found end of path"},
		{"name[y]", 5, "expected an index, found name"},
		{"name[-1]", 5, "unexpected character"},
		{"name[01]", 5, "leading zeros"},
		{"name[99999999999]", 5, "below"},
		{"name[0", 6, "expected ']'"},
		{"name[0]x", 7, "unexpected name"},
		{"[0]", 0, "expected an element name, found '['"},
		{"name family", 5, "unexpected name"},
		{"name.first()", 5, "unsupported function first()"},
		{"name.exists()", 5, "unsupported function exists()"},
		{"identifier.where(type.coding.code != 'SS').value", 34, "only '=' comparisons"},
		{"identifier.where(type.coding.code = 'SS'.value", 40, "expected ')'"},
		{"identifier.where(type.coding.code = 'SS').value)", 47, "unexpected ')'"},
		{"identifier.where(type.coding.code).value", 33, "expected '=' and a string"},
		{"identifier.where(type.coding.code = SS).value", 36, "expected a string literal, found name"},
		{"identifier.where().value", 17, "expected an element name, found ')'"},
		{"identifier.where(code = 'x' and).value", 31, "expected an element name, found ')'"},
		{"identifier.where(code = 'SS", 24, "unterminated string"},
		{`identifier.where(code = 'a\qb')`, 26, "invalid escape"},
		{`identifier.where(code = '\u12')`, 25, `invalid \u escape`},
		{"identifier.where(Patient.code = 'x')", 17, "lower-case"},
		{"extension()", 10, "expected the extension's url as a string, found ')'"},
		{"extension('a'", 13, "expected ')'"},
		{"extension(url)", 10, "expected the extension's url as a string, found name"},
		{"name.given#", 10, "unexpected character"},
		{"name.gïven", 6, "unexpected character"},
		{"name.where(a = 'x').where(b.where(c.where(d.where(e.where(f.where(g.where(h.where(i.where(j='1')='1')='1')='1')='1')='1')='1')='1')='1')", 0, "nested deeper"},
		{strings.Repeat("a.", fhir.MaxPathLength), 0, "longer than"},
	} {
		_, err := fhir.ParsePath(tc.in)
		require.ErrorIs(t, err, fhir.ErrInvalidPath, tc.in)
		var pe *fhir.PathError
		require.True(t, errors.As(err, &pe), tc.in)
		if !strings.Contains(tc.reason, "nested") && !strings.Contains(tc.reason, "longer") {
			assert.Equal(t, tc.offset, pe.Offset, "offset of %q (%v)", tc.in, err)
		}
		assert.Contains(t, pe.Reason, tc.reason, tc.in)
		assert.Contains(t, err.Error(), "fhir: invalid path")
	}
}

func TestProfileErrors(t *testing.T) {
	for _, tc := range []struct {
		p      fhir.Profile
		reason string
	}{
		{fhir.Profile{Resources: map[string][]string{"Patient": {"id"}}}, "never encrypted"},
		{fhir.Profile{Resources: map[string][]string{"Patient": {"resourceType"}}}, "never encrypted"},
		{fhir.Profile{Resources: map[string][]string{"Patient": {"Observation.value[x]"}}}, "another resource type"},
		{fhir.Profile{Resources: map[string][]string{"*": {"Patient.name"}}}, "cannot start with a resource type"},
		{fhir.Profile{Resources: map[string][]string{"patient": {"name"}}}, "not a resource type"},
		{fhir.Profile{Resources: map[string][]string{"Patient": {"name..x"}}}, "expected an element name"},
	} {
		err := tc.p.Validate()
		require.ErrorIs(t, err, fhir.ErrInvalidPath)
		var pe *fhir.PathError
		require.ErrorAs(t, err, &pe)
		assert.Contains(t, pe.Reason, tc.reason)
		assert.NotEmpty(t, pe.Resource, "the error names the profile's resource type")
	}
	assert.NoError(t, fhir.USCore().Validate())
}

func TestParseProfile(t *testing.T) {
	p, err := fhir.ParseProfile([]byte(`{"name": "clinic", "resources": {"Patient": ["name.family", "birthDate"], "*": ["text.div"]}}`))
	require.NoError(t, err)
	assert.Equal(t, "clinic", p.Name)
	assert.Equal(t, []string{"name.family", "birthDate"}, p.Resources["Patient"])
	_, err = fhir.ParseProfile([]byte(`{"name": "x", "resource": {}}`))
	assert.ErrorContains(t, err, "unknown field", "misspelt keys are refused")
	_, err = fhir.ParseProfile([]byte(`{"resources": {"Patient": ["name[x"]}}`))
	assert.ErrorIs(t, err, fhir.ErrInvalidPath)
	_, err = fhir.ParseProfile([]byte(`{"resources": {}} {}`))
	assert.ErrorContains(t, err, "after the JSON value")
	_, err = fhir.ParseProfile([]byte(`{"resources": {"Patient": ["birthDate"], "patient": []}}`))
	assert.ErrorContains(t, err, "duplicate member", "a second Patient list would silently replace the first")

	m := fhir.Merge("m", fhir.USCorePatient(), &fhir.Profile{Resources: map[string][]string{"Patient": {"birthDate", "gender"}}})
	assert.Equal(t, 1, countOf(m.Resources["Patient"], "birthDate"), "no duplicates")
	assert.Contains(t, m.Resources["Patient"], "gender")
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// FuzzParsePath: no panic; a path that parses has a canonical form that
// parses to the same path and prints the same; errors are *PathError.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"Patient.name.family", "name[0].given[1]", "deceased[x]",
		"identifier.where(type.coding.code = 'SS' or system = 'x').value",
		"extension('http://hl7.org/fhir/StructureDefinition/patient-birthPlace').value[x]",
		`name.where(family = 'O\'Hara\u00e9').given`, "where(code.coding.code='56799-0').value[x]",
		"name..family", "name[", "a.where(b.where(c='1')='2')", "'", "[x]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := fhir.ParsePath(s)
		if err != nil {
			var pe *fhir.PathError
			if !errors.As(err, &pe) || !errors.Is(err, fhir.ErrInvalidPath) {
				t.Fatalf("untyped error %v", err)
			}
			if pe.Offset < 0 || pe.Offset > len(s) {
				t.Fatalf("offset %d outside the path", pe.Offset)
			}
			return
		}
		c := p.String()
		if !utf8.ValidString(c) {
			t.Fatalf("canonical form is not UTF-8")
		}
		q, err := fhir.ParsePath(c)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", c, s, err)
		}
		if q.String() != c {
			t.Fatalf("canonical form is not stable: %q then %q", c, q.String())
		}
	})
}
