package azurekv_test

import (
	"context"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/azurekv"
)

// An application opens its Azure key from configuration with this opener
// (added to kmsopen.Openers() when it has keys of other backends too), and
// puts it behind kms.Resilient as kmsopen.Open does. cred is typically
// azidentity.NewDefaultAzureCredential's.
func ExampleOpener() {
	var cred azcore.TokenCredential // from azidentity
	if cred == nil {
		return // this example needs Azure
	}
	ctx := context.Background()
	openers := map[string]kms.Opener{azurekv.Scheme: azurekv.Opener(cred, nil)}
	backend, err := kms.Open(ctx, "azure-kv://phi-vault.vault.azure.net/keys/kek", openers)
	if err != nil {
		fmt.Println(err)
		return
	}
	kr, err := keys.New(keys.Config{KEK: kms.Resilient(backend, kms.ResilientConfig{}), Store: keys.NewMemoryStore()})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = kr
}
