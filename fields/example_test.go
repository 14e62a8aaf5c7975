package fields_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

// ExamplePatient is a record type as an EHR backend declares it.
type ExamplePatient struct {
	ID        string                      `phi:"id,table=patients"`
	TenantID  string                      `phi:"scope"`
	SSN       fields.String               `phi:"encrypt"`
	LastName  fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
	SSNIndex  fields.BlindIndex           `phi:"index,of=SSN,normalize=digits,bits=16"`
}

func exampleCodec() *fields.Codec {
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
	codec, err := fields.NewCodec(fields.Config{Keyring: kr})
	if err != nil {
		log.Fatal(err)
	}
	return codec
}

// Seal before writing, Open after reading. The driver value of a field is
// its ciphertext; printing the record shows no PHI.
func Example() {
	ctx := context.Background()
	codec := exampleCodec()

	p := ExamplePatient{
		ID:        "a52eed3a-6dd1-7729-b65c-1b5d73e7bbe0",
		TenantID:  "tenant:st-mary",
		SSN:       fields.New("999-32-6219"),
		LastName:  fields.New("Gottlieb798"),
		BirthDate: fields.New(time.Date(1993, 5, 10, 0, 0, 0, 0, time.UTC)),
	}
	if _, err := p.SSN.Value(); errors.Is(err, fields.ErrNotSealed) {
		fmt.Println("unsealed: no driver value")
	}
	if err := codec.Seal(ctx, &p); err != nil {
		log.Fatal(err)
	}
	stored, _ := p.SSN.Value()
	fmt.Println(stored.(string)[:len(envelope.ArmorPrefix)])
	fmt.Printf("%v\n", p.SSN)

	// What a SELECT returns, scanned into a fresh record.
	var got ExamplePatient
	got.ID, got.TenantID = p.ID, p.TenantID
	got.SSN.Scan(stored)
	if err := codec.Open(ctx, &got); err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.SSN.Get())
	// Output:
	// unsealed: no driver value
	// phicrypt:
	// fields.Encrypted[string](sealed)
	// 999-32-6219
}

// IndexTerms gives the values to look up in the index column; Match
// removes the false positives of a truncated index.
func ExampleCodec_IndexTerms() {
	ctx := context.Background()
	codec := exampleCodec()
	p := ExamplePatient{ID: "p1", TenantID: "tenant:st-mary", SSN: fields.New("999-32-6219"),
		LastName: fields.New("Gottlieb798"), BirthDate: fields.New(time.Date(1993, 5, 10, 0, 0, 0, 0, time.UTC))}
	if err := codec.Seal(ctx, &p); err != nil {
		log.Fatal(err)
	}

	// The search term, written another way.
	term := &ExamplePatient{TenantID: "tenant:st-mary", SSN: fields.New("999 32 6219")}
	values, err := codec.IndexTerms(ctx, term, "SSNIndex")
	if err != nil {
		log.Fatal(err)
	}
	// SELECT ... WHERE ssn_index IN (values...)
	fmt.Println(len(values), values[0].Equal(p.SSNIndex))
	ok, err := codec.Match(&p, term, "SSNIndex")
	fmt.Println(ok, err)
	// Output:
	// 1 true
	// true <nil>
}

// SuggestIndexBits plans a blind index's length from the table's size.
func ExampleSuggestIndexBits() {
	bits, _ := fields.SuggestIndexBits(1_000_000, 30) // a million patients, SSNs
	fmt.Println(bits)
	// Output: 18
}

// OpenPipeline opens records while the caller reads more: here the
// "rows" are ciphertexts already in memory; in an EHR backend they come
// from rows.Next and rows.Scan.
func ExampleCodec_OpenPipeline() {
	ctx := context.Background()
	codec := exampleCodec()

	// What the table holds: 1,000 sealed patients.
	var table []driverRow
	for i := range 1000 {
		p := ExamplePatient{ID: fmt.Sprint(i), TenantID: "tenant:st-mary", LastName: fields.New(fmt.Sprint("Gottlieb", i))}
		if err := codec.Seal(ctx, &p); err != nil {
			log.Fatal(err)
		}
		last, _ := p.LastName.Value()
		table = append(table, driverRow{p.ID, p.TenantID, last})
	}

	var patients []*ExamplePatient
	pl := codec.OpenPipeline(ctx)
	for _, row := range table { // for rows.Next() {
		p := &ExamplePatient{ID: row.id, TenantID: row.tenant}
		if err := p.LastName.Scan(row.last); err != nil { // rows.Scan(...)
			log.Fatal(errors.Join(err, pl.Wait()))
		}
		patients = append(patients, p)
		if pl.Add(p) != nil {
			break // a record failed: Wait returns the first failure
		}
	}
	if err := pl.Wait(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(patients), patients[999].LastName.Get())
	// Output:
	// 1000 Gottlieb999
}

// driverRow is a row as a database driver returns it.
type driverRow struct {
	id, tenant string
	last       any
}
