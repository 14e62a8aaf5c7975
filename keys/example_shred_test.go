package keys_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

// exampleKeyring returns a keyring over a memory store and a fresh local
// KEK.
func exampleKeyring(cfg keys.Config) *keys.Keyring {
	data, err := local.Generate(local.Options{KeyID: "local:example"})
	if err != nil {
		panic(err)
	}
	kek, err := local.New(local.Config{Data: data})
	if err != nil {
		panic(err)
	}
	cfg.KEK, cfg.Store = kek, keys.NewMemoryStore()
	kr, err := keys.New(cfg)
	if err != nil {
		panic(err)
	}
	return kr
}

// Shred a patient whose SSN is indexed under the tenant's index key: the
// eraser (here a callback; migrate.Eraser and gormphi.Eraser for tables)
// sets the patient's index values to NULL, before and after the keys are
// destroyed.
func ExampleKeyring_Shred() {
	ctx := context.Background()
	kr := exampleKeyring(keys.Config{})
	patient := "tenant:st-mary/patient/42"
	if _, err := kr.EncryptionKey(ctx, patient); err != nil {
		panic(err)
	}
	searchTable := map[string][]byte{patient: []byte("index value")}
	eraser := keys.IndexEraserFunc(func(ctx context.Context, scope string) (int64, error) {
		if _, ok := searchTable[scope]; !ok {
			return 0, nil
		}
		delete(searchTable, scope)
		return 1, nil
	})
	report, err := kr.Shred(ctx, patient, keys.ShredOptions{Erasers: []keys.IndexEraser{eraser}})
	if err != nil {
		panic(err)
	}
	fmt.Printf("destroyed %d key versions, erased %d index rows\n", report.Versions, report.IndexRowsErased)
	_, err = kr.DecryptionKey(ctx, patient, 1)
	fmt.Println(errors.Is(err, keys.ErrKeyDestroyed))
	// Output:
	// destroyed 1 key versions, erased 1 index rows
	// true
}

// Retire refuses while rows still use a version; migrate.Usage counts
// them from the tables' specs.
func ExampleKeyring_Retire() {
	ctx := context.Background()
	// Replicas forget keys at once in this example; by default Retire
	// refuses a version active less than CacheMaxAge (5 minutes) ago.
	kr := exampleKeyring(keys.Config{CacheMaxAge: time.Nanosecond})
	id := keys.DataKey("tenant:st-mary")
	if _, err := kr.EncryptionKey(ctx, id.Scope); err != nil {
		panic(err)
	}
	if _, err := kr.Rotate(ctx, id); err != nil {
		panic(err)
	}
	rows := map[uint32]int64{1: 12, 2: 30}
	check := keys.UsageCheckerFunc(func(context.Context, keys.ID) (map[uint32]int64, error) { return rows, nil })
	err := kr.Retire(ctx, id, 2, check)
	var inUse *keys.InUseError
	if errors.As(err, &inUse) {
		fmt.Printf("refused: version %d, %d rows\n", inUse.Version, inUse.Rows)
	}
	rows[1] = 0 // after migrate reencrypt
	fmt.Println(kr.Retire(ctx, id, 2, check))
	// Output:
	// refused: version 1, 12 rows
	// <nil>
}
