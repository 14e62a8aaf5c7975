package keys_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/phicrypt/phicrypt/keys"
)

// Per-patient keys wrapped under their tenant's parent key: one KMS call
// per tenant, and the whole tenant shredded by destroying its parent key.
func ExampleTenantParent() {
	ctx := context.Background()
	kr := exampleKeyring(keys.Config{Parent: keys.TenantParent})
	for _, patient := range []string{"tenant:st-mary/patient/1", "tenant:st-mary/patient/2"} {
		if _, err := kr.EncryptionKey(ctx, patient); err != nil {
			panic(err)
		}
	}
	sets, err := kr.Status(ctx, "tenant:st-mary/patient/1")
	if err != nil {
		panic(err)
	}
	keyID := sets[0].Versions[0].Wrapped.KeyID
	fmt.Println("wrapped under:", strings.TrimPrefix(keyID, keys.ParentWrapPrefix))

	report, err := kr.Destroy(ctx, "tenant:st-mary")
	if err != nil {
		panic(err)
	}
	fmt.Println("children destroyed:", report.ChildKeySets)
	_, err = kr.DecryptionKey(ctx, "tenant:st-mary/patient/2", 1)
	fmt.Println("patient 2 destroyed:", errors.Is(err, keys.ErrKeyDestroyed))
	// Output:
	// wrapped under: 1:tenant:st-mary
	// children destroyed: 2
	// patient 2 destroyed: true
}
