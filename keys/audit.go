package keys

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/kms"
)

// Op is the kind of a key operation, as audited.
type Op string

// Audited operations.
const (
	// OpCreate: a key version was generated and wrapped by the KEK.
	OpCreate Op = "create"
	// OpUnwrap: a key version was unwrapped by the KEK into memory.
	OpUnwrap Op = "unwrap"
	// OpRotate: a new version became active and the old one decrypt-only.
	OpRotate Op = "rotate"
	// OpRewrap: a version was rewrapped under the KEK's current version.
	OpRewrap Op = "rewrap"
	// OpStateChange: a version changed state.
	OpStateChange Op = "state-change"
	// OpMinDecryptVersion: a key set's minimum decryption version changed.
	OpMinDecryptVersion Op = "min-decrypt-version"
	// OpDestroy: a version's key material was erased (crypto-shredding).
	OpDestroy Op = "destroy"
	// OpDenied: a use was refused (destroyed, suspended, compromised or
	// retired version).
	OpDenied Op = "denied"
	// OpUse: a key was used to encrypt, decrypt or compute blind index
	// values (only with Config.AuditUses, which audits every use, cached
	// or not).
	OpUse Op = "use"
	// OpKEKRotate: a KEK gained a new version (KEKID, Version). The KMS
	// rotates KEKs, not a Keyring: tools that rotate one, such as the
	// phicrypt command for local key files, record it.
	OpKEKRotate Op = "kek-rotate"
	// OpSealMetadata: a key set without a metadata MAC got one, through
	// the one-time migration Keyring.SealMetadata.
	OpSealMetadata Op = "seal-metadata"
)

// Outcome is whether an audited operation succeeded.
type Outcome string

// Outcomes.
const (
	Success Outcome = "success"
	Failure Outcome = "failure"
)

// Event is one audit record of a key operation. It never holds key
// material, plaintext or ciphertext; Scope identifies whose key it is.
type Event struct {
	Time time.Time `json:"time"`
	Op   Op        `json:"op"`
	// Scope and Key (a key set's Name) identify the key set, Version the
	// version (zero when the operation concerns the whole set).
	Scope   string `json:"scope"`
	Key     string `json:"key"`
	Version uint32 `json:"version,omitempty"`
	// KEKID is the KEK involved, for create, unwrap and rewrap.
	KEKID string `json:"kek_id,omitempty"`
	// From and To are the states of a state change.
	From State `json:"from,omitempty"`
	To   State `json:"to,omitempty"`
	// Use is "encrypt", "decrypt" or "index" for uses and denials.
	Use string `json:"use,omitempty"`
	// Principal and Purpose come from the context (WithPrincipal,
	// WithPurpose).
	Principal string  `json:"principal,omitempty"`
	Purpose   string  `json:"purpose,omitempty"`
	Outcome   Outcome `json:"outcome"`
	// ErrorClass classifies a failure (see ErrorClass), never the error
	// text.
	ErrorClass string `json:"error_class,omitempty"`
}

// An Auditor receives an Event for every key operation. Implementations
// must be safe for concurrent use. An error from Audit fails the operation
// when the keyring is configured fail-closed (Config.AuditFailClosed) and is
// otherwise ignored.
type Auditor interface {
	Audit(ctx context.Context, e Event) error
}

type principalKey struct{}
type purposeKey struct{}

// WithPrincipal returns a context whose key operations are audited as done
// by principal (a user or service identity).
func WithPrincipal(ctx context.Context, principal string) context.Context {
	return context.WithValue(ctx, principalKey{}, principal)
}

// WithPurpose returns a context whose key operations are audited with
// purpose (e.g. "treatment", "billing", "migration").
func WithPurpose(ctx context.Context, purpose string) context.Context {
	return context.WithValue(ctx, purposeKey{}, purpose)
}

// Principal returns the principal WithPrincipal put in ctx, or "".
func Principal(ctx context.Context) string {
	s, _ := ctx.Value(principalKey{}).(string)
	return s
}

// Purpose returns the purpose WithPurpose put in ctx, or "".
func Purpose(ctx context.Context) string {
	s, _ := ctx.Value(purposeKey{}).(string)
	return s
}

// ErrorClass names the class of err for audit records and metrics:
// "unavailable", "permission-denied", "key-not-found", "unwrap-failed",
// "destroyed", "unusable", "invalid-transition", "conflict", "canceled",
// "deadline", "audit", "metadata-tampered", "reserved-scope", "invalid-id"
// or "other"; "" for nil.
func ErrorClass(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.Is(err, kms.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, kms.ErrPermissionDenied):
		return "permission-denied"
	case errors.Is(err, ErrKeyDestroyed):
		return "destroyed"
	case errors.Is(err, ErrKeyUnusable):
		return "unusable"
	case errors.Is(err, envelope.ErrKeyNotFound), errors.Is(err, kms.ErrKeyNotFound):
		return "key-not-found"
	case errors.Is(err, kms.ErrUnwrapFailed), errors.Is(err, envelope.ErrDecrypt):
		return "unwrap-failed"
	case errors.Is(err, ErrInvalidTransition):
		return "invalid-transition"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrAudit):
		return "audit"
	case errors.Is(err, ErrMetadataTampered):
		return "metadata-tampered"
	case errors.Is(err, ErrStillInUse):
		return "in-use"
	case errors.Is(err, ErrPurgeIncomplete):
		return "purge-incomplete"
	case errors.Is(err, ErrReservedScope):
		return "reserved-scope"
	case errors.Is(err, ErrInvalidID):
		return "invalid-id"
	}
	return "other"
}

// SlogAuditor writes audit events to a slog.Logger, one record per event
// at its Level (Info by default), with the message "phicrypt key
// operation".
type SlogAuditor struct {
	Logger *slog.Logger
	Level  slog.Level
}

var _ Auditor = (*SlogAuditor)(nil)

// Audit implements Auditor. The record's time is the event's.
func (a *SlogAuditor) Audit(ctx context.Context, e Event) error {
	h := a.Logger.Handler()
	if !h.Enabled(ctx, a.Level) {
		return nil
	}
	r := slog.NewRecord(e.Time, a.Level, "phicrypt key operation", 0)
	r.AddAttrs(
		slog.String("op", string(e.Op)),
		slog.String("scope", e.Scope),
		slog.String("key", e.Key),
		slog.String("outcome", string(e.Outcome)),
	)
	if e.Version != 0 {
		r.AddAttrs(slog.Uint64("version", uint64(e.Version)))
	}
	for _, kv := range [][2]string{{"kek_id", e.KEKID}, {"use", e.Use}, {"principal", e.Principal}, {"purpose", e.Purpose}, {"error_class", e.ErrorClass}} {
		if kv[1] != "" {
			r.AddAttrs(slog.String(kv[0], kv[1]))
		}
	}
	if e.From != 0 || e.To != 0 {
		r.AddAttrs(slog.String("from", e.From.String()), slog.String("to", e.To.String()))
	}
	return h.Handle(ctx, r)
}

// MarshalText encodes a state by name, for JSON audit records.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a state name.
func (s *State) UnmarshalText(b []byte) error {
	st, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = st
	return nil
}
