package fhir_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields/fhir"
)

// harborFixture is a hand-written Bundle with an instance of every kind of
// identifier the Safe Harbor rules select, for a patient of 89 on
// harborAsOf.
const harborFixture = "testdata/safeharbor/every-identifier.json"

// harborAsOf is the reference date of the tests' ages.
const harborAsOf = "2026-06-01"

func harborProfile() *fhir.Profile {
	p := fhir.SafeHarbor()
	p.SafeHarbor.AsOf = harborAsOf
	return p
}

func harborEnv(t testing.TB, p *fhir.Profile) *env {
	return newEnv(t, func(c *fhir.Config) { c.Profile = p })
}

// harborCorpus is the fixture, the Synthea Bundles and the HL7 examples,
// and with all, the bulk NDJSON exports line by line.
func harborCorpus(t testing.TB, all bool) map[string][]byte {
	docs := map[string][]byte{harborFixture: readFile(t, harborFixture)}
	if all {
		for name, doc := range corpus(t) {
			docs[name] = doc
		}
		return docs
	}
	for _, glob := range []string{"fhir-synthea/bundles/*.json", "fhir-hl7-examples/*-*.json"} {
		names, err := filepath.Glob(testdata + glob)
		require.NoError(t, err)
		for _, n := range names {
			docs[strings.TrimPrefix(n, testdata)] = readFile(t, n)
		}
	}
	return docs
}

// agedOrUnknown reports whether a plaintext document's dates must keep no
// year: its patient is 90 or more on harborAsOf (counting to the date of
// death when later), or it holds no Patient with a birth date. It is
// computed here with time-free string arithmetic, apart from the package.
func agedOrUnknown(doc any) bool {
	p := findPatient(doc)
	if p == nil {
		return true
	}
	birth, ok := p["birthDate"].(string)
	if !ok {
		return true
	}
	end := harborAsOf
	if d, ok := p["deceasedDateTime"].(string); ok && d[:10] > end {
		end = d[:10]
	}
	for len(birth) < 10 {
		birth += map[int]string{4: "-01", 7: "-01"}[len(birth)]
	}
	by, _ := strconv.Atoi(birth[:4])
	ey, _ := strconv.Atoi(end[:4])
	age := ey - by
	if end[5:10] < birth[5:10] {
		age--
	}
	return age >= 90
}

func findPatient(doc any) obj {
	r, _ := doc.(obj)
	if r["resourceType"] == "Patient" {
		return r
	}
	entries, _ := r["entry"].([]any)
	for _, e := range entries {
		if res, ok := e.(obj)["resource"].(obj); ok && res["resourceType"] == "Patient" {
			return res
		}
	}
	return nil
}

// TestSafeHarborLeavesNoIdentifier encrypts every test document with the
// Safe Harbor profile and walks every element of every resource of the
// output (harborLeaks): no date finer than a year and no value of the 18
// identifier kinds is left in plaintext; for patients of 90 or more and
// documents without their patient, no year either, in plaintext or in a
// year extension. Decryption gives back the input byte for byte, with
// each envelope form. The plaintext documents are checked to have leaks,
// so that the walker is not blind.
func TestSafeHarborLeavesNoIdentifier(t *testing.T) {
	ctx := context.Background()
	v := harborEnv(t, harborProfile())
	docs := harborCorpus(t, !testing.Short())
	names := slicesSorted(docs)
	v.forms(t, func(t *testing.T, e *fhir.Encryptor) {
		types := map[string]bool{}
		var elements, leaksBefore, withheld, kept int
		for _, name := range names {
			doc := docs[name]
			in := parse(t, doc)
			leaksBefore += len(harborLeaks(in, false))
			out, err := e.Encrypt(ctx, doc)
			require.NoError(t, err, name)
			enc := parse(t, out)
			aged := agedOrUnknown(in)
			for _, l := range harborLeaks(enc, aged) {
				t.Errorf("%s: %s: %s left in plaintext", name, l.path, l.kind)
			}
			if aged {
				withheld++
				assert.Empty(t, harborYears(enc), "%s: a year extension for a patient of 90 or more or of unknown age", name)
			} else if len(harborYears(enc)) > 0 {
				kept++
			}
			countElements(enc, types, &elements)
			back, err := e.Decrypt(ctx, out)
			require.NoError(t, err, name)
			if !bytes.Equal(doc, back) {
				t.Fatalf("%s: decryption does not give back the input", name)
			}
		}
		t.Logf("%d documents, %d resource types, %d elements walked; %d leaks in the plaintext, none after; years kept in %d documents, withheld in %d",
			len(names), len(types), elements, leaksBefore, kept, withheld)
		assert.Greater(t, leaksBefore, 1000, "the walker finds identifiers in plaintext")
		assert.GreaterOrEqual(t, len(types), 25, "resource types walked")
		assert.Positive(t, kept, "some documents keep their years")
		assert.Positive(t, withheld, "some documents withhold their years")
	})
}

// countElements counts the elements of doc and its resource types.
func countElements(v any, types map[string]bool, n *int) {
	switch v := v.(type) {
	case obj:
		if rt, ok := v["resourceType"].(string); ok {
			types[rt] = true
		}
		for _, x := range v {
			*n++
			countElements(x, types, n)
		}
	case []any:
		for _, x := range v {
			countElements(x, types, n)
		}
	}
}

// TestSafeHarborEveryRuleMatters turns off each rule of the profile, and
// drops each of its paths, in turn: the walker then finds identifiers in
// plaintext in the fixture or a Synthea Bundle.
func TestSafeHarborEveryRuleMatters(t *testing.T) {
	ctx := context.Background()
	docs := [][]byte{
		readFile(t, harborFixture),
		readFile(t, testdata+"fhir-synthea/bundles/packt1k_Lemuel304_MacGyver246_e3a0ccfb.json"),
	}
	leaks := func(t *testing.T, p *fhir.Profile) int {
		e := harborEnv(t, p).compact
		n := 0
		for _, doc := range docs {
			out, err := e.Encrypt(ctx, doc)
			require.NoError(t, err)
			n += len(harborLeaks(parse(t, out), false))
		}
		return n
	}
	require.Zero(t, leaks(t, harborProfile()), "the whole profile leaves nothing")
	for _, rule := range fhir.SafeHarborRuleNames() {
		t.Run("rule="+rule, func(t *testing.T) {
			assert.Positive(t, leaks(t, fhir.WithoutSafeHarborRule(harborProfile(), rule)), "without rule %s", rule)
		})
	}
	for typ, paths := range harborProfile().Resources {
		for i, path := range paths {
			t.Run("path="+typ+"."+path, func(t *testing.T) {
				p := harborProfile()
				p.Resources[typ] = append(append([]string(nil), paths[:i]...), paths[i+1:]...)
				assert.Positive(t, leaks(t, p), "without path %s.%s", typ, path)
			})
		}
	}
}

// harborDoc encrypts the fixture with its patient's birth date (and date
// of death) replaced, and returns the input and output.
func harborDoc(t *testing.T, e *fhir.Encryptor, birth, death string) (doc, out []byte) {
	t.Helper()
	doc = readFile(t, harborFixture)
	doc = bytes.Replace(doc, []byte(`"birthDate": "1937-03-04"`), []byte(`"birthDate": "`+birth+`"`), 1)
	if death != "" {
		doc = bytes.Replace(doc, []byte(`"gender": "female",`), []byte(`"gender": "female", "deceasedDateTime": "`+death+`",`), 1)
	}
	out, err := e.Encrypt(context.Background(), doc)
	require.NoError(t, err)
	back, err := e.Decrypt(context.Background(), out)
	require.NoError(t, err)
	require.Equal(t, string(doc), string(back))
	return doc, out
}

// TestSafeHarborAges checks the aggregation of ages over 89: the years of
// a patient's dates stay readable up to the day before their 90th
// birthday on AsOf, and no year is left from that day on, nor for the
// deceased who would be 90 or more, nor when the document does not tell
// the patient's age.
func TestSafeHarborAges(t *testing.T) {
	e := harborEnv(t, harborProfile()).compact
	const birthYear = "entry[0].resource._birthDate.extension[0]"
	for _, c := range []struct {
		name, birth, death string
		years              bool
	}{
		{"89 years old", "1937-03-04", "", true},
		{"89, the day before 90", "1936-06-02", "", true},
		{"90 on the day", "1936-06-01", "", false},
		{"91 years old", "1935-03-04", "", false},
		{"born in a year, 89 at most", "1937", "", true},
		{"born in 1936, maybe 90", "1936", "", false},
		{"died at 60, would be 96", "1930-01-01", "1990-05-05T10:00:00Z", false},
		{"died at 50, would be 70", "1956-01-01", "2006-05-05T10:00:00Z", true},
		{"89 today, 90 at a death dated later", "1936-06-15", "2026-07-01T10:00:00Z", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, out := harborDoc(t, e, c.birth, c.death)
			enc := parse(t, out)
			years := harborYears(enc)
			for _, l := range harborLeaks(enc, !c.years) {
				t.Errorf("%s: %s left in plaintext", l.path, l.kind)
			}
			if !c.years {
				assert.Empty(t, years)
				return
			}
			if len(c.birth) > 4 {
				assert.Equal(t, c.birth[:4], years[birthYear])
			}
			assert.Equal(t, "2026", years["entry[1].resource.period._start.extension[0]"], "Encounter.period.start")
			assert.Equal(t, "1998", years["entry[2].resource._recordedDate.extension[0]"], "Condition.recordedDate")
			assert.Equal(t, "2026", years["entry[6].resource.billablePeriod._start.extension[0]"], "Claim.billablePeriod.start")
			assert.Equal(t, "contact[0].period.start", strings.TrimPrefix(findString(enc, "1961"), "entry[0].resource."), "a year-only date stays readable")
		})
	}
}

// findString returns the location of the first string equal to s.
func findString(doc any, s string) string {
	var found string
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch v := v.(type) {
		case obj:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				walk(v[k], join(path, k))
			}
		case []any:
			for i, x := range v {
				walk(x, idx(path, i))
			}
		case string:
			if v == s && found == "" {
				found = path
			}
		}
	}
	walk(doc, "")
	return found
}

// TestSafeHarborUnknownAge: a resource whose patient is not in the
// document (a bulk export's Condition line) keeps no year.
func TestSafeHarborUnknownAge(t *testing.T) {
	e := harborEnv(t, harborProfile()).compact
	doc := []byte(`{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"onsetDateTime":"2001-02-03T04:05:06Z","abatementDateTime":"2002","recordedDate":"2001-02-04"}`)
	out, err := e.Encrypt(context.Background(), doc)
	require.NoError(t, err)
	enc := parse(t, out)
	assert.Empty(t, harborYears(enc))
	assert.Empty(t, harborLeaks(enc, true))
	assert.True(t, strings.HasPrefix(enc.(obj)["abatementDateTime"].(string), envelope.ArmorPrefix), "a year-only date is encrypted")
}

// TestSafeHarborYearExtension checks the bytes of the year extension, that
// Decrypt removes it and tells a forged one, and that Encrypt refuses a
// document that already holds one.
func TestSafeHarborYearExtension(t *testing.T) {
	ctx := context.Background()
	e := harborEnv(t, harborProfile()).compact
	doc := []byte(`{"resourceType":"Patient","id":"p1","birthDate":"1968-07-21","deceasedBoolean":false}`)
	out, err := e.Encrypt(ctx, doc)
	require.NoError(t, err)
	const ext = `,"_birthDate":{"extension":[{"url":"` + fhir.YearExtensionURL + `","valueInteger":1968}]}`
	require.Contains(t, string(out), `"`+ext+`,"deceasedBoolean":false}`, "the extension follows the ciphertext")
	back, err := e.Decrypt(ctx, out)
	require.NoError(t, err)
	require.Equal(t, string(doc), string(back))

	t.Run("a primitive with extensions of its own gets none", func(t *testing.T) {
		doc := []byte(`{"resourceType":"Patient","id":"p1","birthDate":"1968-07-21","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1968-07-21T04:05:06Z"}]}}`)
		out, err := e.Encrypt(ctx, doc)
		require.NoError(t, err)
		assert.Empty(t, harborYears(parse(t, out)))
		assert.Empty(t, harborLeaks(parse(t, out), false))
		back, err := e.Decrypt(ctx, out)
		require.NoError(t, err)
		require.Equal(t, string(doc), string(back))
	})
	t.Run("a forged year extension", func(t *testing.T) {
		forged := bytes.Replace(out, []byte(`"valueInteger":1968}`), []byte(`"valueInteger":1968,"valueString":"x"}`), 1)
		_, err := e.Decrypt(ctx, forged)
		require.ErrorIs(t, err, fhir.ErrNotEncrypted)
	})
	t.Run("every year extension is exactly Encrypt's, after an encrypted date", func(t *testing.T) {
		year := `{"extension":[{"url":"` + fhir.YearExtensionURL + `","valueInteger":1968}]}`
		uscore := fhir.USCore()
		uscore.SafeHarbor = &fhir.SafeHarborRules{Years: true, AsOf: harborAsOf}
		for name, forged := range map[string][]byte{
			"extra member":        bytes.Replace(out, []byte(`"valueInteger":1968}`), []byte(`"valueInteger":1968,"id":"x"}`), 1),
			"string valueInteger": bytes.Replace(out, []byte(`"valueInteger":1968}`), []byte(`"valueInteger":"1968"}`), 1),
			"decimal":             bytes.Replace(out, []byte(`"valueInteger":1968}`), []byte(`"valueInteger":1968.0}`), 1),
			"white space":         bytes.Replace(out, []byte(`"valueInteger":1968}`), []byte(`"valueInteger": 1968}`), 1),
			"second item":         bytes.Replace(out, []byte(`1968}]}`), []byte(`1968},{"url":"u","valueString":"x"}]}`), 1),
			"not after its date":  bytes.Replace(out, []byte(`"deceasedBoolean":false`), []byte(`"deceasedBoolean":false,"_deceasedBoolean":`+year), 1),
			"next to plaintext":   []byte(`{"resourceType":"Patient","id":"p1","gender":"male","_gender":` + year + `}`),
			"in an array":         []byte(`{"resourceType":"Patient","id":"p1","extension":[` + year + `]}`),
		} {
			require.NotEqual(t, string(out), string(forged), name)
			_, err := e.Decrypt(ctx, forged)
			require.ErrorIs(t, err, fhir.ErrNotEncrypted, name)
			_, err = newEnv(t, func(c *fhir.Config) { c.Profile = uscore }).compact.Decrypt(ctx, forged)
			require.ErrorIs(t, err, fhir.ErrNotEncrypted, "US Core: %s", name)
		}
		// AllowPlaintext leaves what is not Encrypt's in place.
		in := []byte(`{"resourceType":"Patient","id":"p1","gender":"male","_gender":` + year + `}`)
		_, err := harborEnv(t, harborProfile()).compact.Decrypt(ctx, in)
		require.ErrorIs(t, err, fhir.ErrNotEncrypted)
		lax := newEnv(t, func(c *fhir.Config) { c.Profile = harborProfile(); c.AllowPlaintext = true }).compact
		back, err := lax.Decrypt(ctx, in)
		require.NoError(t, err)
		assert.Equal(t, string(in), string(back))
	})
	t.Run("input with a year extension", func(t *testing.T) {
		in := []byte(`{"resourceType":"Patient","id":"p1","gender":"male","_gender":{"extension":[{"url":"` + fhir.YearExtensionURL + `","valueInteger":1968}]}}`)
		_, err := e.Encrypt(ctx, in)
		require.ErrorIs(t, err, fhir.ErrEncryptedInput)
	})
	t.Run("without years", func(t *testing.T) {
		p := harborProfile()
		p.SafeHarbor.Years = false
		out, err := harborEnv(t, p).compact.Encrypt(ctx, doc)
		require.NoError(t, err)
		assert.NotContains(t, string(out), fhir.YearExtensionURL)
	})
}

// TestUSCoreLeavesTimeOfDeath shows the gap that the Safe Harbor profile
// closes: in the bulk export, US Core encrypts each deceased patient's
// deceasedDateTime but leaves the same instant readable at the end of
// their last Encounter; Safe Harbor leaves it nowhere.
func TestUSCoreLeavesTimeOfDeath(t *testing.T) {
	ctx := context.Background()
	var deaths []string
	for _, l := range lines(t, testdata+"fhir-synthea/bulk-10/Patient.000.ndjson") {
		if d, ok := parse(t, l).(obj)["deceasedDateTime"].(string); ok {
			deaths = append(deaths, d)
		}
	}
	require.NotEmpty(t, deaths)
	encounters := lines(t, testdata+"fhir-synthea/bulk-10/Encounter.000.ndjson")
	for _, c := range []struct {
		profile  *fhir.Profile
		readable bool
	}{{fhir.USCore(), true}, {harborProfile(), false}} {
		e := harborEnv(t, c.profile).compact
		var all []byte
		for _, l := range encounters {
			out, err := e.Encrypt(ctx, l)
			require.NoError(t, err)
			all = append(all, out...)
		}
		for _, d := range deaths {
			assert.Equal(t, c.readable, bytes.Contains(all, []byte(`"`+d+`"`)), "%s: time of death readable", c.profile.Name)
		}
	}
}

func TestProfileByName(t *testing.T) {
	for _, name := range fhir.BuiltinProfileNames() {
		p, err := fhir.ProfileByName(name)
		require.NoError(t, err)
		assert.Equal(t, name, p.Name)
		require.NoError(t, p.Validate())
	}
	_, err := fhir.ProfileByName("safe_harbor")
	require.ErrorIs(t, err, fhir.ErrUnknownProfile)
}

func TestSafeHarborParseProfile(t *testing.T) {
	p, err := fhir.ParseProfile([]byte(`{"name":"study","resources":{"Patient":["gender"]},"safeHarbor":{"years":true,"asOf":"2026-06-01"}}`))
	require.NoError(t, err)
	require.NotNil(t, p.SafeHarbor)
	assert.True(t, p.SafeHarbor.Years)
	for _, bad := range []string{`"2026-13-01"`, `"2026-06"`, `"June"`, `"2026-06-01T00:00:00Z"`} {
		_, err := fhir.ParseProfile([]byte(`{"name":"study","resources":{},"safeHarbor":{"asOf":` + bad + `}}`))
		require.ErrorIs(t, err, fhir.ErrInvalidProfile, bad)
	}
	_, err = fhir.ParseProfile([]byte(`{"name":"study","resources":{},"safeHarbor":{"yeras":true}}`))
	require.Error(t, err, "unknown fields are refused")
	assert.NotErrorIs(t, err, fhir.ErrInvalidProfile)
	m := fhir.Merge("both", fhir.USCore(), fhir.SafeHarbor())
	require.NotNil(t, m.SafeHarbor, "Merge keeps the Safe Harbor rules")
}

func ExampleSafeHarbor() {
	ctx := context.Background()
	c, _ := exampleSetup()
	p := fhir.SafeHarbor()
	p.SafeHarbor.AsOf = "2026-06-01" // ages are counted at this date
	e, err := fhir.NewEncryptor(fhir.Config{Cipher: c, Scope: fhir.FixedScope("study:42"), Profile: p})
	if err != nil {
		panic(err)
	}
	doc := []byte(`{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1968-07-21"}`)
	enc, err := e.Encrypt(ctx, doc)
	if err != nil {
		panic(err)
	}
	var r map[string]any
	if err := json.Unmarshal(enc, &r); err != nil {
		panic(err)
	}
	fmt.Println("birthDate encrypted:", strings.HasPrefix(r["birthDate"].(string), envelope.ArmorPrefix))
	year, _ := json.Marshal(r["_birthDate"])
	fmt.Println("_birthDate:", string(year))
	back, err := e.Decrypt(ctx, enc)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(back))
	// Output:
	// birthDate encrypted: true
	// _birthDate: {"extension":[{"url":"https://github.com/phicrypt/phicrypt/fhir/StructureDefinition/year","valueInteger":1968}]}
	// {"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1968-07-21"}
}

// FuzzSafeHarbor feeds arbitrary documents to Encrypt and Decrypt with the
// Safe Harbor profile (seeded with the fixture, a Patient with a year
// extension, and their encryptions): neither panics, errors are typed,
// and what Encrypt writes decrypts to its input.
func FuzzSafeHarbor(f *testing.F) {
	ctx := context.Background()
	e := harborEnv(f, harborProfile()).compact
	for _, doc := range [][]byte{
		readFile(f, harborFixture),
		[]byte(`{"resourceType":"Patient","id":"p1","birthDate":"1968-07-21","deceasedBoolean":false}`),
		[]byte(`{"resourceType":"Patient","id":"p1","_birthDate":{"extension":[{"url":"` + fhir.YearExtensionURL + `","valueInteger":1}]},"birthDate":"1968"}`),
	} {
		f.Add(doc)
		if enc, err := e.Encrypt(ctx, doc); err == nil {
			f.Add(enc)
		}
	}
	typed := func(t *testing.T, err error) {
		var fe *envelope.FormatError
		switch {
		case errors.Is(err, fhir.ErrSyntax), errors.Is(err, fhir.ErrNotResource), errors.Is(err, fhir.ErrMissingID),
			errors.Is(err, fhir.ErrEncryptedInput), errors.Is(err, envelope.ErrDecrypt), errors.As(err, &fe),
			errors.Is(err, envelope.ErrNotEncrypted), errors.Is(err, envelope.ErrKeyNotFound),
			errors.Is(err, envelope.ErrInvalidBinding), errors.Is(err, fhir.ErrMalformedValue), errors.Is(err, envelope.ErrTooLarge):
		default:
			t.Fatalf("untyped error: %v", err)
		}
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if _, err := e.Decrypt(ctx, doc); err != nil {
			typed(t, err)
		}
		enc, err := e.Encrypt(ctx, doc)
		if err != nil {
			typed(t, err)
			return
		}
		back, err := e.Decrypt(ctx, enc)
		require.NoError(t, err)
		require.Equal(t, string(doc), string(back))
	})
}

// TestSafeHarborBulkExportYears encrypts the 10-patient bulk export's
// Condition and Encounter lines, whose Patients are in another file: with
// SafeHarborRules.Patients read from it, the lines of patients under 90
// keep their years and those of older patients keep none; without it, no
// line keeps a year.
func TestSafeHarborBulkExportYears(t *testing.T) {
	ctx := context.Background()
	f, err := os.Open(testdata + "fhir-synthea/bulk-10/Patient.000.ndjson")
	require.NoError(t, err)
	defer f.Close()
	patients, err := fhir.ReadPatientDates(ctx, f)
	require.NoError(t, err)
	require.Len(t, patients, 13)

	// The patients' ages, as agedOrUnknown computes them for a Patient.
	aged := map[string]bool{}
	for _, l := range lines(t, testdata+"fhir-synthea/bulk-10/Patient.000.ndjson") {
		p := parse(t, l)
		aged[p.(obj)["id"].(string)] = agedOrUnknown(p)
	}
	files := []string{"Condition", "Encounter"}
	if testing.Short() {
		files = files[:1]
	}
	var docs [][]byte
	for _, name := range files {
		docs = append(docs, lines(t, testdata+"fhir-synthea/bulk-10/"+name+".000.ndjson")...)
	}
	with := harborProfile()
	with.SafeHarbor.Patients = patients
	for _, c := range []struct {
		name    string
		profile *fhir.Profile
	}{{"with the Patient file", with}, {"without", harborProfile()}} {
		t.Run(c.name, func(t *testing.T) {
			e := harborEnv(t, c.profile).compact
			var kept, withheld int
			for i, doc := range docs {
				out, err := e.Encrypt(ctx, doc)
				require.NoError(t, err)
				enc := parse(t, out)
				ref := parse(t, doc).(obj)["subject"].(obj)["reference"].(string)
				old, known := aged[strings.TrimPrefix(ref, "Patient/")]
				require.True(t, known, "line %d: patient of %s", i+1, ref)
				noYears := old || c.profile.SafeHarbor.Patients == nil
				for _, l := range harborLeaks(enc, noYears) {
					t.Errorf("line %d: %s: %s left in plaintext", i+1, l.path, l.kind)
				}
				if y := harborYears(enc); noYears {
					assert.Empty(t, y, "line %d", i+1)
					withheld++
				} else {
					assert.NotEmpty(t, y, "line %d", i+1)
					kept++
				}
				back, err := e.Decrypt(ctx, out)
				require.NoError(t, err)
				require.True(t, bytes.Equal(doc, back), "line %d", i+1)
			}
			t.Logf("%d lines keep their years, %d withhold them", kept, withheld)
			if c.profile.SafeHarbor.Patients != nil {
				assert.Positive(t, kept)
				assert.Positive(t, withheld, "some patients are 90 or more")
			}
		})
	}
}

func TestReadPatientDates(t *testing.T) {
	ctx := context.Background()
	got, err := fhir.ReadPatientDates(ctx, strings.NewReader(`{"resourceType":"Patient","id":"a","birthDate":"1950-01-02"}
{"resourceType":"Condition","id":"c"}

{"resourceType":"Patient","id":"b","birthDate":"1930","deceasedDateTime":"2001-02-03T04:05:06Z"}
`))
	require.NoError(t, err)
	assert.Equal(t, map[string]fhir.PatientDates{
		"a": {BirthDate: "1950-01-02"},
		"b": {BirthDate: "1930", DeceasedDateTime: "2001-02-03T04:05:06Z"},
	}, got)
	for _, bad := range []string{`{"resourceType":"Patient","id":"a","birthDate":19500102}`, `{"resourceType":"Patient"`, `[`} {
		_, err := fhir.ReadPatientDates(ctx, strings.NewReader(bad))
		var se *fhir.SyntaxError
		require.ErrorAs(t, err, &se, bad)
		require.ErrorIs(t, err, fhir.ErrSyntax)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = fhir.ReadPatientDates(cancelled, strings.NewReader(`{}`))
	require.ErrorIs(t, err, context.Canceled)
}

// TestReadPatientDatesParsesAsEncrypt: ReadPatientDates reads lines with
// the package's strict parser, so it sees the dates Encrypt sees. With
// encoding/json, a second birthDate (last wins) or a BirthDate (names
// matched ignoring case) made a patient born in 1930 look born in 2000.
func TestReadPatientDatesParsesAsEncrypt(t *testing.T) {
	ctx := context.Background()
	got, err := fhir.ReadPatientDates(ctx, strings.NewReader(
		`{"resourceType":"Patient","id":"a","birthDate":"1930-01-01","BirthDate":"2000-01-01","DeceasedDateTime":"2001-01-01"}`+"\r\n"+
			`{"resourceType":"Patient","id":"b","birthDate":"1930-01-01"}`+"\n"+
			`{"resourceType":"Patient","id":"b","birthDate":"2000-01-01"}`+"\n"+ // another version: age unknown
			`{"resourceType":"Patient","id":"b","birthDate":"2000-01-01"}`+"\n"+
			`{"resourceType":"Patient","id":"c","birthDate":"1950-01-01"}`+"\n"+
			`{"resourceType":"Patient","id":"c","birthDate":"1950-01-01"}`))
	require.NoError(t, err)
	assert.Equal(t, map[string]fhir.PatientDates{
		"a": {BirthDate: "1930-01-01"},
		"b": {},
		"c": {BirthDate: "1950-01-01"},
	}, got)

	first := `{"resourceType":"Patient","id":"a","birthDate":"1950-01-01"}` + "\n"
	for _, bad := range []string{
		`{"resourceType":"Patient","id":"p1","birthDate":"1930-01-01","birthDate":"2000-01-01"}`,
		`{"resourceType":"Patient","id":"p1","birthDate":["2000-01-01"]}`,
		`["Patient"]`,
	} {
		_, err := fhir.ReadPatientDates(ctx, strings.NewReader(first+bad))
		var se *fhir.SyntaxError
		require.ErrorAs(t, err, &se, bad)
		assert.GreaterOrEqual(t, se.Offset, int64(len(first)), "the offset is in the second line")
		assert.ErrorIs(t, err, fhir.ErrSyntax)
	}
}

// TestSafeHarborOddShapes: the rules reach primitives of the wrong JSON
// type, resources inside Parameters and Bundle entries' own members; a
// contained resource's contained resources (which FHIR forbids) fail the
// document.
func TestSafeHarborOddShapes(t *testing.T) {
	ctx := context.Background()
	e := harborEnv(t, harborProfile()).compact
	doc := []byte(`{"resourceType":"Bundle","id":"b","type":"collection","entry":[
	{"response":{"status":"200","lastModified":"2026-01-02T03:04:05Z"},"resource":{"resourceType":"Parameters","id":"par",
		"parameter":[{"name":"p","resource":{"resourceType":"Patient","name":[{"family":"Quist"}],"birthDate":"1950-01-01"}}]}},
	{"resource":{"resourceType":"Observation","id":"o","contained":[{"resourceType":"Patient","id":"c2","address":[{"postalCode":1970,"line":["12 Harbor Lane"]}]}]}}]}`)
	nested := []byte(`{"resourceType":"Observation","id":"o","contained":[{"resourceType":"Observation","id":"c1",
		"contained":[{"resourceType":"Patient","id":"c2","address":[{"line":["12 Harbor Lane"]}]}]}]}`)
	_, err := e.Encrypt(ctx, nested)
	require.ErrorIs(t, err, fhir.ErrUnexpectedShape)
	out, err := e.Encrypt(ctx, doc)
	require.NoError(t, err)
	enc := parse(t, out)
	for _, l := range harborLeaks(enc, true) {
		t.Errorf("%s: %s left in plaintext", l.path, l.kind)
	}
	for _, s := range []string{`"Quist"`, `"1950-01-01"`, `1970`, `"12 Harbor Lane"`, `"2026-01-02T03:04:05Z"`} {
		assert.NotContains(t, string(out), s)
	}
	back, err := e.Decrypt(ctx, out)
	require.NoError(t, err)
	require.Equal(t, string(doc), string(back))
}

// TestSafeHarborDecryptRefusesPlaintext: Decrypt refuses a document in
// which a date or an identifier that the rules select holds plaintext, as
// after a ciphertext was swapped for a value of the attacker's choosing.
func TestSafeHarborDecryptRefusesPlaintext(t *testing.T) {
	ctx := context.Background()
	v := harborEnv(t, harborProfile())
	doc := []byte(`{"resourceType":"Encounter","id":"e1","subject":{"reference":"Patient/p1","display":"Ada Quist"},"period":{"start":"2026-01-04T08:15:00-05:00"}}`)
	out, err := v.compact.Encrypt(ctx, doc)
	require.NoError(t, err)
	for name, swap := range map[string]func(o obj){
		"date":    func(o obj) { o["period"].(obj)["start"] = "2026-01-05T08:15:00-05:00" },
		"display": func(o obj) { o["subject"].(obj)["display"] = "Someone Else" },
	} {
		t.Run(name, func(t *testing.T) {
			cp := parse(t, out).(obj)
			swap(cp)
			b, err := json.Marshal(cp)
			require.NoError(t, err)
			_, err = v.compact.Decrypt(ctx, b)
			require.ErrorIs(t, err, fhir.ErrNotEncrypted)
		})
	}
}

// TestSafeHarborPrimitiveWhereObject: a string where FHIR has a HumanName,
// ContactPoint, Identifier or Attachment may be the identifier itself:
// it is encrypted whole. The string names of other elements stay.
func TestSafeHarborPrimitiveWhereObject(t *testing.T) {
	ctx := context.Background()
	e := harborEnv(t, harborProfile()).compact
	for member, want := range map[string][]string{
		`"name":"SECRET"`:                                     {"name"},
		`"name":["SECRET"]`:                                   {"name[0]"},
		`"name":[["SECRET"]]`:                                 {"name[0][0]"},
		`"telecom":["SECRET"]`:                                {"telecom[0]"},
		`"identifier":"SECRET"`:                               {"identifier"},
		`"identifier":["SECRET"]`:                             {"identifier[0]"},
		`"photo":"SECRET"`:                                    {"photo"},
		`"contact":[{"name":"SECRET"}]`:                       {"contact[0].name"},
		`"extension":[{"url":"u","valueHumanName":"SECRET"}]`: {"extension[0].valueHumanName"},
	} {
		doc := `{"resourceType":"Patient","id":"p1",` + member + `}`
		out, err := e.Encrypt(ctx, []byte(doc))
		require.NoError(t, err)
		assert.Equal(t, want, armoredPaths(t, out), doc)
		back, err := e.Decrypt(ctx, out)
		require.NoError(t, err)
		assert.Equal(t, doc, string(back))
	}
	for _, doc := range []string{
		`{"resourceType":"Organization","id":"o1","name":"General Hospital"}`,
	} {
		out, err := e.Encrypt(ctx, []byte(doc))
		require.NoError(t, err)
		assert.NotContains(t, armoredPaths(t, out), "name", doc)
	}
}

// TestSafeHarborOtherBirthDates: the years of a resource stay only when
// every birth date that bears on it is of someone under 90: every copy of
// its Patient, and the birth date the resource holds itself (a relative's
// born 1920 next to a patient born in 2000 kept "valueInteger": 1920).
func TestSafeHarborOtherBirthDates(t *testing.T) {
	ctx := context.Background()
	e := harborEnv(t, harborProfile()).compact
	young := `{"resource":{"resourceType":"Patient","id":"p1","birthDate":"2000-01-01"}}`
	bundle := func(entry string) string {
		return `{"resourceType":"Bundle","id":"b","type":"collection","entry":[` + entry + `,` + young + `]}`
	}
	for doc, keep := range map[string]bool{
		bundle(`{"resource":{"resourceType":"RelatedPerson","id":"r1","patient":{"reference":"Patient/p1"},"birthDate":"1920-03-04"}}`):                            false,
		bundle(`{"resource":{"resourceType":"FamilyMemberHistory","id":"f1","patient":{"reference":"Patient/p1"},"bornDate":"1920-03-04"}}`):                       false,
		bundle(`{"resource":{"resourceType":"FamilyMemberHistory","id":"f1","patient":{"reference":"Patient/p1"},"bornString":"about 1920","date":"2020-05-06"}}`): false,
		bundle(`{"resource":{"resourceType":"Patient","id":"p1","birthDate":"1920-03-04"}}`):                                                                       false, // an older version of p1
		bundle(`{"resource":{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"recordedDate":"2020-05-06"}},` +
			`{"resource":{"resourceType":"Patient","id":"p1","birthDate":"1920-03-04"}}`): false,
		bundle(`{"resource":{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"},"effectiveDateTime":"2020-05-06",` +
			`"contained":[{"resourceType":"RelatedPerson","id":"r","birthDate":"1920-03-04"}]}}`): false,
		bundle(`{"resource":{"resourceType":"RelatedPerson","id":"r1","patient":{"reference":"Patient/p1"},"birthDate":"1980-03-04"}}`): true,
	} {
		out, err := e.Encrypt(ctx, []byte(doc))
		require.NoError(t, err)
		assert.NotContains(t, string(out), `"valueInteger":1920`, doc)
		kept := false // a year extension on a date of the first entry
		for k := range parse(t, out).(obj)["entry"].([]any)[0].(obj)["resource"].(obj) {
			kept = kept || strings.HasPrefix(k, "_")
		}
		assert.Equal(t, keep, kept, "years of the first entry: %s", doc)
		back, err := e.Decrypt(ctx, out)
		require.NoError(t, err)
		assert.Equal(t, doc, string(back))
	}
}

// TestSafeHarborMalformedDates: a value that is not a FHIR date, where
// FHIR has a date, dateTime, instant or Period, is a date all the same:
// it is encrypted whole (no year can be kept of it), and the document
// round-trips.
func TestSafeHarborMalformedDates(t *testing.T) {
	ctx := context.Background()
	e := harborEnv(t, harborProfile()).compact
	for _, c := range []struct{ doc, secret, path string }{
		{`{"resourceType":"Patient","id":"p1","birthDate":"03/12/1980"}`, `03/12/1980`, "birthDate"},
		{`{"resourceType":"Patient","id":"p1","birthDate":19800312}`, `19800312`, "birthDate"},
		{`{"resourceType":"Patient","id":"p1","deceasedDateTime":"1980-03-12 10:00"}`, `1980-03-12 10:00`, "deceasedDateTime"},
		{`{"resourceType":"Encounter","id":"e1","period":{"start":"1980-03-12 10:00:00","end":"12 March 1980"}}`, `1980-03-12 10:00:00`, "period.start"},
		{`{"resourceType":"Encounter","id":"e1","period":{"end":"12 March 1980"}}`, `12 March 1980`, "period.end"},
		{`{"resourceType":"Claim","id":"c1","billablePeriod":"March 1980"}`, `March 1980`, "billablePeriod"},
		{`{"resourceType":"Condition","id":"c1","recordedDate":"1980-3-12"}`, `1980-3-12`, "recordedDate"},
	} {
		out, err := e.Encrypt(ctx, []byte(c.doc))
		require.NoError(t, err, c.doc)
		assert.NotContains(t, string(out), c.secret, c.doc)
		assert.Contains(t, armoredPaths(t, out), c.path, c.doc)
		back, err := e.Decrypt(ctx, out)
		require.NoError(t, err, c.doc)
		assert.Equal(t, c.doc, string(back))
	}
	// Decrypt refuses one swapped for plaintext, as it does a FHIR date.
	out, err := e.Encrypt(ctx, []byte(`{"resourceType":"Patient","id":"p1","birthDate":"03/12/1980"}`))
	require.NoError(t, err)
	cp := parse(t, out).(obj)
	cp["birthDate"] = "04/12/1980"
	b, err := json.Marshal(cp)
	require.NoError(t, err)
	_, err = e.Decrypt(ctx, b)
	require.ErrorIs(t, err, fhir.ErrNotEncrypted)

	// Other strings that look like dates stay readable: only FHIR's date
	// elements are dates by name.
	doc := `{"resourceType":"Observation","id":"o1","status":"03/12/1980"}`
	out, err = e.Encrypt(ctx, []byte(doc))
	require.NoError(t, err)
	assert.Empty(t, armoredPaths(t, out))
}

// TestSafeHarborExtensionsWithoutValue: FHIR lets a primitive's
// extensions (_family, _line, _value) stand without the value, or with
// more items than values (_given). Where the rules select the value, they
// select its extensions too, whatever the extension's value type: a
// humanname-own-name or rendered-value extension spells the identifier.
func TestSafeHarborExtensionsWithoutValue(t *testing.T) {
	ctx := context.Background()
	e := harborEnv(t, harborProfile()).compact
	ext := func(s string) string { return `{"extension":[{"url":"http://example.org/x","valueCode":"` + s + `"}]}` }
	for _, c := range []struct{ doc, path string }{
		{`{"resourceType":"Patient","id":"p1","name":[{"_family":` + ext("SECRET") + `}]}`, "name[0]._family"},
		{`{"resourceType":"Patient","id":"p1","name":[{"given":["Ada"],"_given":[null,` + ext("SECRET") + `]}]}`, "name[0]._given[1]"},
		{`{"resourceType":"Patient","id":"p1","address":[{"_line":[` + ext("SECRET") + `],"_postalCode":` + ext("SECRET") + `}]}`, "address[0]._line[0]"},
		{`{"resourceType":"Patient","id":"p1","telecom":[{"system":"phone","_value":` + ext("SECRET") + `}]}`, "telecom[0]._value"},
		{`{"resourceType":"Patient","id":"p1","identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","_value":` + ext("SECRET") + `}]}`, "identifier[0]._value"},
		{`{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1","_display":` + ext("SECRET") + `}}`, "subject._display"},
		{`{"resourceType":"Patient","id":"p1","_birthDate":{"extension":[{"url":"http://example.org/x","valueCode":"SECRET"}]}}`, "_birthDate"},
	} {
		out, err := e.Encrypt(ctx, []byte(c.doc))
		require.NoError(t, err, c.doc)
		assert.NotContains(t, string(out), "SECRET", c.doc)
		assert.Contains(t, armoredPaths(t, out), c.path, c.doc)
		back, err := e.Decrypt(ctx, out)
		require.NoError(t, err, c.doc)
		assert.Equal(t, c.doc, string(back))
	}
	// Decrypt refuses one put back in plaintext.
	doc := `{"resourceType":"Patient","id":"p1","telecom":[{"system":"phone","_value":` + ext("SECRET") + `}]}`
	out, err := e.Encrypt(ctx, []byte(doc))
	require.NoError(t, err)
	cp := parse(t, out).(obj)
	cp["telecom"].([]any)[0].(obj)["_value"] = parse(t, []byte(ext("OTHER")))
	b, err := json.Marshal(cp)
	require.NoError(t, err)
	_, err = e.Decrypt(ctx, b)
	require.ErrorIs(t, err, fhir.ErrNotEncrypted)
}

// TestSafeHarborSearchQueries: a conditional reference, a Bundle
// request's url and ifNoneExist, and a Bundle link hold search
// parameters, which name the patient by identifier, name or birth date:
// they are encrypted. Those of provider types (Organization, Practitioner,
// Location) stay, as the package documentation says.
func TestSafeHarborSearchQueries(t *testing.T) {
	ctx := context.Background()
	e := harborEnv(t, harborProfile()).compact
	const ssn = "999-12-3456"
	for _, c := range []struct{ doc, path string }{
		{`{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient?identifier=http://hl7.org/fhir/sid/us-ssn|` + ssn + `"}}`, "subject.reference"},
		{`{"resourceType":"Bundle","id":"b","type":"transaction","entry":[{"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Patient","id":"p1","gender":"female"},` +
			`"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=http://hl7.org/fhir/sid/us-ssn|` + ssn + `"}}]}`, "entry[0].request.ifNoneExist"},
		{`{"resourceType":"Bundle","id":"b","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":"p1","gender":"female"},` +
			`"request":{"method":"PUT","url":"Patient?identifier=http://hl7.org/fhir/sid/us-ssn|` + ssn + `"}}]}`, "entry[0].request.url"},
		{`{"resourceType":"Bundle","id":"b","type":"searchset","link":[{"relation":"self","url":"https://fhir.example.org/r4/Patient?identifier=` + ssn + `"}]}`, "link[0].url"},
	} {
		out, err := e.Encrypt(ctx, []byte(c.doc))
		require.NoError(t, err, c.doc)
		assert.NotContains(t, string(out), ssn, c.doc)
		assert.Contains(t, armoredPaths(t, out), c.path, c.doc)
		back, err := e.Decrypt(ctx, out)
		require.NoError(t, err, c.doc)
		assert.Equal(t, c.doc, string(back))

		// Decrypt refuses the query put back in plaintext.
		i := strings.Index(string(out), `"phicrypt:`)
		require.Positive(t, i, c.doc)
		j := i + 1 + strings.IndexByte(string(out[i+1:]), '"')
		forged := string(out[:i]) + `"Patient?identifier=123"` + string(out[j+1:])
		_, err = e.Decrypt(ctx, []byte(forged))
		require.ErrorIs(t, err, fhir.ErrNotEncrypted, c.doc)
	}
	// Providers' conditional references stay readable.
	for _, doc := range []string{
		`{"resourceType":"Encounter","id":"e1","participant":[{"individual":{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999919069"}}],` +
			`"serviceProvider":{"reference":"Organization?identifier=https://github.com/synthetichealth/synthea|19576db2"},"location":[{"location":{"reference":"Location?identifier=x|y"}}]}`,
		`{"resourceType":"Bundle","id":"b","type":"transaction","entry":[{"resource":{"resourceType":"Organization","id":"o1","active":true},"request":{"method":"POST","url":"Organization","ifNoneExist":"identifier=x|y"}}]}`,
	} {
		out, err := e.Encrypt(ctx, []byte(doc))
		require.NoError(t, err, doc)
		assert.Empty(t, armoredPaths(t, out), doc)
	}
}

// TestSafeHarborDatatypeExtensions: an extension on a HumanName, Address,
// ContactPoint or Identifier may carry the identifier in any value[x]
// type (HL7's iso21090-TEL-address puts the phone number in a valueUrl):
// its values are encrypted whole. The geolocation extension keeps its
// own rule.
func TestSafeHarborDatatypeExtensions(t *testing.T) {
	ctx := context.Background()
	e := harborEnv(t, harborProfile()).compact
	for _, c := range []struct{ doc, path string }{
		{`{"resourceType":"Patient","id":"p1","telecom":[{"system":"phone","extension":[{"url":"http://hl7.org/fhir/StructureDefinition/iso21090-TEL-address","valueUrl":"tel:+1-978-555-0142"}]}]}`, "telecom[0].extension[0].valueUrl"},
		{`{"resourceType":"Patient","id":"p1","identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","extension":[{"url":"http://example.org/x","extension":[{"url":"y","valueCode":"555-0142"}]}]}]}`, "identifier[0].extension[0].extension[0].valueCode"},
		{`{"resourceType":"Patient","id":"p1","name":[{"extension":[{"url":"http://example.org/x","valueCode":"555-0142"}]}]}`, "name[0].extension[0].valueCode"},
		{`{"resourceType":"Patient","id":"p1","address":[{"extension":[{"url":"http://example.org/x","valueUri":"geo:42.5,-70.8;555-0142"}]}]}`, "address[0].extension[0].valueUri"},
	} {
		out, err := e.Encrypt(ctx, []byte(c.doc))
		require.NoError(t, err, c.doc)
		assert.NotContains(t, string(out), "555-0142", c.doc)
		assert.Equal(t, []string{c.path}, armoredPaths(t, out), c.doc)
		back, err := e.Decrypt(ctx, out)
		require.NoError(t, err, c.doc)
		assert.Equal(t, c.doc, string(back))
		cp := strings.Replace(c.doc, "555-0142", "555-0143", 1) // a plaintext swapped in
		_, err = e.Decrypt(ctx, []byte(cp))
		require.ErrorIs(t, err, fhir.ErrNotEncrypted, c.doc)
	}
}

// TestSafeHarborRelativeName: FamilyMemberHistory.name is a string that
// holds the relative's name ("Aunt Margaret Quist"), one of the names
// Safe Harbor removes: it is encrypted, and refused in plaintext.
func TestSafeHarborRelativeName(t *testing.T) {
	ctx := context.Background()
	e := harborEnv(t, harborProfile()).compact
	doc := `{"resourceType":"FamilyMemberHistory","id":"f1","status":"completed","patient":{"reference":"Patient/p1"},` +
		`"name":"Margaret Vandermolen","relationship":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"AUNT"}]}}`
	out, err := e.Encrypt(ctx, []byte(doc))
	require.NoError(t, err)
	assert.NotContains(t, string(out), "Vandermolen")
	assert.Equal(t, []string{"name"}, armoredPaths(t, out))
	back, err := e.Decrypt(ctx, out)
	require.NoError(t, err)
	assert.Equal(t, doc, string(back))
	_, err = e.Decrypt(ctx, []byte(strings.Replace(doc, "Margaret", "Marga", 1)))
	require.ErrorIs(t, err, fhir.ErrNotEncrypted)
}

// TestSafeHarborAuditEvent: an AuditEvent of a patient's access names
// the patient as its agent (agent.name, agent.altId) and as its entity
// (entity.name), and entity.query holds the search that found them
// (base64 of "identifier=...|<SSN>"): all are encrypted, and refused in
// plaintext.
func TestSafeHarborAuditEvent(t *testing.T) {
	ctx := context.Background()
	e := harborEnv(t, harborProfile()).compact
	doc := `{"resourceType":"AuditEvent","id":"a1","type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110112"},` +
		`"agent":[{"who":{"reference":"Patient/p1"},"name":"Ada Quist","altId":"ada.quist@portal","requestor":true}],` +
		`"source":{"observer":{"reference":"Device/d1"}},` +
		`"entity":[{"what":{"reference":"Patient/p1"},"name":"Ada Quist","query":"aWRlbnRpZmllcj05OTktMTItMzQ1Ng=="}]}`
	out, err := e.Encrypt(ctx, []byte(doc))
	require.NoError(t, err)
	for _, s := range []string{"Ada Quist", "ada.quist", "aWRlbnRpZmllcj05OTktMTItMzQ1Ng"} {
		assert.NotContains(t, string(out), s)
	}
	assert.ElementsMatch(t, []string{"agent[0].name", "agent[0].altId", "entity[0].name", "entity[0].query"}, armoredPaths(t, out))
	back, err := e.Decrypt(ctx, out)
	require.NoError(t, err)
	assert.Equal(t, doc, string(back))
	cp := parse(t, out).(obj)
	cp["agent"].([]any)[0].(obj)["name"] = "Someone Else"
	b, err := json.Marshal(cp)
	require.NoError(t, err)
	_, err = e.Decrypt(ctx, b)
	require.ErrorIs(t, err, fhir.ErrNotEncrypted)
}

// TestSafeHarborMoreFreeText: the string elements that FHIR fills with
// free text (a report's conclusion, an assessment's summary, a claim's
// disposition, an OperationOutcome's diagnostics, which servers fill
// with the values they refused) are encrypted, as comment and
// description are.
func TestSafeHarborMoreFreeText(t *testing.T) {
	ctx := context.Background()
	e := harborEnv(t, harborProfile()).compact
	for _, c := range []struct{ doc, path string }{
		{`{"resourceType":"DiagnosticReport","id":"d1","status":"final","conclusion":"Ada Quist: no acute findings"}`, "conclusion"},
		{`{"resourceType":"ClinicalImpression","id":"c1","status":"completed","summary":"Ada Quist, widow, lives alone"}`, "summary"},
		{`{"resourceType":"ExplanationOfBenefit","id":"x1","disposition":"Paid to Ada Quist"}`, "disposition"},
		{`{"resourceType":"Bundle","id":"b","type":"transaction-response","entry":[{"response":{"status":"412","outcome":{"resourceType":"OperationOutcome",` +
			`"issue":[{"severity":"error","code":"duplicate","diagnostics":"Patient Ada Quist already exists"}]}}}]}`, "entry[0].response.outcome.issue[0].diagnostics"},
	} {
		out, err := e.Encrypt(ctx, []byte(c.doc))
		require.NoError(t, err, c.doc)
		assert.NotContains(t, string(out), "Ada Quist", c.doc)
		assert.Equal(t, []string{c.path}, armoredPaths(t, out), c.doc)
		back, err := e.Decrypt(ctx, out)
		require.NoError(t, err, c.doc)
		assert.Equal(t, c.doc, string(back))
		_, err = e.Decrypt(ctx, []byte(c.doc))
		require.ErrorIs(t, err, fhir.ErrNotEncrypted, c.doc)
	}
}

// TestSafeHarborMalformedDatesOtherElements: the date elements whose
// names do not end in Date, DateTime, Instant or Period
// (QuestionnaireResponse.authored, Communication.sent and received,
// Consent.dateTime, MedicationStatement.dateAsserted, MedicationDispense
// whenHandedOver, Signature.when, AllergyIntolerance.lastOccurrence, a
// reaction's onset, Attachment.creation, Timing.event) hold dates too: a
// value there that is not a FHIR date is encrypted whole.
func TestSafeHarborMalformedDatesOtherElements(t *testing.T) {
	ctx := context.Background()
	e := harborEnv(t, harborProfile()).compact
	const d = "03/12/1980 10:00"
	for _, c := range []struct{ doc, path string }{
		{`{"resourceType":"QuestionnaireResponse","id":"q1","status":"completed","authored":"` + d + `"}`, "authored"},
		{`{"resourceType":"Communication","id":"c1","status":"completed","sent":"` + d + `","received":19800312}`, "sent"},
		{`{"resourceType":"Consent","id":"c1","dateTime":"` + d + `"}`, "dateTime"},
		{`{"resourceType":"MedicationStatement","id":"m1","dateAsserted":"` + d + `"}`, "dateAsserted"},
		{`{"resourceType":"MedicationDispense","id":"m1","whenHandedOver":"` + d + `"}`, "whenHandedOver"},
		{`{"resourceType":"Provenance","id":"p1","signature":[{"when":"` + d + `"}]}`, "signature[0].when"},
		{`{"resourceType":"AllergyIntolerance","id":"a1","lastOccurrence":"` + d + `","reaction":[{"onset":"` + d + `"}]}`, "lastOccurrence"},
		{`{"resourceType":"DocumentReference","id":"d1","content":[{"attachment":{"contentType":"text/plain","creation":"` + d + `"}}]}`, "content[0].attachment.creation"},
		{`{"resourceType":"MedicationRequest","id":"m1","dosageInstruction":[{"timing":{"event":["` + d + `"]}}]}`, "dosageInstruction[0].timing.event[0]"},
	} {
		out, err := e.Encrypt(ctx, []byte(c.doc))
		require.NoError(t, err, c.doc)
		assert.NotContains(t, string(out), d, c.doc)
		assert.NotContains(t, string(out), "19800312", c.doc)
		assert.Contains(t, armoredPaths(t, out), c.path, c.doc)
		back, err := e.Decrypt(ctx, out)
		require.NoError(t, err, c.doc)
		assert.Equal(t, c.doc, string(back))
		_, err = e.Decrypt(ctx, []byte(c.doc))
		require.ErrorIs(t, err, fhir.ErrNotEncrypted, c.doc)
	}
}
