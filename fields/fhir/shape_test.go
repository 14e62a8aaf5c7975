package fhir_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields/fhir"
)

const canary = "Mallory SECRET"

// TestOddShapes gives Encrypt and Decrypt elements of the profile with JSON
// types FHIR JSON cannot give them, at every nesting level: each fails
// with ErrUnexpectedShape naming the element's path, never its value.
func TestOddShapes(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	for _, tc := range []struct{ doc, path string }{
		{`{"resourceType":"Patient","id":"p","name":"Mallory SECRET"}`, "Patient.name"},
		{`{"resourceType":"Patient","id":"p","name":["Mallory SECRET"]}`, "Patient.name[0]"},
		{`{"resourceType":"Patient","id":"p","name":[[{"family":"Mallory SECRET"}]]}`, "Patient.name[0]"},
		{`{"resourceType":"Patient","id":"p","name":[{"family":"F"},true]}`, "Patient.name[1]"},
		{`{"resourceType":"Patient","id":"p","telecom":[{"system":"phone","value":"1"}, "Mallory SECRET"]}`, "Patient.telecom[1]"},
		{`{"resourceType":"Patient","id":"p","identifier":"Mallory SECRET"}`, "Patient.identifier"},
		{`{"resourceType":"Patient","id":"p","address":[{"line":["1 Elm"]},{"city":"C"}, 12]}`, "Patient.address[2]"},
		{`{"resourceType":"Patient","id":"p","text":"Mallory SECRET"}`, "Patient.text"},
		{`{"resourceType":"Patient","id":"p","contact":["Mallory SECRET"]}`, "Patient.contact[0]"},
		{`{"resourceType":"Patient","id":"p","link":[{"other":"Mallory SECRET"}]}`, "Patient.link[0].other"},
		// Extensions and choice types.
		{`{"resourceType":"Patient","id":"p","extension":"Mallory SECRET"}`, "Patient.extension"},
		{`{"resourceType":"Patient","id":"p","extension":["Mallory SECRET"]}`, "Patient.extension[0]"},
		{`{"resourceType":"Patient","id":"p","address":[{"extension":[["Mallory SECRET"]]}]}`, "Patient.address[0].extension[0]"},
		// _given must be an array beside the array given.
		{`{"resourceType":"Patient","id":"p","name":[{"given":["A"],"_given":{"extension":[{"url":"u","valueString":"Mallory SECRET"}]}}]}`, "Patient.name[0]._given"},
		// where() criteria: a code in the wrong shape would hide the answer.
		{`{"resourceType":"Observation","id":"o","code":"56799-0","valueString":"Mallory SECRET"}`, "Observation.code"},
		{`{"resourceType":"Observation","id":"o","component":[{"code":{"coding":"56799-0"},"valueString":"Mallory SECRET"}]}`, "Observation.component[0].code.coding"},
		{`{"resourceType":"Observation","id":"o","subject":"Mallory SECRET"}`, "Observation.subject"},
		// ... and a compared value that is not a string would match nothing.
		{`{"resourceType":"Observation","id":"o","code":{"coding":[{"code":[["56799-0"]]}]},"valueString":"Mallory SECRET"}`, "Observation.code.coding[0].code[0]"},
		{`{"resourceType":"Observation","id":"o","code":{"coding":[{"code":{"value":"56799-0"}}]},"valueString":"Mallory SECRET"}`, "Observation.code.coding[0].code"},
		{`{"resourceType":"Observation","id":"o","code":{"coding":[{"code":56799}]},"valueString":"Mallory SECRET"}`, "Observation.code.coding[0].code"},
		{`{"resourceType":"Patient","id":"p","extension":[{"url":["http://hl7.org/fhir/StructureDefinition/patient-birthPlace"],"valueAddress":{"city":"Mallory SECRET"}}]}`, "Patient.extension[0].url"},
		// Resources in odd places.
		{`{"resourceType":"Observation","id":"o","contained":{"resourceType":"Patient","name":[{"family":"Mallory SECRET"}]}}`, "Observation.contained"},
		{`{"resourceType":"Observation","id":"o","contained":["Mallory SECRET"]}`, "Observation.contained[0]"},
		{`{"resourceType":"Observation","id":"o","contained":[{"resourceType":"Patient","id":"c","name":"Mallory SECRET"}]}`, "Observation.contained[0].name"},
		{`{"resourceType":"Observation","id":"o","contained":[{"resourceType":"Organization","id":"c","contained":[{"resourceType":"Patient","name":[{"family":"Mallory SECRET"}]}]}]}`, "Observation.contained[0].contained"},
		{`{"resourceType":"Observation","id":"o","contained":[{"resourceType":"Bundle","id":"c","entry":[{"resource":{"resourceType":"Patient","name":[{"family":"Mallory SECRET"}]}}]}]}`, "Observation.contained[0].entry"},
		{`{"resourceType":"Bundle","entry":{"resource":{"resourceType":"Patient","id":"p","name":[{"family":"Mallory SECRET"}]}}}`, "Bundle.entry"},
		{`{"resourceType":"Bundle","entry":["Mallory SECRET"]}`, "Bundle.entry[0]"},
		{`{"resourceType":"Bundle","entry":[{"resource":"Mallory SECRET"}]}`, "Bundle.entry[0].resource"},
		{`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"p","name":"Mallory SECRET"}}]}}]}`, "Bundle.entry[0].resource.entry[0].resource.name"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			_, err := v.compact.Encrypt(ctx, []byte(tc.doc))
			require.ErrorIs(t, err, fhir.ErrUnexpectedShape, tc.doc)
			var ee *fhir.ElementError
			require.ErrorAs(t, err, &ee)
			assert.Equal(t, tc.path, ee.Path)
			assert.Contains(t, err.Error(), tc.path)
			assert.NotContains(t, err.Error(), "SECRET")
			assert.NotContains(t, err.Error(), "56799")

			_, err = v.compact.Decrypt(ctx, []byte(tc.doc))
			require.ErrorIs(t, err, fhir.ErrUnexpectedShape, "Decrypt checks shapes too")
		})
	}
}

// TestWellShapedVariants are shapes FHIR JSON allows, or that the
// profile encrypts whole whatever their type: they encrypt, and no
// canary is left.
func TestWellShapedVariants(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	for _, doc := range []string{
		`{"resourceType":"Patient","id":"p","name":null}`,
		`{"resourceType":"Patient","id":"p","birthDate":{"odd":"Mallory SECRET"}}`,
		`{"resourceType":"Patient","id":"p","deceasedString":"Mallory SECRET","deceasedDateTime":["Mallory SECRET"]}`,
		`{"resourceType":"Patient","id":"p","name":[{"family":["Mallory SECRET"],"given":[["Mallory SECRET"]]}]}`,
		`{"resourceType":"Patient","id":"p","name":[{"given":["Mallory SECRET",null],"_given":[null,{"extension":[{"url":"u","valueString":"Mallory SECRET"}]}]}]}`,
		`{"resourceType":"Patient","id":"p","photo":"Mallory SECRET","contact":[{"name":"Mallory SECRET"}]}`,
		`{"resourceType":"Patient","id":"p","contained":null,"link":[{"other":{"display":"Mallory SECRET"}}]}`,
	} {
		enc, err := v.compact.Encrypt(ctx, []byte(doc))
		require.NoError(t, err, doc)
		assert.NotContains(t, string(enc), "SECRET")
		dec, err := v.compact.Decrypt(ctx, enc)
		require.NoError(t, err)
		assert.Equal(t, doc, string(dec))
	}
}

// TestOddShapeLeak is the class test: every object or array of a
// well-formed document that holds an encrypted value is replaced, in
// turn, by odd shapes carrying a canary. Encrypt must fail with
// ErrUnexpectedShape or leave no canary in its output. Removing the shape
// checks makes it fail.
func TestOddShapeLeak(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	docs := [][]byte{
		readFile(t, testdata+"fhir-hl7-examples/Patient-example.json"),
		lines(t, bulkPatients)[0],
		[]byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","id":"o","subject":{"reference":"Patient/p","display":"Ann"},
			"code":{"coding":[{"code":"56799-0"}]},"valueString":"1 Elm St",
			"component":[{"code":{"coding":[{"code":"56799-0"}]},"valueString":"2 Elm St"}],
			"contained":[{"resourceType":"Patient","id":"c","name":[{"family":"F","given":["G"],"_given":[{"extension":[{"url":"u","valueString":"x"}]}]}],
			"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthPlace","valueAddress":{"city":"B"}}]}]}}]}`),
	}
	odd := []string{`"` + canary + `"`, `["` + canary + `"]`, `[["` + canary + `"]]`, `[{"x":"` + canary + `"}, "` + canary + `"]`, `42`}
	tried, refused := 0, 0
	for _, doc := range docs {
		enc, err := v.compact.Encrypt(ctx, doc)
		require.NoError(t, err)
		var plain, encrypted any
		require.NoError(t, json.Unmarshal(doc, &plain))
		require.NoError(t, json.Unmarshal(enc, &encrypted))
		for _, p := range containers(plain, nil) {
			if !holdsCiphertext(at(encrypted, p)) {
				continue // nothing of the profile inside: a canary there is not PHI to it
			}
			for _, o := range odd {
				var repl any
				require.NoError(t, json.Unmarshal([]byte(o), &repl))
				mutated, err := json.Marshal(replaceAt(plain, p, repl))
				require.NoError(t, err)
				tried++
				out, err := v.compact.Encrypt(ctx, mutated)
				if err != nil {
					if !errors.Is(err, fhir.ErrNotResource) { // a contained resource that is not one
						require.ErrorIs(t, err, fhir.ErrUnexpectedShape, "%v := %s", p, o)
					}
					assert.NotContains(t, err.Error(), canary)
					refused++
					continue
				}
				require.NotContains(t, string(out), canary, "%v := %s leaked", p, o)
			}
		}
	}
	t.Logf("%d odd shapes tried, %d refused", tried, refused)
	require.Greater(t, refused, 100)
}

// containers returns the paths of every object and array in v, but v.
func containers(v any, path []any) [][]any {
	var out [][]any
	add := func(k any, c any) {
		p := append(append([]any(nil), path...), k)
		switch c.(type) {
		case map[string]any, []any:
			out = append(out, p)
			out = append(out, containers(c, p)...)
		}
	}
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if k != "resource" {
				add(k, c)
			} else {
				out = append(out, containers(c, append(append([]any(nil), path...), k))...)
			}
		}
	case []any:
		for i, c := range x {
			add(i, c)
		}
	}
	return out
}

func at(v any, path []any) any {
	for _, k := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[k.(string)]
		case []any:
			v = x[k.(int)]
		default:
			return nil
		}
	}
	return v
}

func holdsCiphertext(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.HasPrefix(x, envelope.ArmorPrefix)
	case map[string]any:
		for _, c := range x {
			if holdsCiphertext(c) {
				return true
			}
		}
	case []any:
		for _, c := range x {
			if holdsCiphertext(c) {
				return true
			}
		}
	}
	return false
}

// replaceAt returns a deep copy of v with the value at path replaced.
func replaceAt(v any, path []any, repl any) any {
	if len(path) == 0 {
		return repl
	}
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, c := range x {
			out[k] = c
		}
		out[path[0].(string)] = replaceAt(x[path[0].(string)], path[1:], repl)
		return out
	case []any:
		out := append([]any(nil), x...)
		out[path[0].(int)] = replaceAt(x[path[0].(int)], path[1:], repl)
		return out
	}
	panic(fmt.Sprintf("no %v in %T", path[0], v))
}

// TestResourceTypes checks resourceType: a name that is not a type name
// is ErrInvalidResourceType, a type the profile does not know is
// ErrUnknownResourceType by default, wherever the resource is.
func TestResourceTypes(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	for _, tc := range []struct {
		doc, path string
		err       error
	}{
		{`{"resourceType":"patient","id":"p","name":[{"family":"Mallory SECRET"}]}`, "resource.resourceType", fhir.ErrInvalidResourceType},
		{`{"resourceType":"Patient ","id":"p"}`, "resource.resourceType", fhir.ErrInvalidResourceType},
		{`{"resourceType":"","id":"p"}`, "resource.resourceType", fhir.ErrInvalidResourceType},
		{`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"pAtient","id":"p"}}]}`, "Bundle.entry[0].resource.resourceType", fhir.ErrInvalidResourceType},
		{`{"resourceType":"Observation","id":"o","contained":[{"resourceType":"patient"}]}`, "Observation.contained[0].resourceType", fhir.ErrInvalidResourceType},
		{`{"resourceType":"QuestionnaireResponse","id":"q","item":[{"answer":[{"valueString":"Mallory SECRET"}]}]}`, "QuestionnaireResponse", fhir.ErrUnknownResourceType},
		{`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"p"}},{"resource":{"resourceType":"Basic","id":"b"}}]}`, "Bundle.entry[1].resource", fhir.ErrUnknownResourceType},
		{`{"resourceType":"Observation","id":"o","contained":[{"resourceType":"Person","name":[{"family":"Mallory SECRET"}]}]}`, "Observation.contained[0]", fhir.ErrUnknownResourceType},
	} {
		for name, f := range map[string]func(context.Context, []byte) ([]byte, error){"Encrypt": v.compact.Encrypt, "Decrypt": v.compact.Decrypt} {
			_, err := f(ctx, []byte(tc.doc))
			require.ErrorIs(t, err, tc.err, "%s %s", name, tc.doc)
			var ee *fhir.ElementError
			require.ErrorAs(t, err, &ee)
			assert.Equal(t, tc.path, ee.Path)
			assert.NotContains(t, err.Error(), "SECRET")
			assert.NotContains(t, err.Error(), "atient", "an invalid resourceType is a value: not printed")
		}
	}
}

// TestUnknownTypePolicies checks EncryptUnknown and PassUnknown.
func TestUnknownTypePolicies(t *testing.T) {
	ctx := context.Background()
	doc := []byte(`{"resourceType":"QuestionnaireResponse","id":"q","meta":{"versionId":"3"},"status":"completed",` +
		`"subject":{"reference":"Patient/p","display":"Mallory SECRET"},"text":{"div":"<div>Mallory SECRET</div>"},` +
		`"item":[{"linkId":"1","answer":[{"valueString":"Mallory SECRET"},{"valueInteger":42},{"valueBoolean":true}]}],` +
		`"contained":[{"resourceType":"Patient","id":"c","gender":"female","name":[{"use":"official","family":"Mallory SECRET"}]}]}`)

	t.Run("encrypt", func(t *testing.T) {
		v := newEnv(t, func(c *fhir.Config) { c.UnknownTypes = fhir.EncryptUnknown })
		var rep fhir.Report
		enc, err := v.compact.AppendEncryptReport(ctx, nil, doc, &rep)
		require.NoError(t, err)
		assert.NotContains(t, string(enc), "SECRET")
		got := parse(t, enc).(obj)
		assert.Equal(t, "QuestionnaireResponse", got["resourceType"])
		assert.Equal(t, "q", got["id"])
		for _, s := range []string{"completed", "Patient/p", `"linkId":"1"`, `"versionId":"3"`} {
			assert.NotContains(t, string(enc), s, "every string is encrypted")
		}
		assert.Contains(t, string(enc), `"valueInteger":42`, "numbers stay")
		assert.Contains(t, string(enc), `"valueBoolean":true`, "booleans stay")
		// The contained Patient follows its own profile.
		assert.Contains(t, string(enc), `"resourceType":"Patient","id":"c","gender":"female"`)
		assert.Contains(t, string(enc), `"use":"official"`)
		assert.Equal(t, int64(1), rep.Types["QuestionnaireResponse"].Unknown)
		assert.Equal(t, int64(1), rep.Types["QuestionnaireResponse"].Paths["item.answer.valueString"])
		assert.Equal(t, int64(1), rep.Types["Patient"].Paths["name.family"])

		dec, err := v.compact.Decrypt(ctx, enc)
		require.NoError(t, err)
		assert.Equal(t, string(doc), string(dec))
		// A string of the unknown type swapped for plaintext is refused.
		swapped := regexp.MustCompile(`"status":"phicrypt:[^"]*"`).ReplaceAll(enc, []byte(`"status":"completed"`))
		require.NotEqual(t, enc, swapped)
		_, err = v.compact.Decrypt(ctx, swapped)
		require.ErrorIs(t, err, fhir.ErrNotEncrypted)
	})

	t.Run("pass", func(t *testing.T) {
		v := newEnv(t, func(c *fhir.Config) { c.UnknownTypes = fhir.PassUnknown })
		var rep fhir.Report
		enc, err := v.compact.AppendEncryptReport(ctx, nil, doc, &rep)
		require.NoError(t, err)
		assert.Contains(t, string(enc), `{"valueString":"Mallory SECRET"}`, "passed through, as asked")
		assert.NotContains(t, string(enc), `"display":"Mallory SECRET"`, `the "*" paths still apply`)
		assert.NotContains(t, string(enc), `"family":"Mallory SECRET"`, "the contained Patient follows its profile")
		qr := rep.Types["QuestionnaireResponse"]
		require.NotNil(t, qr)
		assert.Equal(t, fhir.TypeReport{Resources: 1, Unknown: 1, Paths: map[string]int64{"subject.display": 1, "text.div": 1}}, *qr)
		dec, err := v.compact.Decrypt(ctx, enc)
		require.NoError(t, err)
		assert.Equal(t, string(doc), string(dec))
		// Unknown types have no shape checks: their elements are unknown.
		_, err = v.compact.Encrypt(ctx, []byte(`{"resourceType":"DocumentManifest","id":"d","source":"urn:oid:1.2.3"}`))
		require.NoError(t, err)
	})

	t.Run("refuse by default", func(t *testing.T) {
		v := newEnv(t, nil)
		_, err := v.compact.Encrypt(ctx, doc)
		require.ErrorIs(t, err, fhir.ErrUnknownResourceType)
	})

	t.Run("known types", func(t *testing.T) {
		// A type listed with no paths is known; Bundle always is.
		p := &fhir.Profile{Resources: map[string][]string{"Patient": {"name.family"}, "Basic": {}}}
		v := newEnv(t, func(c *fhir.Config) { c.Profile = p; c.Indexes = nil })
		_, err := v.compact.Encrypt(ctx, []byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Basic","id":"b"}}]}`))
		require.NoError(t, err)
		_, err = v.compact.Encrypt(ctx, []byte(`{"resourceType":"Observation","id":"o"}`))
		require.ErrorIs(t, err, fhir.ErrUnknownResourceType)
		m := fhir.Merge("m", p, fhir.USCorePatient())
		assert.Contains(t, m.Resources, "Basic", "Merge keeps the types known without paths")
	})

	t.Run("policy names", func(t *testing.T) {
		for _, p := range []fhir.UnknownPolicy{fhir.RefuseUnknown, fhir.EncryptUnknown, fhir.PassUnknown} {
			got, err := fhir.ParseUnknownPolicy(p.String())
			require.NoError(t, err)
			assert.Equal(t, p, got)
		}
		_, err := fhir.ParseUnknownPolicy("ignore")
		require.Error(t, err)
		_, err = fhir.NewEncryptor(fhir.Config{Cipher: newEnvCipher(t), Scope: fhir.FixedScope("s"), UnknownTypes: 9})
		require.ErrorContains(t, err, "UnknownTypes")
	})
}
