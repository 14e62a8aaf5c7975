package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
)

// auditSinks is where a session's key events go: the key store
// database's tamper-evident audit log when it has one, the --audit-file
// (JSON lines), or, when neither is configured, standard error as JSON,
// so that no event is lost. It counts the events for the one-line summary
// printed when the session closes.
type auditSinks struct {
	// log is the tamper-evident log, or nil.
	log *keys.AuditLog
	// json writes JSON lines to file, or to stderr when file is nil.
	json *keys.SlogAuditor
	file *os.File

	mu    sync.Mutex
	count map[keys.Op]int
}

var _ keys.Auditor = (*auditSinks)(nil)

// sinks returns the audit sinks of a session on db: its tamper-evident
// log if it has one, and the --audit-file. Events go to stderr only when
// neither exists or --audit-file is "-". A log that holds events but
// whose chain key is gone fails (keys.ErrAuditTampered): the session does
// not start.
func (e *env) sinks(ctx context.Context, db *sql.DB, dialect keys.Dialect, kek kms.KEK) (*auditSinks, error) {
	a := &auditSinks{count: map[keys.Op]int{}}
	if db != nil {
		log, err := keys.OpenAuditLog(ctx, db, dialect, kek)
		switch {
		case err == nil:
			a.log = log
		case errors.Is(err, keys.ErrAuditTampered):
			// Fail closed: a log whose chain key is gone must not turn
			// into "no log", where events would only go to stderr.
			return nil, fmt.Errorf("open the audit log (run phicrypt audit verify): %w", err)
		case !errors.Is(err, keys.ErrNoAuditLog):
			return nil, fmt.Errorf("open the audit log: %w", err)
		}
	}
	var w io.Writer
	switch {
	case e.auditFile == "-" || (e.auditFile == "" && a.log == nil):
		w, e.auditOnStderr = e.stderr, true
	case e.auditFile != "":
		f, err := os.OpenFile(e.auditFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit file: %w", err)
		}
		a.file, w = f, f
	}
	if w != nil {
		a.json = &keys.SlogAuditor{Logger: slog.New(slog.NewJSONHandler(w, nil))}
	}
	return a, nil
}

// Audit records e in every sink, and fails if any fails.
func (a *auditSinks) Audit(ctx context.Context, e keys.Event) error {
	var errs []error
	if a.log != nil {
		errs = append(errs, a.log.Audit(ctx, e))
	}
	if a.json != nil {
		errs = append(errs, a.json.Audit(ctx, e))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	a.mu.Lock()
	a.count[e.Op]++
	a.mu.Unlock()
	return nil
}

// durable reports whether events are kept somewhere other than stderr:
// then a keyring fails closed (an event that cannot be recorded fails
// its operation).
func (a *auditSinks) durable() bool { return a.log != nil || a.file != nil }

// where names the durable sinks for the summary.
func (a *auditSinks) where() string {
	var w []string
	if a.log != nil {
		w = append(w, "the key store's audit log")
	}
	if a.file != nil {
		w = append(w, a.file.Name())
	}
	return strings.Join(w, " and ")
}

// close flushes the audit file and prints the summary: one line on
// stderr, unless --quiet or the events themselves went to stderr.
func (a *auditSinks) close(e *env) {
	if a.file != nil {
		if err := errors.Join(a.file.Sync(), a.file.Close()); err != nil {
			fmt.Fprintf(e.stderr, "phicrypt: audit file: %v\n", err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	total := 0
	var ops []string
	for op, n := range a.count {
		total += n
		ops = append(ops, fmt.Sprintf("%d %s", n, op))
	}
	if total == 0 || e.quiet || !a.durable() {
		return
	}
	slices.Sort(ops)
	fmt.Fprintf(e.stderr, "audit: %s (%s) recorded in %s\n", plural(total, "key event"), strings.Join(ops, ", "), a.where())
}

// keyOpContext returns ctx with the principal and purpose that the key
// operation op is audited with: the principal is PHICRYPT_PRINCIPAL, or
// the login name (USER), and the purpose "phicrypt keys " and op.
func (e *env) keyOpContext(ctx context.Context, op string) context.Context {
	principal := e.getenv("PHICRYPT_PRINCIPAL")
	if principal == "" {
		principal = e.getenv("USER")
	}
	if principal != "" {
		ctx = keys.WithPrincipal(ctx, principal)
	}
	return keys.WithPurpose(ctx, "phicrypt keys "+op)
}

// openKeyOp opens a session for a key operation (rotate, rewrap, shred).
// Its events go to the audit sinks (see env.sinks): when the key store's
// database holds a tamper-evident audit log (keys init --audit-log, or an
// application's keys.NewAuditLog), or an --audit-file is given, the
// keyring is fail-closed, and an operation that cannot be recorded exits
// with an error matching keys.ErrAudit (the change itself may have been
// made before its event failed). Each of tune, if any, adjusts the
// keyring's configuration first.
func (e *env) openKeyOp(ctx context.Context, c *common, tune ...func(*keys.Config)) (*session, error) {
	return e.open(ctx, c, openOptions{audit: true, tune: tune})
}

// recordKEKRotation audits the rotation of kek (err is its failure, if
// any) on stderr and, when --keys-dsn names a key store whose database
// holds an audit log, in that log.
func (e *env) recordKEKRotation(ctx context.Context, c *common, kek kms.KEK, keyID string, version uint32, rotateErr error) error {
	ev := keys.Event{Time: time.Now().UTC(), Op: keys.OpKEKRotate, KEKID: keyID, Version: version,
		Principal: keys.Principal(ctx), Purpose: keys.Purpose(ctx), Outcome: keys.Success}
	if rotateErr != nil {
		ev.Outcome, ev.ErrorClass = keys.Failure, keys.ErrorClass(rotateErr)
	}
	var db *sql.DB
	var dialect keys.Dialect
	if c.keysDSN != "" && kek != nil {
		var err error
		if db, dialect, err = openKeysDB(c.keysDSN, false); err != nil {
			return err
		}
		defer db.Close()
	}
	sinks, err := e.sinks(ctx, db, dialect, kek)
	if err != nil {
		return err
	}
	defer sinks.close(e)
	if err := sinks.Audit(ctx, ev); err != nil {
		return fmt.Errorf("%w: %w", keys.ErrAudit, err)
	}
	return nil
}
