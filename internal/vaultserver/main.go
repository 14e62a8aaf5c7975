// Command vaultserver is the HashiCorp Vault server, built from its Go
// module so that phicrypt's integration tests run a real Vault dev server
// without downloading a prebuilt binary.
//
// It lives in a Go module of its own so that the library's go.mod does not
// carry Vault's dependency graph; the main module's go test ./... and
// go vet ./... do not see it. Vault v1.21.0 is pinned because it builds
// against the published github.com/hashicorp/vault/sdk v0.20.0 (later
// v1.21.x do not), and go.sum is committed, so builds are reproducible.
//
// Tests never build it: the services command builds it once into the
// cache folder, from the repository root (scripts/test-all and CI run it):
//
//	go run ./internal/testsvc/cmd/services install vault
//
// A server linking only what the tests use (transit, AppRole, the HTTP
// API, in-memory storage) would not build much faster: Vault's core
// package itself imports the seal wrappers, go-discover's cloud SDKs and
// the Okta SDK (1,376 of the full server's 2,319 non-standard packages).
// DEVELOPERS.md has the figures.
//
// A build by hand, to use through PHICRYPT_VAULT_BIN:
//
//	cd internal/vaultserver && go build -mod=mod -trimpath -o /tmp/vault .
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
