package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
)

// auditors sends each event to every auditor in turn, and fails if any
// fails.
type auditors []keys.Auditor

var _ keys.Auditor = auditors(nil)

func (a auditors) Audit(ctx context.Context, e keys.Event) error {
	var errs []error
	for _, x := range a {
		if err := x.Audit(ctx, e); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
// Every key event goes to stderr as JSON, and, when the key store's
// database holds a tamper-evident audit log (keys init --audit-log, or an
// application's keys.NewAuditLog), into that log too: then the keyring is
// fail-closed, and an operation that cannot be recorded exits with an
// error matching keys.ErrAudit (the change itself may have been made
// before its event failed; the stderr trail still shows it).
// Each of tune, if any, adjusts the keyring's configuration first.
func (e *env) openKeyOp(ctx context.Context, c *common, tune ...func(*keys.Config)) (*session, error) {
	s, err := e.openStore(ctx, c)
	if err != nil {
		return nil, err
	}
	cfg := keys.Config{Auditor: e.auditor()}
	for _, f := range tune {
		f(&cfg)
	}
	log, err := keys.OpenAuditLog(ctx, s.db, s.dialect, s.kek)
	switch {
	case err == nil:
		s.auditLog = log
		cfg.Auditor, cfg.AuditFailClosed = auditors{cfg.Auditor, log}, true
	case !errors.Is(err, keys.ErrNoAuditLog):
		s.Close()
		return nil, fmt.Errorf("open the audit log: %w", err)
	}
	if err := s.newKeyring(cfg); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
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
	var sinks auditors = auditors{e.auditor()}
	if c.keysDSN != "" && kek != nil {
		db, dialect, err := openDB(c.keysDSN)
		if err != nil {
			return err
		}
		defer db.Close()
		log, err := keys.OpenAuditLog(ctx, db, dialect, kek)
		switch {
		case err == nil:
			sinks = append(sinks, log)
		case !errors.Is(err, keys.ErrNoAuditLog):
			return fmt.Errorf("open the audit log: %w", err)
		}
	}
	if err := sinks.Audit(ctx, ev); err != nil {
		return fmt.Errorf("%w: %w", keys.ErrAudit, err)
	}
	return nil
}
