// Command phicrypt is the operator's tool for phicrypt: it manages keys
// (create the key store, rotate, rewrap after a KEK rotation, crypto-shred
// a scope, show status), migrates tables (encrypt legacy plaintext,
// re-encrypt after a rotation, recompute blind indexes, verify), and
// encrypts and decrypts NDJSON files.
//
// Run phicrypt help, or phicrypt COMMAND -h, for the commands and their
// flags. Settings come from flags, or from the environment:
//
//	PHICRYPT_KEK        the KEK's URI (see package kms/kmsopen)
//	PHICRYPT_KEYS_DSN   the key store's database
//	PHICRYPT_DSN        the application's database (migrations)
//	PHICRYPT_PRINCIPAL  who runs key operations, for the audit trail (default: USER)
//
// Key operations (keys rotate, rotate-kek, rewrap, shred) are audited as
// JSON on stderr and, when the key store's database holds a tamper-evident
// audit log (keys init --audit-log creates one), in that log too; an
// operation that cannot be recorded there fails. Scopes beginning with
// "phicrypt:" are phicrypt's own (the audit log's key): no command
// changes their keys.
//
// A DSN is a PostgreSQL URL (postgres://…) or a SQLite file
// (sqlite:path/to/file.db or file:path.db).
//
// Exit codes: 0 success, 1 failure, 2 usage error, 3 a verification found
// work left (plaintext values or undecryptable rows).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK         = 0
	exitFailure    = 1
	exitUsage      = 2
	exitIncomplete = 3
)

// errUsage marks a usage error; errIncomplete a verification with work
// left.
var (
	errUsage      = errors.New("usage")
	errIncomplete = errors.New("incomplete")
)

// command is a subcommand.
type command struct {
	name, summary string
	run           func(ctx context.Context, env *env, args []string) error
}

// env is what commands write to and read from: replaceable in tests.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// interactive says whether stderr is a terminal (progress bars).
	interactive bool
}

func commands() []command {
	return []command{
		{"keys", "manage keys: init, rotate, rotate-kek, rewrap, shred, status", runKeys},
		{"migrate", "migrate a table: encrypt, reencrypt, reindex, verify, status", runMigrate},
		{"encrypt", "encrypt the PHI in a FHIR NDJSON file (a bulk export)", runEncrypt},
		{"decrypt", "decrypt a FHIR NDJSON file that encrypt wrote", runDecrypt},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, interactive: isTerminal(os.Stderr)}
	os.Exit(run(ctx, e, os.Args[1:]))
}

// run runs the command line args and returns the exit code.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(e.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, e, args[1:])
			switch {
			case err == nil:
				return exitOK
			case errors.Is(err, flag.ErrHelp):
				return exitOK
			case errors.Is(err, errUsage):
				fmt.Fprintf(e.stderr, "phicrypt %s: %v\n", c.name, err)
				return exitUsage
			case errors.Is(err, errIncomplete):
				return exitIncomplete
			default:
				fmt.Fprintf(e.stderr, "phicrypt %s: %v\n", c.name, err)
				return exitFailure
			}
		}
	}
	fmt.Fprintf(e.stderr, "phicrypt: unknown command %q\n\n", args[0])
	usage(e.stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `phicrypt: keys, table migrations and file encryption for phicrypt

Usage:
  phicrypt COMMAND [SUBCOMMAND] [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Examples:
  phicrypt keys init --kek local:///etc/phicrypt/kek.json --create --keys-dsn postgres://…/ehr
  phicrypt keys status --scope tenant:st-mary
  phicrypt migrate encrypt --dsn postgres://…/ehr --table patients --id id --scope-column tenant_id \
      --column ssn:string --column birth_date:time --index ssn_index=ssn:digits:16
  phicrypt migrate verify (same table flags)
  phicrypt encrypt --keys-dsn … --scope tenant:st-mary --per-patient --index ssn:16 --in Patient.ndjson --out Patient.enc.ndjson

Environment: PHICRYPT_KEK, PHICRYPT_KEYS_DSN, PHICRYPT_DSN.
Run "phicrypt COMMAND -h" for a command's flags.
`)
}

// usagef returns a usage error.
func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}
