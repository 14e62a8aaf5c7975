package tinkkms_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"log"

	"github.com/tink-crypto/tink-go/v2/testing/fakekms"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/tinkkms"
)

// stdlibAEAD is a tink.AEAD made of the standard library's AES-256-GCM, to
// show that any value with Tink's two AEAD methods serves.
type stdlibAEAD struct{ cipher.AEAD }

func (a stdlibAEAD) Encrypt(pt, ad []byte) ([]byte, error) { return a.Seal(nil, nil, pt, ad), nil }
func (a stdlibAEAD) Decrypt(ct, ad []byte) ([]byte, error) { return a.Open(nil, nil, ct, ad) }

func ExampleNew() {
	ctx := context.Background()
	key := make([]byte, 32)
	rand.Read(key)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCMWithRandomNonce(block)

	kek, err := tinkkms.New(stdlibAEAD{gcm}, "tink:example")
	if err != nil {
		log.Fatal(err)
	}
	dek := bytes.Repeat([]byte{7}, 32)
	wk, err := kek.Wrap(ctx, dek, []byte("scope=tenant:st-mary"))
	if err != nil {
		log.Fatal(err)
	}
	got, err := kek.Unwrap(ctx, wk, []byte("scope=tenant:st-mary"))
	fmt.Println(wk.KeyID, bytes.Equal(got, dek), err)
	_, err = kek.Unwrap(ctx, wk, []byte("scope=tenant:other"))
	fmt.Println(err)
	// Output:
	// tink:example true <nil>
	// kms: unwrap tink:example: unwrap failed
}

// A Tink KMS client (here Tink's fake KMS, whose key URIs carry their key;
// in production Tink's GCP, AWS or Vault client) serves its keys as KEKs.
func ExampleFromClient() {
	ctx := context.Background()
	client, err := fakekms.NewClient("fake-kms://")
	if err != nil {
		log.Fatal(err)
	}
	keyURI, err := fakekms.NewKeyURI()
	if err != nil {
		log.Fatal(err)
	}
	var kek kms.KEK
	kek, err = tinkkms.FromClient(client, keyURI)
	if err != nil {
		log.Fatal(err)
	}
	wk, err := kek.Wrap(ctx, bytes.Repeat([]byte{7}, 32), []byte("scope=tenant:st-mary"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(wk.KeyID))
}
