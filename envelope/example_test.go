package envelope_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"strings"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/kms/local"
)

// A SelfContained needs only a KEK: the wrapped data key travels inside
// each ciphertext.
func ExampleSelfContained() {
	ctx := context.Background()
	keyFile, err := local.Generate(local.Options{KeyID: "local:example"})
	if err != nil {
		log.Fatal(err)
	}
	kek, err := local.New(local.Config{Data: keyFile})
	if err != nil {
		log.Fatal(err)
	}
	sc, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, Encoding: envelope.Text})
	if err != nil {
		log.Fatal(err)
	}
	b := envelope.Binding{Scope: "tenant:st-mary", Table: "documents", Column: "body", RecordID: "doc-17"}
	ct, err := sc.Encrypt(ctx, []byte(`{"resourceType":"Patient","birthDate":"1972-03-14"}`), b)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.HasPrefix(string(ct), envelope.ArmorPrefix))

	pt, err := sc.Decrypt(ctx, ct, b)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(pt))

	// The same ciphertext under another record fails.
	b.RecordID = "doc-18"
	_, err = sc.Decrypt(ctx, ct, b)
	fmt.Println(errors.Is(err, envelope.ErrDecrypt))
	// Output:
	// true
	// {"resourceType":"Patient","birthDate":"1972-03-14"}
	// true
}

// oneKey is a minimal Keyring with a single data key for every scope. Real
// applications use the keys package, which keeps one key per scope and
// version in a store, wrapped by a KEK.
type oneKey struct{ dek *envelope.DEK }

func (k oneKey) EncryptionKey(context.Context, string) (*envelope.DEK, error) { return k.dek, nil }

func (k oneKey) DecryptionKey(_ context.Context, _ string, v uint32) (*envelope.DEK, error) {
	if v != k.dek.Version() {
		return nil, envelope.ErrKeyNotFound
	}
	return k.dek, nil
}

// A Compact names its data key by version and gets it from a Keyring.
func ExampleCompact() {
	ctx := context.Background()
	raw := make([]byte, envelope.DEKSize)
	rand.Read(raw)
	dek, err := envelope.NewDEK(envelope.AES256GCM, 1, raw)
	clear(raw)
	if err != nil {
		log.Fatal(err)
	}
	c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: oneKey{dek}})
	if err != nil {
		log.Fatal(err)
	}
	alice := envelope.Binding{Scope: "tenant:st-mary", Table: "patients", Column: "ssn", RecordID: "alice"}
	ct, err := c.Encrypt(ctx, []byte("999-12-3456"), alice)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(ct)-len("999-12-3456"), "bytes of overhead")
	fmt.Println(dek) // never the key

	bob := alice
	bob.RecordID = "bob"
	_, err = c.Decrypt(ctx, ct, bob)
	fmt.Println(errors.Is(err, envelope.ErrDecrypt))
	// Output:
	// 36 bytes of overhead
	// envelope.DEK{Suite: AES-256-GCM, Version: 1}
	// true
}

// Inspect tells plaintext from ciphertext without keys, and reads the key
// version a value needs: what a migration counts.
func ExampleInspect() {
	_, err := envelope.Inspect([]byte("999-12-3456"))
	fmt.Println(errors.Is(err, envelope.ErrNotEncrypted))

	info, err := envelope.Inspect([]byte("phicrypt:9QEBAQAAAAGYwW7611Ea3P9Lbk2DJK0fM5P7jK4f4zr68T219K25XyxF3W6YUyo"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.Form, info.Suite, info.KeyVersion, info.PlaintextSize)
	// Output:
	// true
	// compact AES-256-GCM 1 11
}

// oneKeyBatch is oneKey that also hands out its key for n values at once.
// The keys package's Keyring does so, counting all n against the key's
// budget.
type oneKeyBatch struct{ oneKey }

func (k oneKeyBatch) EncryptionKeys(context.Context, string, int) (*envelope.DEK, error) {
	return k.dek, nil
}

// A Sealer and an Opener encrypt and decrypt the fields of one record with
// one key lookup for all of them.
func ExampleCompact_Sealer() {
	ctx := context.Background()
	raw := make([]byte, envelope.DEKSize)
	rand.Read(raw)
	dek, err := envelope.NewDEK(envelope.AES256GCM, 1, raw)
	clear(raw)
	if err != nil {
		log.Fatal(err)
	}
	c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: oneKeyBatch{oneKey{dek}}})
	if err != nil {
		log.Fatal(err)
	}
	record := map[string]string{"ssn": "999-12-3456", "mrn": "MRN-00042", "last": "MacGyver246"}
	columns := []string{"last", "mrn", "ssn"}
	s, err := c.Sealer(ctx, "tenant:st-mary", len(columns))
	if err != nil {
		log.Fatal(err)
	}
	sealed := map[string][]byte{}
	for _, col := range columns {
		b := envelope.Binding{Scope: "tenant:st-mary", Table: "patients", Column: col, RecordID: "alice"}
		if sealed[col], err = s.Encrypt(ctx, []byte(record[col]), b); err != nil {
			log.Fatal(err)
		}
	}
	o := c.Opener("tenant:st-mary")
	for _, col := range columns {
		b := envelope.Binding{Scope: "tenant:st-mary", Table: "patients", Column: col, RecordID: "alice"}
		pt, err := o.AppendDecrypt(ctx, nil, sealed[col], b)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(col, string(pt))
	}
	// Output:
	// last MacGyver246
	// mrn MRN-00042
	// ssn 999-12-3456
}
