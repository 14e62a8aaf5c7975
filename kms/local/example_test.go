package local_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/phicrypt/phicrypt/kms/local"
)

// Create writes a key file readable by its owner only; Rotate adds a version
// and keeps the old ones for unwrapping.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "phicrypt-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "kek.json")

	kek, err := local.Create(path, local.Options{KeyID: "local:hospital-main"})
	if err != nil {
		log.Fatal(err)
	}
	dek := bytes.Repeat([]byte{7}, 32)
	wk, err := kek.Wrap(ctx, dek, []byte("scope=tenant:st-mary"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(wk.KeyID, kek.Version())

	rotated, err := local.Rotate(path, local.Options{})
	if err != nil {
		log.Fatal(err)
	}
	got, err := rotated.Unwrap(ctx, wk, []byte("scope=tenant:st-mary"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rotated.Version(), bytes.Equal(got, dek))
	fmt.Println(rotated)
	// Output:
	// local:hospital-main 1
	// 2 true
	// local.KEK{KeyID: "local:hospital-main", Version: 2, Versions: 2}
}

// In containers the key file can come from an environment variable, as
// JSON or as base64 of the JSON (a Kubernetes secret, say).
func ExampleNew_environment() {
	data, err := local.Generate(local.Options{KeyID: "local:container"})
	if err != nil {
		log.Fatal(err)
	}
	os.Setenv("PHICRYPT_KEK", base64.StdEncoding.EncodeToString(data))
	defer os.Unsetenv("PHICRYPT_KEK")

	kek, err := local.New(local.Config{Env: "PHICRYPT_KEK"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(kek.KeyID())
	// Output:
	// local:container
}

// A passphrase seals the key file at rest (Argon2id and AES-256-GCM), and
// New needs it to unseal the file. Passphrase-sealed files are not
// available in FIPS 140-3 mode (ErrNotApproved), so this example has no
// checked output.
func ExampleGenerate_passphrase() {
	data, err := local.Generate(local.Options{KeyID: "local:sealed", Passphrase: []byte("s3cret passphrase")})
	if err != nil {
		log.Fatal(err) // local.ErrNotApproved in FIPS mode
	}
	_, err = local.New(local.Config{Data: data})
	fmt.Println(err)
	kek, err := local.New(local.Config{Data: data, Passphrase: []byte("s3cret passphrase")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(kek.KeyID())
	// Prints:
	// local: key file needs a passphrase
	// local:sealed
}
