package vault_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/vault"
)

// A KEK on the transit key "phi", created with
// "vault write -f transit/keys/phi type=aes256-gcm96 derived=true".
// It needs a Vault server, so it is not run.
func Example() {
	ctx := context.Background()
	kek, err := vault.New(ctx, vault.Config{
		Address: "https://vault.example.org:8200",
		TLS:     vault.TLSConfig{CACert: "/etc/phicrypt/vault-ca.pem"},
		Key:     "phi",
		Token:   os.Getenv("VAULT_TOKEN"),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer kek.Close()

	dek := make([]byte, 32) // a data key from crypto/rand in practice
	wk, err := kek.Wrap(ctx, dek, []byte("scope=tenant:st-mary"))
	if err != nil {
		log.Fatal(err)
	}
	version, _ := vault.KeyVersion(wk)
	fmt.Println(wk.KeyID, version, kek.Binding())
}

// AppRole credentials, the secret id in a file that an orchestrator
// replaces; the token is renewed, and the KEK logs in again before it
// expires.
func ExampleNew_appRole() {
	kek, err := vault.New(context.Background(), vault.Config{
		Address:   "https://vault.example.org:8200",
		Namespace: "hospital",
		Key:       "phi",
		AppRole: &vault.AppRole{
			RoleID:       os.Getenv("VAULT_ROLE_ID"),
			SecretIDFile: "/run/secrets/vault-secret-id",
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer kek.Close()
	fmt.Println(kek.KeyID())
}

// Applications usually configure their KEK as a URI; the credentials come
// from the environment.
func ExampleOpen() {
	ctx := context.Background()
	kek, err := kms.Open(ctx, "vault://vault.example.org:8200/transit/keys/phi?namespace=hospital",
		map[string]kms.Opener{vault.Scheme: vault.Open})
	if err != nil {
		log.Fatal(err)
	}
	defer kek.(*vault.KEK).Close()
}

// After "vault write -f transit/keys/phi/rotate", rewrap stored data keys
// under the new version in batches, without them leaving Vault.
func ExampleKEK_Rewrap() {
	ctx := context.Background()
	kek, err := vault.New(ctx, vault.Config{Address: "https://vault.example.org:8200", Key: "phi", Token: os.Getenv("VAULT_TOKEN")})
	if err != nil {
		log.Fatal(err)
	}
	defer kek.Close()

	var stored []kms.WrappedKey // read from the key store
	var aads [][]byte           // the AAD each was wrapped with
	results, err := kek.Rewrap(ctx, stored, aads)
	if err != nil {
		log.Fatal(err) // the whole call failed: Vault unavailable, permission denied
	}
	for i, r := range results {
		if r.Err != nil {
			log.Printf("key %d: %v", i, r.Err) // this key only
			continue
		}
		stored[i] = r.Key
	}
}

// Vault generates the data key and wraps it in one call.
func ExampleKEK_GenerateDataKey() {
	ctx := context.Background()
	kek, err := vault.New(ctx, vault.Config{Address: "https://vault.example.org:8200", Key: "phi", Token: os.Getenv("VAULT_TOKEN")})
	if err != nil {
		log.Fatal(err)
	}
	defer kek.Close()
	dek, wk, err := kek.GenerateDataKey(ctx, 32, []byte("scope=patient:1234"))
	if err != nil {
		log.Fatal(err)
	}
	defer clear(dek)
	fmt.Println(len(dek), wk.KeyID)
}

func ExampleKeyVersion() {
	wk := kms.WrappedKey{
		KeyID:      "vault:transit/phi",
		Ciphertext: []byte("vault:v3:9Ql0JaYwyk5jNLHzXgEaHIbgbF0vEZjX7zC1GaCr8Gq0dHgu3J+lJrc1Ge1IqiHy6sxo5ki+Xfd6TWBxC8EUgQ=="),
	}
	v, err := vault.KeyVersion(wk)
	fmt.Println(v, err)
	// Output: 3 <nil>
}
