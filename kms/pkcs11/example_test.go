//go:build cgo

package pkcs11_test

import (
	"context"
	"fmt"
	"log"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/pkcs11"
)

// An operator creates the key once (and each later version) on the HSM;
// applications open it by label. The PIN comes from a file readable by
// the service's user only.
func ExampleNew() {
	ctx := context.Background()
	cfg := pkcs11.Config{
		ModulePath: "/usr/lib/softhsm/libsofthsm2.so",
		TokenLabel: "phi",
		PINFile:    "/run/secrets/hsm-pin",
		KeyLabel:   "kek",
	}
	if _, err := pkcs11.GenerateKey(ctx, cfg); err != nil {
		log.Fatal(err)
	}
	kek, err := pkcs11.New(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer kek.Close()
	wk, err := kek.Wrap(ctx, make([]byte, 32), []byte("scope=tenant:st-mary"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(wk.KeyID, kek.Mechanism())
}

// Applications that configure KEKs as URIs register Open for the pkcs11
// scheme. The PIN is read from the pin-source file, never from the URI.
func ExampleOpen() {
	ctx := context.Background()
	kek, err := kms.Open(ctx,
		"pkcs11:token=phi;object=kek?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/hsm-pin",
		map[string]kms.Opener{pkcs11.Scheme: pkcs11.Open})
	if err != nil {
		log.Fatal(err)
	}
	defer kek.(*pkcs11.KEK).Close()
	fmt.Println(kek.(kms.Identifier).KeyID())
}
