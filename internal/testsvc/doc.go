// Package testsvc starts real services for integration tests: a throwaway
// PostgreSQL 15 cluster, a HashiCorp Vault dev server with the transit
// engine, AWS local-kms and a SoftHSM2 token. Nothing is mocked. It uses only
// the standard library and the services' own programs.
//
// Every service listens on 127.0.0.1 on a free port (local-kms cannot be
// told to bind one address: it listens on all interfaces, and clients use
// 127.0.0.1). Every server runs as a child of the test process and is
// killed if that process dies (Linux).
//
// # Starting a service
//
// Most tests call a Start function, which stops the service when the test
// ends:
//
//	func TestWrap(t *testing.T) {
//		v := testsvc.StartVault(t)
//		client := newClient(v.Addr, v.Token) // transit is mounted at "transit/"
//		...
//	}
//
// Programs without a testing.TB (TestMain, examples, tools) call the New
// functions, which return an error and a value whose Close stops it.
//
// # Missing services
//
// When a service's programs are not installed, or Vault or local-kms are
// not built, a Start function calls [Missing]: the test is skipped with a
// message that names the command that provides the service. With PHICRYPT_REQUIRE_INTEGRATION=1
// (as in CI) the test fails instead, so a missing service is never mistaken
// for a pass. Any other failure (a server that does not come up) always
// fails the test.
//
// # Sharing one service in a package
//
// Creating a PostgreSQL cluster takes 1-2 s; starting Vault 0.2-0.3 s,
// local-kms 0.06 s and a SoftHSM token 0.05 s (2-core machine). A package whose tests all need one calls [SharedPostgres] or
// [SharedVault] in each test: the first call starts the service, later calls
// (from any goroutine, parallel tests included) return the same instance.
// The testing package has no per-package cleanup, so shared services are
// stopped by [RunMain], which the package's TestMain must call; a Shared
// function fails the test when it does not:
//
//	func TestMain(m *testing.M) { os.Exit(testsvc.RunMain(m)) }
//
// Tests sharing a cluster keep apart by creating their own database with
// [Postgres.CreateDatabase], and tests sharing a Vault by naming their own
// transit keys.
//
// # Vault and local-kms binaries
//
// Tests never build or install anything. Vault is built from the Go
// module in internal/vaultserver (a module of its own, so the library's
// go.mod stays lean) and local-kms is installed with go install, by the
// services command, into a cache folder that every clone shares:
//
//	go run ./internal/testsvc/cmd/services install
//
// A stamp file next to each binary records the sources it was built from;
// a test that finds no binary, or a stale one, calls [Missing] naming that
// command. Building Vault takes about 35 minutes on a cold 2-core machine
// and about 1 minute with a warm Go build cache.
//
// # Processes
//
// Servers and helper processes ([StartChild]) get a parent-death signal,
// so a test binary that is killed, even with SIGKILL, or that panics at
// go test's timeout leaves none behind; a reaper process then removes the
// services' temporary folders.
//
// # Environment
//
//   - PHICRYPT_REQUIRE_INTEGRATION=1: a missing service fails the test
//     instead of skipping it.
//   - PHICRYPT_CACHE_DIR: the cache folder; binaries go to its bin
//     subfolder. Default: .cache under the repository root (the folder of
//     the go.mod of module github.com/phicrypt/phicrypt).
//   - PHICRYPT_VAULT_BIN: use this Vault binary instead of the cached one.
//   - PHICRYPT_LOCAL_KMS_BIN: use this local-kms binary instead of the
//     cached one.
//   - PHICRYPT_FULL_TESTS=1: full-size runs (see [Full]).
//   - PHICRYPT_SERVICE_REPORT: a file collecting which services each
//     package ran against (see [EnvReport]).
//
// # Running as root
//
// initdb and postgres refuse to run as root. When the tests run as root,
// testsvc runs them as the postgres system user (created by Debian's
// postgresql packages) and gives that user the cluster's temporary folder.
package testsvc
