package fhir_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields/fhir"
)

var armoredRE = regexp.MustCompile(`"phicrypt:[A-Za-z0-9_-]+"`)

// ciphertexts returns the byte spans of the armored strings of doc,
// quotes included.
func ciphertexts(doc []byte) [][]int { return armoredRE.FindAllIndex(doc, -1) }

func replaceSpan(doc []byte, span []int, with []byte) []byte {
	out := append([]byte(nil), doc[:span[0]]...)
	out = append(out, with...)
	return append(out, doc[span[1]:]...)
}

// flip flips one bit of an armored string's binary form, at offset from
// the end, and armors it again canonically.
func flip(t *testing.T, quoted []byte, fromEnd int, bit uint) []byte {
	b64 := quoted[1+len(envelope.ArmorPrefix) : len(quoted)-1]
	bin, err := base64.RawURLEncoding.DecodeString(string(b64))
	require.NoError(t, err)
	bin[len(bin)-1-fromEnd] ^= 1 << bit
	return []byte(`"` + envelope.ArmorPrefix + base64.RawURLEncoding.EncodeToString(bin) + `"`)
}

// tamperDocs are an encrypted Synthea patient, HL7's richest Patient and
// a Synthea Bundle.
func tamperDocs(t *testing.T) map[string][]byte {
	return map[string][]byte{
		"bulk patient":  lines(t, bulkPatients)[7],
		"hl7 example":   readFile(t, testdata+"fhir-hl7-examples/Patient-example.json"),
		"hl7 twin":      readFile(t, testdata+"fhir-hl7-examples/Patient-infant-twin-1.json"),
		"synthea claim": claimFromBundle(t),
	}
}

func claimFromBundle(t *testing.T) []byte {
	doc := readFile(t, testdata+"fhir-synthea/bundles/packt1k_Lemuel304_MacGyver246_e3a0ccfb.json")
	i := bytes.LastIndexByte(doc[:bytes.Index(doc, []byte(`"resourceType": "Claim"`))], '{')
	require.Positive(t, i)
	var depth int
	for j := i; j < len(doc); j++ {
		switch doc[j] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return doc[i : j+1]
			}
		}
	}
	t.Fatal("no claim")
	return nil
}

// TestTamperBitFlip flips bits in every ciphertext of each document, in
// its nonce, body and tag: each fails with envelope.ErrDecrypt. Flips in
// the header fail too (the header is authenticated), with ErrDecrypt or
// an error about the header (a flipped magic byte is no ciphertext).
func TestTamperBitFlip(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	v.forms(t, func(t *testing.T, e *fhir.Encryptor) {
		for name, doc := range tamperDocs(t) {
			out, err := e.Encrypt(ctx, doc)
			require.NoError(t, err)
			spans := ciphertexts(out)
			require.NotEmpty(t, spans, name)
			for _, span := range spans {
				// The last 28 bytes are the tag and the end of the body
				// (every padded value is at least 16 bytes): AEAD input.
				for range 3 {
					bad := flip(t, out[span[0]:span[1]], rng.IntN(28), uint(rng.IntN(8)))
					_, err := e.Decrypt(ctx, replaceSpan(out, span, bad))
					require.ErrorIs(t, err, envelope.ErrDecrypt, name)
				}
				// Anywhere, header included: never a success.
				enc := out[span[0]:span[1]]
				n, _ := base64.RawURLEncoding.DecodeString(string(enc[1+len(envelope.ArmorPrefix) : len(enc)-1]))
				bad := flip(t, enc, rng.IntN(len(n)), uint(rng.IntN(8)))
				_, err := e.Decrypt(ctx, replaceSpan(out, span, bad))
				var fe *envelope.FormatError
				require.True(t, errors.Is(err, envelope.ErrDecrypt) || errors.As(err, &fe) ||
					errors.Is(err, envelope.ErrKeyNotFound) || errors.Is(err, envelope.ErrNotEncrypted), // the magic byte
					"%s: %v", name, err)
			}
		}
	})
}

// TestTamperMove moves ciphertexts: to another element, another array
// position, another resource id and another resource. Each fails with
// envelope.ErrDecrypt.
func TestTamperMove(t *testing.T) {
	ctx := context.Background()
	// One scope for all, so that only the binding tells resources apart.
	v := newEnv(t, func(c *fhir.Config) { c.Scope = fhir.FixedScope("tenant:test") })
	v.forms(t, func(t *testing.T, e *fhir.Encryptor) {
		patients := lines(t, bulkPatients)
		a, err := e.Encrypt(ctx, patients[10])
		require.NoError(t, err)
		b, err := e.Encrypt(ctx, patients[11])
		require.NoError(t, err)
		sa, sb := ciphertexts(a), ciphertexts(b)
		require.Greater(t, len(sa), 10)

		// Swapping any two ciphertexts of a resource: another path, or
		// another position in the same array (identifier[1].value and
		// identifier[2].value share their path but for the index).
		for i := 0; i+1 < len(sa); i++ {
			x, y := sa[i], sa[i+1]
			swapped := append([]byte(nil), a[:x[0]]...)
			swapped = append(swapped, a[y[0]:y[1]]...)
			swapped = append(swapped, a[x[1]:y[0]]...)
			swapped = append(swapped, a[x[0]:x[1]]...)
			swapped = append(swapped, a[y[1]:]...)
			_, err := e.Decrypt(ctx, swapped)
			require.ErrorIs(t, err, envelope.ErrDecrypt, "swap %d and %d", i, i+1)
		}

		// The same element of another patient: another resource id.
		for i := range min(len(sa), len(sb)) {
			moved := replaceSpan(b, sb[i], a[sa[i][0]:sa[i][1]])
			_, err := e.Decrypt(ctx, moved)
			require.ErrorIs(t, err, envelope.ErrDecrypt, "value %d of another patient", i)
		}

		// The whole resource under another id.
		renamed := bytes.Replace(a, []byte(`"id":"`), []byte(`"id":"x`), 1)
		_, err = e.Decrypt(ctx, renamed)
		require.ErrorIs(t, err, envelope.ErrDecrypt)

		// Another resource type with the same id and path.
		retyped := bytes.Replace(a, []byte(`"resourceType":"Patient"`), []byte(`"resourceType":"RelatedPerson"`), 1)
		_, err = e.Decrypt(ctx, retyped)
		require.ErrorIs(t, err, envelope.ErrDecrypt)

		// Into another array element of the same resource: move the
		// family name from name[0] to a new name[1].
		hl7, err := e.Encrypt(ctx, readFile(t, testdata+"fhir-hl7-examples/Patient-example.json"))
		require.NoError(t, err)
		spans := ciphertexts(hl7)
		family := hl7[spans[2][0]:spans[2][1]] // text.div, identifier value, then name[0].family
		i := bytes.Index(hl7, []byte(`"use": "maiden",`))
		require.Positive(t, i)
		j := bytes.Index(hl7[i:], []byte(`"family": "`)) + i + len(`"family": `)
		k := j + 1 + bytes.IndexByte(hl7[j+1:], '"') + 1
		moved := replaceSpan(hl7, []int{j, k}, family)
		_, err = e.Decrypt(ctx, moved)
		require.ErrorIs(t, err, envelope.ErrDecrypt)
	})
}

// TestMoveAcrossPatientScopes: with per-patient scopes, a value moved to
// another known patient fails with ErrDecrypt too. (Moved to a patient
// who has no key yet, the compact form reports envelope.ErrKeyNotFound.)
func TestMoveAcrossPatientScopes(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	v.forms(t, func(t *testing.T, e *fhir.Encryptor) {
		patients := lines(t, bulkPatients)
		a, err := e.Encrypt(ctx, patients[20])
		require.NoError(t, err)
		b, err := e.Encrypt(ctx, patients[21])
		require.NoError(t, err)
		sa, sb := ciphertexts(a), ciphertexts(b)
		_, err = e.Decrypt(ctx, replaceSpan(b, sb[3], a[sa[3][0]:sa[3][1]]))
		assert.ErrorIs(t, err, envelope.ErrDecrypt)
	})
}

// TestDecryptOwnExtensions: Decrypt accepts the extensions Encrypt adds
// when the profile also selects them (a path Patient.extension selects
// the blind index extension, US Core's birthDate path selects the
// _birthDate of Safe Harbor's year), and refuses plaintext dressed as
// one.
func TestDecryptOwnExtensions(t *testing.T) {
	ctx := context.Background()
	withExtension := fhir.USCore()
	withExtension.Resources["Patient"] = append(withExtension.Resources["Patient"], "extension")
	withYears := fhir.USCore()
	withYears.SafeHarbor = &fhir.SafeHarborRules{Years: true, AsOf: "2026-06-01"}
	for name, c := range map[string]struct {
		p   *fhir.Profile
		doc string
	}{
		"index extension": {withExtension, `{"resourceType":"Patient","id":"p1","identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"123-45-6789"}],` +
			`"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName","valueString":"Smith"}]}`},
		"index extension member": {withExtension, `{"resourceType":"Patient","id":"p1","identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"123-45-6789"}]}`},
		"year extension":         {withYears, `{"resourceType":"Patient","id":"p1","birthDate":"1968-07-21"}`},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, func(cfg *fhir.Config) { cfg.Profile = c.p }).compact
			out, err := e.Encrypt(ctx, []byte(c.doc))
			require.NoError(t, err)
			require.True(t, strings.Contains(string(out), fhir.IndexExtensionURL) || strings.Contains(string(out), fhir.YearExtensionURL))
			back, err := e.Decrypt(ctx, out)
			require.NoError(t, err)
			assert.Equal(t, c.doc, string(back))
		})
	}
	// An index extension not of Encrypt's shape is plaintext of the
	// profile's extension path.
	e := newEnv(t, func(cfg *fhir.Config) { cfg.Profile = withExtension }).compact
	for _, ext := range []string{
		`{"url":"` + fhir.IndexExtensionURL + `","extension":[{"url":"ssn","valueBase64Binary":"AQI="}],"valueString":"Mallory SECRET"}`,
		`{"url":"` + fhir.IndexExtensionURL + `","extension":[{"url":"ssn","valueString":"Mallory SECRET"}]}`,
	} {
		_, err := e.Decrypt(ctx, []byte(`{"resourceType":"Patient","id":"p1","extension":[`+ext+`]}`))
		require.ErrorIs(t, err, fhir.ErrNotEncrypted, ext)
	}
}
