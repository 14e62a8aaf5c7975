package gcpkms

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/internal/redact"
)

// An RPCError is an error status from Cloud KMS: its gRPC code and its
// message with anything that looks like key material redacted. Unwrap
// returns the client's error; GRPCStatus makes status.Code work on it.
type RPCError struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Message is the status message, redacted.
	Message string

	err error
}

// Error returns "gcpkms: <code>: <message>".
func (e *RPCError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("gcpkms: %s", e.Code)
	}
	return fmt.Sprintf("gcpkms: %s: %s", e.Code, e.Message)
}

// Unwrap returns the client's error.
func (e *RPCError) Unwrap() error { return e.err }

// GRPCStatus returns the status with the redacted message.
func (e *RPCError) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// error classifies an error of the client into a *kms.Error of op.
func (k *KEK) error(ctx context.Context, op string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		// Not a status: the transport failed before an answer.
		return kms.NewError(ctx, op, k.id, kms.ErrUnavailable, err)
	}
	re := &RPCError{Code: st.Code(), Message: redact.Message(st.Message()), err: err}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		// Keep the context error out of the chain when the caller's context
		// is alive (Config.Timeout ended the call), so that the error is
		// transient; NewError reports the caller's own context error.
		re.err = nil
	}
	if dl, ok := ctx.Deadline(); ok && st.Code() == codes.DeadlineExceeded && !time.Now().Before(dl) {
		// The caller's deadline has passed, but gRPC (or the server,
		// which counts down the same deadline) reported it before the
		// context's own timer fired: it is still the caller's deadline.
		return kms.NewError(ctx, op, k.id, context.DeadlineExceeded, re)
	}
	if st.Code() == codes.InvalidArgument && strings.Contains(st.Message(), "checksum") {
		// The server found a request checksum wrong: the request was
		// corrupted on its way, and Google advises retrying.
		return kms.NewError(ctx, op, k.id, kms.ErrUnavailable, fmt.Errorf("%w: %w", ErrChecksum, re))
	}
	return kms.NewError(ctx, op, k.id, codeKind(op, st.Code()), re)
}

// codeKind maps a gRPC status code to a kms sentinel.
func codeKind(op string, c codes.Code) error {
	switch c {
	case codes.NotFound, codes.FailedPrecondition:
		return kms.ErrKeyNotFound
	case codes.PermissionDenied, codes.Unauthenticated:
		return kms.ErrPermissionDenied
	case codes.InvalidArgument:
		if op == "unwrap" {
			return kms.ErrUnwrapFailed
		}
		return kms.ErrInvalidInput
	case codes.OutOfRange, codes.Unimplemented, codes.AlreadyExists:
		return kms.ErrInvalidInput
	case codes.ResourceExhausted:
		// A quota or rate limit: retried, not counted by a breaker.
		return kms.ErrThrottled
	default:
		// Unavailable, Aborted, Internal, Unknown,
		// DataLoss, DeadlineExceeded and Canceled (when the caller's
		// context is alive).
		return kms.ErrUnavailable
	}
}
