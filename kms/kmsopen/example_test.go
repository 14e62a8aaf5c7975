package kmsopen_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmsopen"
	"github.com/phicrypt/phicrypt/kms/local"
)

// A local KEK is a key file that must exist before Open: create it once
// (phicrypt keys init --create does the same), then open it by URI. The
// KEK comes back behind kms.Resilient.
func ExampleOpen() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "phicrypt-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "kek.json")

	_, err = kmsopen.Open(ctx, "local://"+path)
	fmt.Println("before:", errors.Is(err, kms.ErrKeyNotFound))

	if _, err := local.Create(path, local.Options{KeyID: "local:hospital-main"}); err != nil {
		log.Fatal(err)
	}
	kek, err := kmsopen.Open(ctx, "local://"+path)
	if err != nil {
		log.Fatal(err)
	}
	wk, err := kek.Wrap(ctx, make([]byte, 32), []byte("scope=tenant:st-mary"))
	fmt.Println("after:", wk.KeyID, err)
	// Output:
	// before: true
	// after: local:hospital-main <nil>
}
