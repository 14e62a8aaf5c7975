// Command prebuild builds Vault and installs local-kms into the cache
// folder that internal/testsvc uses, so that tests find them ready. CI runs
// it before go test, from the repository root:
//
//	go run ./internal/testsvc/cmd/prebuild            # both
//	go run ./internal/testsvc/cmd/prebuild vault      # one
//
// It prints each binary's path and how long getting it took, and exits 1
// when one cannot be had.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/phicrypt/phicrypt/internal/testsvc"
)

func main() {
	tools := map[string]func(context.Context) (string, error){
		"vault":     testsvc.BuildVault,
		"local-kms": testsvc.InstallLocalKMS,
	}
	names := os.Args[1:]
	if len(names) == 0 {
		names = []string{"vault", "local-kms"}
	}
	code := 0
	for _, name := range names {
		get, ok := tools[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "prebuild: unknown tool %q (want vault or local-kms)\n", name)
			os.Exit(2)
		}
		start := time.Now()
		path, err := get(context.Background())
		if err != nil {
			fmt.Fprintf(os.Stderr, "prebuild: %s: %v\n", name, err)
			code = 1
			continue
		}
		fmt.Printf("prebuild: %s: %s (%.1fs)\n", name, path, time.Since(start).Seconds())
	}
	os.Exit(code)
}
