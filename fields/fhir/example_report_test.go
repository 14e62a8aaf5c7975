package fhir_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"strings"

	"github.com/phicrypt/phicrypt/fields/fhir"
)

// AppendEncryptReport tells which elements were encrypted, per resource
// type, and which resources had nothing encrypted: what a compliance
// review checks. A type the profile does not know is refused by default;
// EncryptUnknown encrypts its every string instead.
func ExampleEncryptor_AppendEncryptReport() {
	ctx := context.Background()
	c, _ := exampleSetup()
	e, err := fhir.NewEncryptor(fhir.Config{Cipher: c, Scope: fhir.FixedScope("tenant:st-mary"), UnknownTypes: fhir.EncryptUnknown})
	if err != nil {
		log.Fatal(err)
	}
	bundle := `{"resourceType":"Bundle","type":"collection","entry":[{"resource":` + examplePatient + `},` +
		`{"resource":{"resourceType":"Organization","id":"o1","name":"St Mary"}},` +
		`{"resource":{"resourceType":"Questionnaire","id":"q1","title":"Intake"}}]}`
	var rep fhir.Report
	if _, err := e.AppendEncryptReport(ctx, nil, []byte(bundle), &rep); err != nil {
		log.Fatal(err)
	}
	for _, typ := range rep.TypeNames() {
		t := rep.Types[typ]
		fmt.Printf("%s: %d resources, %d untouched, %d unknown, paths %v\n", typ, t.Resources, t.Untouched, t.Unknown, t.Paths)
	}

	strict, err := fhir.NewEncryptor(fhir.Config{Cipher: c, Scope: fhir.FixedScope("tenant:st-mary")})
	if err != nil {
		log.Fatal(err)
	}
	_, err = strict.Encrypt(ctx, []byte(bundle))
	fmt.Println(err, errors.Is(err, fhir.ErrUnknownResourceType))
	_, err = strict.Encrypt(ctx, []byte(`{"resourceType":"Patient","id":"p","name":"Ann Gottlieb798"}`))
	fmt.Println(err, errors.Is(err, fhir.ErrUnexpectedShape))
	// Output:
	// Bundle: 1 resources, 1 untouched, 0 unknown, paths map[]
	// Organization: 1 resources, 1 untouched, 0 unknown, paths map[]
	// Patient: 1 resources, 0 untouched, 0 unknown, paths map[address.city:1 address.line:1 address.postalCode:1 address.state:1 birthDate:1 identifier.value:1 name.family:1 name.given:2]
	// Questionnaire: 1 resources, 0 untouched, 1 unknown, paths map[title:1]
	// fhir: Bundle.entry[2].resource: resource type unknown to the profile true
	// fhir: Patient.name: unexpected JSON type: a string where an object is expected true
}

// With Reject, a bulk decryption goes on past the lines it cannot
// decrypt (a shredded patient, a damaged line), leaves them out, and ends
// with ErrRejected.
func ExampleNDJSONOptions_reject() {
	ctx := context.Background()
	c, _ := exampleSetup()
	e, err := fhir.NewEncryptor(fhir.Config{Cipher: c, Scope: fhir.FixedScope("tenant:st-mary")})
	if err != nil {
		log.Fatal(err)
	}
	var enc bytes.Buffer
	if _, err := e.EncryptNDJSON(ctx, &enc, strings.NewReader(examplePatient+"\n"), fhir.NDJSONOptions{}); err != nil {
		log.Fatal(err)
	}
	in := enc.String() + `{"resourceType":"Patient","id":"x","birthDate":"phicrypt:damaged"}` + "\n" + enc.String()
	var dec bytes.Buffer
	p, err := e.DecryptNDJSON(ctx, &dec, strings.NewReader(in), fhir.NDJSONOptions{
		Reject: func(le *fhir.LineError, _ []byte) error {
			fmt.Println("rejected:", le) // a line number and a path, never a value
			return nil
		},
	})
	fmt.Println(p.Lines, "lines decrypted,", p.Rejected, "rejected:", err, errors.Is(err, fhir.ErrRejected))
	// Output:
	// rejected: fhir: line 2: Patient.birthDate: envelope: malformed ciphertext: armor: not canonical unpadded base64url
	// 2 lines decrypted, 1 rejected: fhir: 1 NDJSON line rejected true
}
