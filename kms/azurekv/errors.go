package azurekv

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/phicrypt/phicrypt/kms"
)

// ResponseError is the cause of an error that Key Vault answered: its
// HTTP status and error code (such as "Throttled", "KeyNotFound" or
// "Forbidden"). It never holds the response body. Match it with
// errors.As.
type ResponseError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// ErrorCode is the service's error code, if it gave one.
	ErrorCode string
}

// Error returns "azurekv: HTTP <status> <code>".
func (e *ResponseError) Error() string {
	if e.ErrorCode == "" {
		return fmt.Sprintf("azurekv: HTTP %d", e.StatusCode)
	}
	return fmt.Sprintf("azurekv: HTTP %d %s", e.StatusCode, e.ErrorCode)
}

// classify returns err, a failure of the SDK's call for op, as a
// *kms.Error of the matching kind (see the package documentation).
func classify(ctx context.Context, op, keyID string, err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return kms.NewError(ctx, op, keyID, kindOfStatus(op, re.StatusCode), &ResponseError{StatusCode: re.StatusCode, ErrorCode: re.ErrorCode})
	}
	// azcore marks the errors it must not retry, such as a credential
	// that cannot get a token.
	var nr interface{ NonRetriable() }
	if errors.As(err, &nr) {
		return kms.NewError(ctx, op, keyID, kms.ErrPermissionDenied, fmt.Errorf("azurekv: %w", err))
	}
	return kms.NewError(ctx, op, keyID, kms.ErrUnavailable, fmt.Errorf("azurekv: %w", err))
}

// kindOfStatus maps an HTTP status of Key Vault to a kms error kind.
func kindOfStatus(op string, status int) error {
	switch status {
	case http.StatusTooManyRequests:
		return kms.ErrThrottled
	case http.StatusUnauthorized, http.StatusForbidden:
		return kms.ErrPermissionDenied
	case http.StatusNotFound:
		return kms.ErrKeyNotFound
	case http.StatusBadRequest:
		if op == "unwrap" {
			return kms.ErrUnwrapFailed
		}
		return kms.ErrInvalidInput
	}
	return kms.ErrUnavailable
}
