package fhir_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"regexp"
	"strings"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/fields/fhir"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

// exampleSetup returns a keyring, its compact envelope and a codec, with a
// local KEK (use Vault, a cloud KMS or an HSM in production).
func exampleSetup() (*envelope.Compact, *fields.Codec) {
	keyFile, err := local.Generate(local.Options{KeyID: "local:example"})
	if err != nil {
		log.Fatal(err)
	}
	kek, err := local.New(local.Config{Data: keyFile})
	if err != nil {
		log.Fatal(err)
	}
	kr, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore()})
	if err != nil {
		log.Fatal(err)
	}
	c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr, Encoding: envelope.Text})
	if err != nil {
		log.Fatal(err)
	}
	codec, err := fields.NewCodec(fields.Config{Keyring: kr})
	if err != nil {
		log.Fatal(err)
	}
	return c, codec
}

// masked shows a document with each ciphertext and index value replaced by
// a placeholder: they are random.
func masked(doc []byte) string {
	doc = regexp.MustCompile(`"phicrypt:[A-Za-z0-9_-]+"`).ReplaceAll(doc, []byte(`"phicrypt:…"`))
	return string(regexp.MustCompile(`"valueBase64Binary":"[^"]+"`).ReplaceAll(doc, []byte(`"valueBase64Binary":"…"`)))
}

const examplePatient = `{"resourceType":"Patient","id":"a52eed3a","gender":"female","birthDate":"1993-05-10",` +
	`"identifier":[{"type":{"coding":[{"code":"SS"}]},"system":"http://hl7.org/fhir/sid/us-ssn","value":"999-32-6219"}],` +
	`"name":[{"use":"official","family":"Gottlieb798","given":["Ann","Marie"]}],` +
	`"address":[{"use":"home","line":["12 Elm St"],"city":"Boston","state":"MA","postalCode":"02115"}]}`

// Encrypt replaces the PHI of a resource in place; everything else keeps
// its bytes. Decrypt gives back the original document.
func Example() {
	ctx := context.Background()
	c, codec := exampleSetup()
	e, err := fhir.NewEncryptor(fhir.Config{
		Cipher:     c,
		Scope:      fhir.PatientScope("tenant:st-mary"),
		Codec:      codec,
		Indexes:    []fhir.Index{fhir.SSNIndex(16)},
		IndexScope: fhir.FixedScope("tenant:st-mary"),
	})
	if err != nil {
		log.Fatal(err)
	}
	enc, err := e.Encrypt(ctx, []byte(examplePatient))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(masked(enc))

	doc, err := e.Decrypt(ctx, enc)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(doc) == examplePatient)
	// Output:
	// {"resourceType":"Patient","id":"a52eed3a","gender":"female","birthDate":"phicrypt:…","identifier":[{"type":{"coding":[{"code":"SS"}]},"system":"http://hl7.org/fhir/sid/us-ssn","value":"phicrypt:…"}],"name":[{"use":"official","family":"phicrypt:…","given":["phicrypt:…","phicrypt:…"]}],"address":[{"use":"home","line":["phicrypt:…"],"city":"phicrypt:…","state":"phicrypt:…","postalCode":"phicrypt:…"}],"extension":[{"url":"https://github.com/phicrypt/phicrypt/fhir/StructureDefinition/blind-index","extension":[{"url":"ssn","valueBase64Binary":"…"}]}]}
	// true
}

// A profile of your own, loaded from JSON: paths end at a value (encrypted
// alone) or at an object (encrypted whole).
func ExampleParseProfile() {
	ctx := context.Background()
	c, _ := exampleSetup()
	p, err := fhir.ParseProfile([]byte(`{
		"name": "research-export",
		"resources": {
			"Patient": ["name", "address", "identifier.where(type.coding.code = 'SS').value"]
		}
	}`))
	if err != nil {
		log.Fatal(err)
	}
	e, err := fhir.NewEncryptor(fhir.Config{Cipher: c, Scope: fhir.FixedScope("study:42"), Profile: p})
	if err != nil {
		log.Fatal(err)
	}
	enc, err := e.Encrypt(ctx, []byte(examplePatient))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(masked(enc))
	// Output:
	// {"resourceType":"Patient","id":"a52eed3a","gender":"female","birthDate":"1993-05-10","identifier":[{"type":{"coding":[{"code":"SS"}]},"system":"http://hl7.org/fhir/sid/us-ssn","value":"phicrypt:…"}],"name":["phicrypt:…"],"address":["phicrypt:…"]}
}

// ParsePath parses the FHIRPath subset; errors say where and why.
func ExampleParsePath() {
	p, err := fhir.ParsePath("Patient.identifier.where(type.coding.code='SS').value")
	fmt.Println(p, err)
	_, err = fhir.ParsePath("Patient.name.first()")
	fmt.Println(err)
	// Output:
	// Patient.identifier.where(type.coding.code = 'SS').value <nil>
	// fhir: invalid path "Patient.name.first()" at offset 13: unsupported function first() (supported: where, extension)
}

// EncryptNDJSON streams a bulk export, in parallel, in order, with
// progress.
func ExampleEncryptor_EncryptNDJSON() {
	ctx := context.Background()
	c, _ := exampleSetup()
	e, err := fhir.NewEncryptor(fhir.Config{Cipher: c, Scope: fhir.FixedScope("tenant:st-mary")})
	if err != nil {
		log.Fatal(err)
	}
	in := examplePatient + "\n" +
		`{"resourceType":"Encounter","id":"e1","subject":{"reference":"Patient/a52eed3a","display":"Ann Gottlieb798"}}` + "\n"
	var enc bytes.Buffer
	p, err := e.EncryptNDJSON(ctx, &enc, strings.NewReader(in), fhir.NDJSONOptions{Workers: 4})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Lines, "lines,", p.Bytes, "bytes")
	fmt.Print(masked(bytes.SplitAfter(enc.Bytes(), []byte("\n"))[1]))

	var dec bytes.Buffer
	if _, err := e.DecryptNDJSON(ctx, &dec, &enc, fhir.NDJSONOptions{}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(dec.String() == in)
	// Output:
	// 2 lines, 484 bytes
	// {"resourceType":"Encounter","id":"e1","subject":{"reference":"Patient/a52eed3a","display":"phicrypt:…"}}
	// true
}

// Terms finds a patient by SSN, written any way, among encrypted resources
// through the blind index extension, which ReadIndexes reads.
func ExampleEncryptor_Terms() {
	ctx := context.Background()
	c, codec := exampleSetup()
	e, err := fhir.NewEncryptor(fhir.Config{
		Cipher: c, Scope: fhir.FixedScope("tenant:st-mary"),
		Codec: codec, Indexes: []fhir.Index{fhir.SSNIndex(16)}, IndexScope: fhir.FixedScope("tenant:st-mary"),
	})
	if err != nil {
		log.Fatal(err)
	}
	enc, err := e.Encrypt(ctx, []byte(examplePatient))
	if err != nil {
		log.Fatal(err)
	}
	stored, err := fhir.ReadIndexes(enc) // what a search table keeps
	if err != nil {
		log.Fatal(err)
	}
	terms, err := e.Terms(ctx, "tenant:st-mary", "ssn", "999 32 6219")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(stored[0].ResourceType, stored[0].ID, stored[0].Name, stored[0].Value)
	fmt.Println(terms[0].Equal(stored[0].Value))
	// Output:
	// Patient a52eed3a ssn fields.BlindIndex(version 1)
	// true
}
