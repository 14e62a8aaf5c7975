// Package kms defines the key-encryption key (KEK) interface that every key
// management backend implements, the errors callers branch on, and the rules
// for key identifiers.
//
// A KEK never leaves its KMS. It wraps (encrypts) and unwraps (decrypts) data
// keys, the DEKs that encrypt patient data, binding associated data (AAD) to
// each wrap so that a wrapped key moved to another purpose fails to unwrap.
// Most applications never call a KEK directly: they hand one to the
// envelope or keys packages, which call it only when a data key is created
// or is missing from their caches.
//
// # Backends
//
// The interface is deliberately tiny (two methods, both taking a
// context.Context first) so that a backend is small and easy to audit:
//
//   - kms/local: a key file on disk or in an environment variable, for
//     development, tests and air-gapped sites.
//   - kms/vault, kms/awskms, kms/gcpkms, kms/pkcs11 and an adapter for Tink
//     KMS clients: production custody. kms/azurekv (Azure Key Vault and
//     Managed HSM) is a module of its own.
//
// Optional capabilities are separate one-method interfaces that callers
// discover with a type assertion, as with io.WriterTo: [Identifier] for a
// KEK that knows its key id, [Rewrapper] for server-side batch rewrapping
// after a KEK rotation.
//
// Every backend runs the conformance suite in kms/kmstest.
//
// # Decorators
//
// Backends make one attempt per call: their SDKs' own retries are off, so
// that retries, timeouts and the circuit breaker are decided once, here,
// whatever the backend. Most applications should therefore wrap their KEK
// with [Resilient], which applies the production stack with production
// defaults (kms/kmsopen.Open does it for them):
//
//	kek = kms.Resilient(backend, kms.ResilientConfig{})
//
// [WithRetry], [Breaker.Guard], [WithTimeout] and [WithObserver] wrap a KEK
// in another that adds one concern; [NewMulti] combines KEKs so that a site
// can move from one KMS to another. The decorators return the KEK interface
// rather than a concrete type because the result has exactly the optional
// interfaces of the KEK it wraps: it is an Identifier, a Rewrapper or an
// io.Closer (whose Close closes the backend) only when the inner KEK is,
// so that a type assertion answers the same before and after decoration.
// Resilient is this stack, outermost first:
//
//	kek = kms.WithRetry(breaker.Guard(kms.WithTimeout(kms.WithObserver(backend, obs), timeouts)), retry)
//
// so that each attempt is timed out and observed, the breaker counts every
// attempt, and retries stop as soon as the breaker opens.
//
// # Errors
//
// Backends classify failures with the sentinels below, so callers can branch
// on them with errors.Is whatever the backend: [ErrUnavailable] is transient
// and may be retried, [ErrPermissionDenied] and [ErrKeyNotFound] are not,
// [ErrUnwrapFailed] means the wrapped key or its AAD is wrong (an
// authentication failure, never retried). A cancelled or expired context
// is reported as the context's own error (context.Canceled or
// context.DeadlineExceeded), also wrapped. Backends return an [*Error] that
// carries the operation, the key id and the cause; its message never
// contains key material or AAD.
//
// # Key identifiers
//
// Every KEK has a key id, a short URI that names the key (not where it is
// served from): for example "local:hospital-main", "vault:transit/phi",
// "aws-kms:arn:aws:kms:eu-west-1:111122223333:key/…". Key ids are stored
// next to wrapped keys, so a wrapped key says which KEK can unwrap it (see
// [WrappedKey]) and a multi-KMS setup can route it. See [ValidateKeyID] for
// the rules.
package kms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// A KEK is a key-encryption key held by a key management system. It wraps
// and unwraps data keys. Implementations must be safe for concurrent use,
// must honour the context's deadline and cancellation, and must never
// modify the slices they are given.
type KEK interface {
	// Wrap encrypts dek under the KEK's current version and binds aad to
	// it: the result unwraps only with the same aad. dek must be between
	// MinDataKeySize and MaxDataKeySize bytes and aad at most MaxAADSize.
	Wrap(ctx context.Context, dek, aad []byte) (WrappedKey, error)

	// Unwrap decrypts a key produced by Wrap of this KEK (any of its
	// versions) with the same aad. A wrong key, a wrong aad or a tampered
	// ciphertext fail with ErrUnwrapFailed; a wrapped key that names another
	// KEK fails with ErrKeyNotFound. The returned slice is new and belongs
	// to the caller, who should clear it when done.
	Unwrap(ctx context.Context, wk WrappedKey, aad []byte) ([]byte, error)
}

// An Identifier is a KEK that knows its key id without calling the KMS.
// Every backend of this module implements it; decorators forward it.
type Identifier interface {
	// KeyID returns the key id that the KEK's wrapped keys carry.
	KeyID() string
}

// A Rewrapper is a KEK that can re-encrypt wrapped keys under its current
// version without exposing them outside the KMS, in one call for many keys
// (Vault Transit's rewrap endpoint, for example). Callers that rotate KEKs
// use it when a KEK offers it and fall back to Unwrap then Wrap otherwise.
type Rewrapper interface {
	// Rewrap re-encrypts each key in wks, which was wrapped with the AAD of
	// the same index in aads, under the KEK's current version. It returns
	// one result per input, in order; a failure of one item is reported in
	// its RewrapResult and does not fail the others. The error is for
	// failures of the whole call (unavailable KMS, cancelled context).
	Rewrap(ctx context.Context, wks []WrappedKey, aads [][]byte) ([]RewrapResult, error)
}

// RewrapResult is the outcome of rewrapping one key with a [Rewrapper].
type RewrapResult struct {
	// Key is the rewrapped key when Err is nil.
	Key WrappedKey
	// Err is the failure of this item, classified like Unwrap's errors.
	Err error
}

// Size limits that every KEK enforces, so that callers and backends agree on
// what a data key and its AAD may be. They fit every supported KMS (AWS KMS
// and Vault accept up to 4 KiB of plaintext).
const (
	// MinDataKeySize is the smallest data key a KEK wraps (128 bits).
	MinDataKeySize = 16
	// MaxDataKeySize is the largest data key a KEK wraps (512 bits,
	// enough for an AES-SIV key pair).
	MaxDataKeySize = 64
	// MaxAADSize is the largest associated data bound to a wrap.
	MaxAADSize = 2048
	// MaxWrappedSize is the largest ciphertext a wrapped key may have.
	MaxWrappedSize = 4096
	// MaxKeyIDSize is the longest key id.
	MaxKeyIDSize = 512
)

// WrappedKey is a data key encrypted by a KEK. It is safe to store next to
// the data it protects. Its String and LogValue methods do not print the
// ciphertext.
type WrappedKey struct {
	// KeyID names the KEK that wrapped the key (see ValidateKeyID). It stays
	// the same across the KEK's versions.
	KeyID string
	// Ciphertext is the backend's encoding of the wrapped key; it includes
	// the KEK version where the backend has versions. Treat it as opaque.
	Ciphertext []byte
}

// String returns the key id and the ciphertext size, never the ciphertext.
func (wk WrappedKey) String() string {
	return fmt.Sprintf("kms.WrappedKey{KeyID: %q, Ciphertext: %d bytes}", wk.KeyID, len(wk.Ciphertext))
}

// GoString is like String, so that %#v does not print the ciphertext.
func (wk WrappedKey) GoString() string { return wk.String() }

// LogValue logs the key id and the ciphertext size, never the ciphertext,
// so that slog's JSON handler does not log it either. (encoding/json
// itself still encodes the ciphertext: stores may keep wrapped keys as
// JSON.)
func (wk WrappedKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("key_id", wk.KeyID), slog.Int("ciphertext_bytes", len(wk.Ciphertext)))
}

// Sentinel errors that every backend maps its failures to. Test for them
// with errors.Is.
var (
	// ErrUnavailable means the KMS could not be reached or answered with a
	// transient failure (network error, timeout, 5xx, sealed Vault, open
	// circuit breaker). The call may succeed if retried later.
	ErrUnavailable = errors.New("kms: unavailable")
	// ErrPermissionDenied means the KMS refused the caller: missing or
	// expired credentials, or a policy that forbids the operation. It is
	// never retried.
	ErrPermissionDenied = errors.New("kms: permission denied")
	// ErrKeyNotFound means the KEK does not exist, is disabled, or a wrapped
	// key names another KEK.
	ErrKeyNotFound = errors.New("kms: key not found")
	// ErrUnwrapFailed means a wrapped key did not authenticate: wrong key,
	// wrong associated data, or a tampered or truncated ciphertext.
	ErrUnwrapFailed = errors.New("kms: unwrap failed")
	// ErrInvalidInput means an argument is outside the limits of this
	// package (data key or AAD size, malformed key id).
	ErrInvalidInput = errors.New("kms: invalid input")
)

// Error is the error type that backends return. It records what failed and
// why, without key material or AAD.
type Error struct {
	// Op is the operation: "wrap", "unwrap", "rewrap", "open".
	Op string
	// KeyID is the KEK's key id, when known.
	KeyID string
	// Kind is one of the sentinel errors of this package, or a context
	// error (context.Canceled, context.DeadlineExceeded).
	Kind error
	// Err is the underlying cause, if any. Backends make sure it does not
	// carry secrets.
	Err error
}

// Error returns "kms: <op> <key id>: <kind>: <cause>".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("kms: ")
	b.WriteString(e.Op)
	if e.KeyID != "" {
		b.WriteString(" ")
		b.WriteString(e.KeyID)
	}
	if e.Kind != nil {
		b.WriteString(": ")
		b.WriteString(strings.TrimPrefix(e.Kind.Error(), "kms: "))
	}
	if e.Err != nil && e.Err != e.Kind {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the kind and the cause, so that errors.Is matches either.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 2)
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil && e.Err != e.Kind {
		errs = append(errs, e.Err)
	}
	return errs
}

// NewError returns an *Error for op on keyID. When ctx has ended, the
// context's error replaces kind, so that errors.Is(err, context.Canceled)
// holds whatever the transport reported. Where no call is under way (a
// constructor's argument checks), pass context.Background(); a nil ctx is
// accepted and skips the check too, but static analysis flags it.
func NewError(ctx context.Context, op, keyID string, kind, cause error) *Error {
	if ctx != nil && ctx.Err() != nil {
		kind = ctx.Err()
	}
	return &Error{Op: op, KeyID: keyID, Kind: kind, Err: cause}
}

// IsTransient reports whether err is worth retrying: it is ErrUnavailable
// and its context has not ended.
func IsTransient(err error) bool {
	return errors.Is(err, ErrUnavailable) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// refusal is an error of CheckWrap or CheckUnwrap: the call was refused
// on its arguments before it reached the KMS, so that it says nothing of
// the KMS's health and a Breaker counts it neither way. It reads and
// matches (errors.Is) as the error it holds.
type refusal struct{ err error }

func (r refusal) Error() string { return r.err.Error() }
func (r refusal) Unwrap() error { return r.err }

// refused reports whether err is, or wraps, an error of CheckWrap or
// CheckUnwrap.
func refused(err error) bool {
	var r refusal
	return errors.As(err, &r)
}

// CheckWrap validates Wrap's arguments against this package's limits.
// Backends call it first, and keep its error as their error's cause.
func CheckWrap(dek, aad []byte) error {
	if len(dek) < MinDataKeySize || len(dek) > MaxDataKeySize {
		return refusal{fmt.Errorf("%w: data key is %d bytes, want %d to %d", ErrInvalidInput, len(dek), MinDataKeySize, MaxDataKeySize)}
	}
	if len(aad) > MaxAADSize {
		return refusal{fmt.Errorf("%w: associated data is %d bytes, limit %d", ErrInvalidInput, len(aad), MaxAADSize)}
	}
	return nil
}

// CheckUnwrap validates Unwrap's arguments: the AAD size, the ciphertext
// size, and that wk names the KEK with key id keyID. A wrapped key of
// another KEK fails with ErrKeyNotFound; sizes out of bounds fail with
// ErrUnwrapFailed, as a tampered key would. Backends call it first, and
// keep its error as their error's cause.
func CheckUnwrap(keyID string, wk WrappedKey, aad []byte) error {
	if len(aad) > MaxAADSize {
		return refusal{fmt.Errorf("%w: associated data is %d bytes, limit %d", ErrInvalidInput, len(aad), MaxAADSize)}
	}
	if wk.KeyID != keyID {
		return refusal{fmt.Errorf("%w: wrapped key names another KEK", ErrKeyNotFound)}
	}
	if len(wk.Ciphertext) == 0 || len(wk.Ciphertext) > MaxWrappedSize {
		return refusal{fmt.Errorf("%w: wrapped key is %d bytes", ErrUnwrapFailed, len(wk.Ciphertext))}
	}
	return nil
}

// ValidateKeyID reports whether id is a well-formed key id: 3 to
// MaxKeyIDSize bytes of printable ASCII without spaces, starting with a
// scheme (a lowercase letter, then lowercase letters, digits, '+', '-' or
// '.') and a colon, as in "local:main" or "vault:transit/phi".
func ValidateKeyID(id string) error {
	if len(id) < 3 || len(id) > MaxKeyIDSize {
		return fmt.Errorf("%w: key id must be 3 to %d bytes", ErrInvalidInput, MaxKeyIDSize)
	}
	scheme, rest, ok := strings.Cut(id, ":")
	if !ok || scheme == "" || rest == "" {
		return fmt.Errorf("%w: key id %q has no scheme", ErrInvalidInput, id)
	}
	for i := 0; i < len(scheme); i++ {
		c := scheme[i]
		switch {
		case c >= 'a' && c <= 'z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return fmt.Errorf("%w: key id %q has an invalid scheme", ErrInvalidInput, id)
		}
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return fmt.Errorf("%w: key id must be printable ASCII without spaces", ErrInvalidInput)
		}
	}
	return nil
}
