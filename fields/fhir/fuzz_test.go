package fhir_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields/fhir"
)

// FuzzDecrypt feeds arbitrary documents to Decrypt (seeded with genuine
// encrypted resources): it never panics, fails only with typed errors,
// and what it returns is valid JSON. A document with no ciphertext and no
// index extension in it decrypts to itself.
func FuzzDecrypt(f *testing.F) {
	ctx := context.Background()
	v := newEnv(f, func(c *fhir.Config) { c.AllowPlaintext = true })
	var seeds [][]byte
	for _, doc := range [][]byte{
		lines(f, bulkPatients)[0],
		readFile(f, testdata+"fhir-hl7-examples/Patient-example.json"),
		readFile(f, testdata+"fhir-hl7-examples/Patient-infant-twin-1.json"),
		[]byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"p","birthDate":"2000-01-01",
			"contained":[{"resourceType":"Patient","name":[{"family":"F"}]}]}}]}`),
	} {
		enc, err := v.compact.Encrypt(ctx, doc)
		require.NoError(f, err)
		seeds = append(seeds, enc)
	}
	for _, s := range seeds {
		f.Add(s)
	}
	for _, s := range []string{`{}`, `{"resourceType":"Patient","id":"x","name":"phicrypt:AAAA"}`, `[`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		out, err := v.compact.Decrypt(ctx, doc)
		if err == nil {
			if !json.Valid(out) {
				t.Fatalf("Decrypt returned invalid JSON")
			}
			if !bytes.Contains(doc, []byte("phicrypt")) && !bytes.Contains(doc, []byte(`\u`)) && !bytes.Equal(out, doc) {
				t.Fatalf("a document without ciphertexts or index extensions changed")
			}
			return
		}
		var fe *envelope.FormatError
		switch {
		case errors.Is(err, fhir.ErrSyntax), errors.Is(err, fhir.ErrNotResource), errors.Is(err, fhir.ErrMissingID),
			errors.Is(err, envelope.ErrDecrypt), errors.As(err, &fe), errors.Is(err, envelope.ErrNotEncrypted),
			errors.Is(err, envelope.ErrKeyNotFound), errors.Is(err, envelope.ErrInvalidBinding),
			errors.Is(err, fhir.ErrMalformedValue), errors.Is(err, envelope.ErrTooLarge),
			errors.Is(err, fhir.ErrUnexpectedShape), errors.Is(err, fhir.ErrInvalidResourceType),
			errors.Is(err, fhir.ErrUnknownResourceType):
		default:
			t.Fatalf("untyped error: %v", err)
		}
	})
}

// FuzzEncrypt feeds arbitrary documents to Encrypt: it never panics, fails
// only with typed errors, and what it writes decrypts back to the input
// byte for byte, whatever the document's shape.
func FuzzEncrypt(f *testing.F) {
	ctx := context.Background()
	v := newEnv(f, func(c *fhir.Config) { c.UnknownTypes = fhir.EncryptUnknown })
	for _, s := range []string{
		`{"resourceType":"Patient","id":"p","name":"Mallory"}`,
		`{"resourceType":"Patient","id":"p","name":[{"given":["A"],"_given":[{"id":"x"},"y"]}]}`,
		`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Basic","id":"b","code":{"text":"t"}}}]}`,
		`{"resourceType":"Observation","id":"o","contained":[{"resourceType":"Patient","name":[[{"family":"F"}]]}]}`,
		`{"resourceType":"patient","id":"p"}`,
	} {
		f.Add([]byte(s))
	}
	f.Add(lines(f, bulkPatients)[0])
	f.Fuzz(func(t *testing.T, doc []byte) {
		enc, err := v.compact.Encrypt(ctx, doc)
		if err != nil {
			switch {
			case errors.Is(err, fhir.ErrSyntax), errors.Is(err, fhir.ErrNotResource), errors.Is(err, fhir.ErrMissingID),
				errors.Is(err, fhir.ErrEncryptedInput), errors.Is(err, fhir.ErrUnexpectedShape),
				errors.Is(err, fhir.ErrInvalidResourceType), errors.Is(err, envelope.ErrInvalidBinding),
				errors.Is(err, envelope.ErrTooLarge):
			default:
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		dec, err := v.compact.Decrypt(ctx, enc)
		if err != nil {
			t.Fatalf("Encrypt's output does not decrypt: %v", err)
		}
		if !bytes.Equal(dec, doc) {
			t.Fatalf("the round trip changed the document")
		}
	})
}
