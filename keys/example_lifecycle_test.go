package keys_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/local"
)

// newLocalKEK returns a new local KEK; production code opens a Vault,
// cloud KMS or HSM key with kmsopen.Open.
func newLocalKEK(keyID string) *local.KEK {
	data, err := local.Generate(local.Options{KeyID: keyID})
	if err != nil {
		log.Fatal(err)
	}
	kek, err := local.New(local.Config{Data: data})
	if err != nil {
		log.Fatal(err)
	}
	return kek
}

// newExample returns a keyring over a memory store (keys.NewSQLStore in
// production) and a compact cipher over it.
func newExample(kek kms.KEK, store keys.Store) (*keys.Keyring, *envelope.Compact) {
	keyring, err := keys.New(keys.Config{KEK: kek, Store: store})
	if err != nil {
		log.Fatal(err)
	}
	cipher, err := envelope.NewCompact(envelope.CompactConfig{Keyring: keyring})
	if err != nil {
		log.Fatal(err)
	}
	return keyring, cipher
}

var ssn = envelope.Binding{Scope: "tenant:st-mary", Table: "patients", Column: "ssn", RecordID: "018f6b1e-7c3a-7000-8000-000000000001"}

func mustEncrypt(c *envelope.Compact, plaintext string) []byte {
	ct, err := c.Encrypt(context.Background(), []byte(plaintext), ssn)
	if err != nil {
		log.Fatal(err)
	}
	return ct
}

// Rotation makes a new data key version active; values encrypted under
// the old one still decrypt until the migration engine re-encrypts them.
func ExampleKeyring_Rotate() {
	ctx := context.Background()
	keyring, cipher := newExample(newLocalKEK("local:hospital-main"), keys.NewMemoryStore())
	old := mustEncrypt(cipher, "999-12-3456")

	v, err := keyring.Rotate(ctx, keys.DataKey("tenant:st-mary"))
	fmt.Println("active version:", v, err)
	pt, err := cipher.Decrypt(ctx, old, ssn)
	fmt.Printf("old value: %s %v\n", pt, err)
	sets, _ := keyring.Status(ctx, "tenant:st-mary")
	for _, r := range sets[0].Versions {
		fmt.Println("version", r.Version, r.State)
	}
	// Output:
	// active version: 2 <nil>
	// old value: 999-12-3456 <nil>
	// version 1 decrypt-only
	// version 2 active
}

// Once every value is re-encrypted under version 2, a minimum decryption
// version refuses version 1, before it is destroyed.
func ExampleKeyring_SetMinDecryptVersion() {
	ctx := context.Background()
	keyring, cipher := newExample(newLocalKEK("local:hospital-main"), keys.NewMemoryStore())
	old := mustEncrypt(cipher, "999-12-3456")
	id := keys.DataKey("tenant:st-mary")
	if _, err := keyring.Rotate(ctx, id); err != nil {
		log.Fatal(err)
	}

	err := keyring.SetMinDecryptVersion(ctx, id, 2)
	fmt.Println(err)
	_, err = cipher.Decrypt(ctx, old, ssn)
	fmt.Println(errors.Is(err, keys.ErrKeyUnusable))
	// Output:
	// <nil>
	// true
}

// Destroying a scope crypto-shreds it: every value encrypted under its
// keys becomes unreadable, and no new key is made for it.
func ExampleKeyring_Destroy() {
	ctx := context.Background()
	keyring, cipher := newExample(newLocalKEK("local:hospital-main"), keys.NewMemoryStore())
	ct := mustEncrypt(cipher, "999-12-3456")

	report, err := keyring.Destroy(ctx, "tenant:st-mary")
	fmt.Printf("key sets %d, versions destroyed %d, %v\n", report.KeySets, report.Versions, err)
	_, err = cipher.Decrypt(ctx, ct, ssn)
	fmt.Println(errors.Is(err, keys.ErrKeyDestroyed))
	_, err = cipher.Encrypt(ctx, []byte("999-12-3456"), ssn)
	fmt.Println(errors.Is(err, keys.ErrKeyDestroyed))
	// Output:
	// key sets 1, versions destroyed 1, <nil>
	// true
	// true
}

// Moving to a new KEK: the keyring wraps with the new one and still
// unwraps with the old one (kms.NewMulti); Rewrap moves every stored data
// key over, without touching the data, after which the old KEK can go.
func ExampleKeyring_Rewrap() {
	ctx := context.Background()
	store := keys.NewMemoryStore()
	oldKEK, newKEK := newLocalKEK("local:old-kms"), newLocalKEK("local:new-kms")
	_, cipher := newExample(oldKEK, store)
	ct := mustEncrypt(cipher, "999-12-3456")

	both, err := kms.NewMulti(newKEK, oldKEK)
	if err != nil {
		log.Fatal(err)
	}
	keyring, _ := newExample(both, store)
	// Two key sets: the tenant's data key and the store's metadata MAC
	// key (scope "phicrypt:metadata").
	report, err := keyring.Rewrap(ctx, keys.RewrapOptions{})
	fmt.Printf("scanned %d, rewrapped %d, failed %d, %v\n", report.Scanned, report.Rewrapped, report.Failed, err)

	_, cipher = newExample(newKEK, store) // the old KEK is gone
	pt, err := cipher.Decrypt(ctx, ct, ssn)
	fmt.Printf("%s %v\n", pt, err)
	// Output:
	// scanned 2, rewrapped 2, failed 0, <nil>
	// 999-12-3456 <nil>
}
