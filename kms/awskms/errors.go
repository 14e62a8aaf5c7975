package awskms

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/internal/redact"
)

// A ServiceError is an error response from AWS KMS: its error code, HTTP
// status and request id, and its message with anything that looks like
// key material redacted. Unwrap returns the SDK's error, so that
// errors.As finds the SDK's types (types.NotFoundException, …).
type ServiceError struct {
	// Code is the error code, e.g. "InvalidCiphertextException".
	Code string
	// Message is the error message, redacted.
	Message string
	// StatusCode is the HTTP status, 0 if unknown.
	StatusCode int
	// RequestID is the request id to quote to AWS support, if any.
	RequestID string

	err error
}

// Error returns "awskms: <code> (HTTP <status>, request <id>): <message>".
func (e *ServiceError) Error() string {
	s := "awskms: " + e.Code
	switch {
	case e.StatusCode != 0 && e.RequestID != "":
		s += fmt.Sprintf(" (HTTP %d, request %s)", e.StatusCode, e.RequestID)
	case e.StatusCode != 0:
		s += fmt.Sprintf(" (HTTP %d)", e.StatusCode)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap returns the SDK's error.
func (e *ServiceError) Unwrap() error { return e.err }

// codeKinds maps KMS error codes to kms sentinels.
var codeKinds = map[string]error{
	"NotFoundException":        kms.ErrKeyNotFound,
	"DisabledException":        kms.ErrKeyNotFound,
	"KMSInvalidStateException": kms.ErrKeyNotFound,

	"AccessDeniedException":        kms.ErrPermissionDenied,
	"AccessDenied":                 kms.ErrPermissionDenied,
	"UnrecognizedClientException":  kms.ErrPermissionDenied,
	"InvalidClientTokenId":         kms.ErrPermissionDenied,
	"InvalidSignatureException":    kms.ErrPermissionDenied,
	"IncompleteSignature":          kms.ErrPermissionDenied,
	"MissingAuthenticationToken":   kms.ErrPermissionDenied,
	"ExpiredTokenException":        kms.ErrPermissionDenied,
	"ExpiredToken":                 kms.ErrPermissionDenied,
	"InvalidGrantTokenException":   kms.ErrPermissionDenied,
	"SignatureDoesNotMatch":        kms.ErrPermissionDenied,
	"RequestExpired":               kms.ErrPermissionDenied,
	"NotAuthorized":                kms.ErrPermissionDenied,
	"OptInRequired":                kms.ErrPermissionDenied,
	"AuthFailure":                  kms.ErrPermissionDenied,
	"InvalidAccessKeyId":           kms.ErrPermissionDenied,
	"UnauthorizedOperation":        kms.ErrPermissionDenied,
	"AccessDeniedForDependencyErr": kms.ErrPermissionDenied,

	"InvalidCiphertextException": kms.ErrUnwrapFailed,
	"IncorrectKeyException":      kms.ErrUnwrapFailed,

	"ThrottlingException":        kms.ErrThrottled,
	"Throttling":                 kms.ErrThrottled,
	"RequestLimitExceeded":       kms.ErrThrottled,
	"LimitExceededException":     kms.ErrThrottled,
	"KMSInternalException":       kms.ErrUnavailable,
	"DependencyTimeoutException": kms.ErrUnavailable,
	"KeyUnavailableException":    kms.ErrUnavailable,
	"ServiceUnavailable":         kms.ErrUnavailable,
	"InternalFailure":            kms.ErrUnavailable,
	"InternalError":              kms.ErrUnavailable,

	"ValidationException":      kms.ErrInvalidInput,
	"InvalidKeyUsageException": kms.ErrInvalidInput,
	"InvalidArnException":      kms.ErrInvalidInput,
	"UnsupportedOperation":     kms.ErrInvalidInput,
}

// error classifies an error of the SDK into a *kms.Error of op.
func (k *KEK) error(ctx context.Context, op string, err error) error {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		// No answer from KMS: connection refused or reset, DNS, TLS,
		// timeouts, a response that did not parse. The SDK's message names
		// the operation and the endpoint, never the request's contents.
		kind := kms.ErrUnavailable
		var re *awshttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() >= 400 && re.HTTPStatusCode() < 500 && re.HTTPStatusCode() != http.StatusTooManyRequests {
			kind = kms.ErrInvalidInput
		}
		return kms.NewError(ctx, op, k.id, kind, err)
	}
	se := &ServiceError{Code: ae.ErrorCode(), Message: redact.Message(ae.ErrorMessage()), err: err}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		se.StatusCode, se.RequestID = re.HTTPStatusCode(), re.ServiceRequestID()
	}
	return kms.NewError(ctx, op, k.id, codeKind(op, se), se)
}

// codeKind maps a service error to a kms sentinel, by code, else by
// status.
func codeKind(op string, e *ServiceError) error {
	kind, ok := codeKinds[e.Code]
	switch {
	case ok && kind == kms.ErrInvalidInput && op == "unwrap":
		// A ciphertext that KMS cannot use is a failed unwrap.
		return kms.ErrUnwrapFailed
	case ok:
		return kind
	case e.StatusCode == http.StatusTooManyRequests:
		return kms.ErrThrottled
	case e.StatusCode >= 500:
		return kms.ErrUnavailable
	case e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden:
		return kms.ErrPermissionDenied
	case op == "unwrap" && e.StatusCode >= 400:
		return kms.ErrUnwrapFailed
	case e.StatusCode >= 400:
		return kms.ErrInvalidInput
	}
	return kms.ErrUnavailable
}
