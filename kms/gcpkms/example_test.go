package gcpkms_test

import (
	"context"
	"fmt"
	"log"

	"google.golang.org/api/option"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/gcpkms"
)

// A KEK on a Cloud KMS key, with Application Default Credentials. It
// needs Google Cloud, so it is not run.
func Example() {
	ctx := context.Background()
	kek, err := gcpkms.New(ctx, gcpkms.Config{
		Key: "projects/hospital/locations/europe-west1/keyRings/phi/cryptoKeys/kek",
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
	fmt.Println(wk.KeyID)
}

// A service account key file and a regional endpoint.
func ExampleNew_credentials() {
	kek, err := gcpkms.New(context.Background(), gcpkms.Config{
		Key:           "projects/hospital/locations/europe-west1/keyRings/phi/cryptoKeys/kek",
		Endpoint:      "europe-west1-cloudkms.googleapis.com:443",
		ClientOptions: []option.ClientOption{option.WithAuthCredentialsFile(option.ServiceAccount, "/etc/phicrypt/kms-sa.json")},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer kek.Close()
}

// Applications usually configure their KEK as a URI.
func ExampleOpen() {
	kek, err := kms.Open(context.Background(),
		"gcp-kms://projects/hospital/locations/europe-west1/keyRings/phi/cryptoKeys/kek",
		map[string]kms.Opener{gcpkms.Scheme: gcpkms.Open})
	if err != nil {
		log.Fatal(err)
	}
	defer kek.(*gcpkms.KEK).Close()
}
