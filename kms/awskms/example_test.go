package awskms_test

import (
	"context"
	"fmt"
	"log"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/awskms"
)

// A KEK on a KMS key named by an alias, with credentials from the SDK's
// default chain. It needs AWS, so it is not run.
func Example() {
	ctx := context.Background()
	kek, err := awskms.New(ctx, awskms.Config{Key: "alias/phi", Region: "eu-west-1", FIPSEndpoint: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(kek.KeyID()) // aws-kms:arn:aws:kms:eu-west-1:…:key/…, the alias resolved

	dek := make([]byte, 32) // a data key from crypto/rand in practice
	wk, err := kek.Wrap(ctx, dek, []byte("scope=tenant:st-mary"))
	if err != nil {
		log.Fatal(err)
	}
	got, err := kek.Unwrap(ctx, wk, []byte("scope=tenant:st-mary"))
	if err != nil {
		log.Fatal(err)
	}
	defer clear(got)
}

// Applications usually configure their KEK as a URI. Write an ARN right
// after "aws-kms:", without "//".
func ExampleOpen() {
	kek, err := kms.Open(context.Background(),
		"aws-kms:arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		map[string]kms.Opener{awskms.Scheme: awskms.Open})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(kek.(kms.Identifier).KeyID())
}

// KMS generates the data key and wraps it in one call.
func ExampleKEK_GenerateDataKey() {
	ctx := context.Background()
	kek, err := awskms.New(ctx, awskms.Config{Key: "alias/phi", Region: "eu-west-1"})
	if err != nil {
		log.Fatal(err)
	}
	dek, wk, err := kek.GenerateDataKey(ctx, 32, []byte("scope=patient:1234"))
	if err != nil {
		log.Fatal(err)
	}
	defer clear(dek)
	fmt.Println(len(dek), wk.KeyID)
}
