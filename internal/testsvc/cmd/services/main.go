// Command services provides the real services that phicrypt's integration
// tests run against, and reports which of them the tests used. Tests never
// install or build a service: a test whose service is missing skips (or,
// with PHICRYPT_REQUIRE_INTEGRATION=1, fails) with a message naming the
// command below that provides it.
//
//	go run ./internal/testsvc/cmd/services install [SERVICE...]
//	go run ./internal/testsvc/cmd/services status
//	go run ./internal/testsvc/cmd/services summary REPORT
//
// install provides the named services, or all of them: postgres and
// softhsm from Debian's packages (apt-get, through sudo when not root),
// vault built from internal/vaultserver and local-kms installed with go
// install, both into the cache folder (PHICRYPT_CACHE_DIR, default
// ~/.cache/phicrypt). It prints how long each took and exits 1 when one
// cannot be had.
//
// status says, for each service, whether tests on this machine will find
// it, and if not, the command that provides it.
//
// summary reads the report that tests wrote through PHICRYPT_SERVICE_REPORT
// and prints, per service, the packages that ran against it and those that
// skipped or failed without it, with why. It exits 1 when any did not run.
package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/phicrypt/phicrypt/internal/testsvc"
)

// service is one service the tests use.
type service struct {
	name    string // testsvc's name, as in the report
	arg     string // its name on the command line
	install func(context.Context) error
	ready   func() error
}

func services() []service {
	return []service{
		{testsvc.ServicePostgres, "postgres", aptInstall("postgresql-15"), testsvc.PostgresReady},
		{testsvc.ServiceSoftHSM, "softhsm", aptInstall("softhsm2"), testsvc.SoftHSMReady},
		{testsvc.ServiceVault, "vault", discard(testsvc.BuildVault), testsvc.VaultReady},
		{testsvc.ServiceLocalKMS, "local-kms", discard(testsvc.InstallLocalKMS), testsvc.LocalKMSReady},
	}
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx := context.Background()
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "install":
		os.Exit(install(ctx, args))
	case "status":
		os.Exit(status())
	case "summary":
		if len(args) != 1 {
			usage()
		}
		os.Exit(summary(args[0]))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: services install [postgres|softhsm|vault|local-kms ...] | status | summary REPORT")
	os.Exit(2)
}

func install(ctx context.Context, names []string) int {
	all := services()
	if len(names) == 0 {
		for _, s := range all {
			names = append(names, s.arg)
		}
	}
	code := 0
	for _, name := range names {
		i := slices.IndexFunc(all, func(s service) bool { return s.arg == name })
		if i < 0 {
			fmt.Fprintf(os.Stderr, "services: unknown service %q (want postgres, softhsm, vault or local-kms)\n", name)
			return 2
		}
		s := all[i]
		start := time.Now()
		if s.ready() != nil {
			if err := s.install(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "services: %s: %v\n", s.name, err)
				code = 1
				continue
			}
		}
		if err := s.ready(); err != nil {
			fmt.Fprintf(os.Stderr, "services: %s installed but not ready: %v\n", s.name, err)
			code = 1
			continue
		}
		fmt.Printf("services: %-10s ready (%.1fs)\n", s.name, time.Since(start).Seconds())
	}
	return code
}

func status() int {
	code := 0
	for _, s := range services() {
		if err := s.ready(); err != nil {
			fmt.Printf("%-10s missing: %v\n", s.name, err)
			code = 1
			continue
		}
		fmt.Printf("%-10s ready\n", s.name)
	}
	return code
}

func summary(path string) int {
	lines, err := testsvc.ReadReport(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := 0
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "service\tran in\tskipped or failed in")
	for _, s := range services() {
		ran, missed := map[string]bool{}, map[string]string{}
		for _, l := range lines {
			if l.Service != s.name {
				continue
			}
			if l.Outcome == testsvc.OutcomeRan {
				ran[l.Package] = true
			} else {
				missed[l.Package] = l.Outcome + ": " + l.Why
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", s.name, packages(len(ran)), packages(len(missed)))
		for _, pkg := range slices.Sorted(maps.Keys(missed)) {
			fmt.Fprintf(w, "\t\t%s: %s\n", pkg, missed[pkg])
			code = 1
		}
	}
	w.Flush()
	return code
}

// packages says "1 package" or "N packages".
func packages(n int) string {
	if n == 1 {
		return "1 package"
	}
	return fmt.Sprintf("%d packages", n)
}

// aptInstall returns an installer of a Debian package.
func aptInstall(pkg string) func(context.Context) error {
	return func(ctx context.Context) error {
		var prefix []string
		if os.Geteuid() != 0 {
			prefix = []string{"sudo"}
		}
		for _, args := range [][]string{{"apt-get", "update", "-qq"}, {"apt-get", "install", "-y", "-qq", pkg}} {
			args = append(prefix, args...)
			cmd := exec.CommandContext(ctx, args[0], args[1:]...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
			}
		}
		return nil
	}
}

// discard adapts a builder that returns a path.
func discard(f func(context.Context) (string, error)) func(context.Context) error {
	return func(ctx context.Context) error { _, err := f(ctx); return err }
}
