// Command phicrypt is the operator's tool for phicrypt: it manages keys
// (create the key store, rotate, rewrap after a KEK rotation, crypto-shred
// a scope, show status), migrates tables (encrypt legacy plaintext,
// re-encrypt after a rotation, recompute blind indexes, verify), encrypts
// and decrypts NDJSON files, and verifies the tamper-evident audit log.
//
// Run phicrypt help, or phicrypt COMMAND -h, for the commands and their
// flags, and phicrypt version for the build. Settings come from flags, or
// from the environment:
//
//	PHICRYPT_KEK         the KEK's URI (see package kms/kmsopen)
//	PHICRYPT_KEYS_DSN    the key store's database
//	PHICRYPT_DSN         the application's database (migrations)
//	PHICRYPT_PRINCIPAL   who runs key operations, for the audit trail (default: USER)
//	PHICRYPT_AUDIT_FILE  a file that key events are appended to, as JSON lines (--audit-file)
//
// Nothing is created by mistake. Only keys init creates a key store; every
// other command refuses a key store that does not exist (a SQLite file is
// not created, a database without the tables is refused), failing with
// exit code 1 and an error matching keys.ErrNoStore. keys rotate and the
// migrate commands refuse a scope or an index key that does not exist
// (keys.ErrKeyNotFound, exit code 1) unless given --create; keys status
// and keys shred always do. encrypt creates the keys of the scopes it
// encrypts (per-patient scopes are new by nature), in a key store that
// must exist. keys rotate --scope S --all rotates every key of S and of
// the scopes under it (S/…, such as per-patient scopes) and says how many;
// keys shred --scope S likewise shreds S and every scope under it (a
// tenant's patients, whether their keys are wrapped under its parent key
// or by the KEK), and says how many.
//
// Key events (creating, unwrapping, rotating, rewrapping, destroying keys)
// go to the audit sinks: the key store's tamper-evident audit log when its
// database has one (keys init creates it), and the
// --audit-file. With either, a key operation that cannot be recorded fails
// (keys.ErrAudit), and standard error gets one summary line, such as
// "audit: 1146 key events (1144 create, 2 unwrap) recorded in the key
// store's audit log". With neither, or with --audit-file -, the events go
// to standard error as JSON lines, one per event, and no progress bar is
// shown (it would break them). --quiet silences progress bars and
// summaries, never audit events or errors. Scopes beginning with
// "phicrypt:" are phicrypt's own (the audit log's key): no command changes
// their keys.
//
// audit verify checks the audit log: edited, inserted and deleted events,
// and, against the anchors given (heads an earlier verify printed, kept
// where the database's administrators cannot write), a truncated tail.
// A log that holds events whose chain key was deleted from the key store
// is altered (exit 3), never "no audit log": every key command refuses to
// run on it (keys.ErrAuditTampered, exit 1) rather than record its events
// elsewhere.
//
// A DSN is a PostgreSQL URL (postgres://…) or a SQLite file
// (sqlite:path/to/file.db or file:path.db).
//
// Exit codes: 0 success, 1 failure (including a key store, scope or index
// that does not exist), 2 usage error, 3 a verification failed: migrate
// verify found work left (plaintext values or undecryptable rows), or
// audit verify found the audit log altered.
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
	exitIncomplete = 3 // a verification failed: work left, or an altered audit log
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
	// quiet (--quiet) silences progress bars and summaries.
	quiet bool
	// auditFile is --audit-file: a file key events are appended to.
	auditFile string
	// auditOnStderr is set when key events go to stderr as JSON: then no
	// progress bar is shown.
	auditOnStderr bool
}

func commands() []command {
	return []command{
		{"keys", "manage keys: init, rotate, rotate-kek, rewrap, shred, status", runKeys},
		{"migrate", "migrate a table: encrypt, reencrypt, reindex, verify, status", runMigrate},
		{"encrypt", "encrypt the PHI in a FHIR NDJSON file (a bulk export)", runEncrypt},
		{"decrypt", "decrypt a FHIR NDJSON file that encrypt wrote", runDecrypt},
		{"audit", "verify the key store's tamper-evident audit log", runAudit},
		{"version", "print phicrypt's version, Go version and commit", runVersion},
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
	if len(args) > 0 && (args[0] == "-version" || args[0] == "--version") {
		args = []string{"version"}
	}
	// Standard input may wait for ever (a terminal, an idle pipe): read
	// through a ctxReader, an interrupt still stops the command.
	e.stdin = &ctxReader{ctx: ctx, r: e.stdin}
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
			case errors.Is(err, errIncomplete), errors.Is(err, errTampered):
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
  phicrypt keys rotate --scope tenant:st-mary --all
  phicrypt migrate encrypt --create --dsn postgres://…/ehr --table patients --id id --scope-column tenant_id \
      --column ssn:string --column birth_date:time --index ssn_index=ssn:digits:16
  phicrypt migrate verify (same table flags)
  phicrypt encrypt --keys-dsn … --scope tenant:st-mary --create --per-patient --index ssn:16 --in Patient.ndjson --out Patient.enc.ndjson
  phicrypt audit verify --anchor-file /mnt/worm/phicrypt-anchors

Environment: PHICRYPT_KEK, PHICRYPT_KEYS_DSN, PHICRYPT_DSN, PHICRYPT_PRINCIPAL, PHICRYPT_AUDIT_FILE.
Exit codes: 0 success, 1 failure, 2 usage error, 3 a verification failed.
Run "phicrypt COMMAND -h" for a command's flags.
`)
}

func runVersion(ctx context.Context, e *env, args []string) error {
	fs := e.flags("version", "", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, versionString())
	return nil
}

// usagef returns a usage error.
func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}
