//go:build cgo

package pkcs11

import (
	"context"
	"errors"

	p11 "github.com/miekg/pkcs11"

	"github.com/phicrypt/phicrypt/kms"
)

// ckrAEADDecryptFailed is PKCS#11 3.0's CKR_AEAD_DECRYPT_FAILED, which
// github.com/miekg/pkcs11 (2.40) does not define.
const ckrAEADDecryptFailed = p11.Error(0x35)

// errAuthFailed is the cause of an unwrap whose data did not authenticate.
var errAuthFailed = errors.New("wrapped key did not authenticate")

// kindOf returns the kms sentinel for an error of a PKCS#11 call.
func kindOf(err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, errAuthFailed):
		return kms.ErrUnwrapFailed
	case errors.Is(err, errClosed):
		return kms.ErrUnavailable
	case errors.Is(err, errInvalidConfig):
		return kms.ErrInvalidInput
	case errors.Is(err, errNoToken), errors.Is(err, errNoKey):
		return kms.ErrKeyNotFound
	}
	var code p11.Error
	if !errors.As(err, &code) {
		return kms.ErrUnavailable
	}
	switch code {
	case p11.CKR_PIN_INCORRECT, p11.CKR_PIN_INVALID, p11.CKR_PIN_LEN_RANGE,
		p11.CKR_PIN_EXPIRED, p11.CKR_PIN_LOCKED, p11.CKR_USER_NOT_LOGGED_IN,
		p11.CKR_USER_PIN_NOT_INITIALIZED, p11.CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
		p11.CKR_USER_TOO_MANY_TYPES, p11.CKR_KEY_FUNCTION_NOT_PERMITTED,
		p11.CKR_ACTION_PROHIBITED:
		return kms.ErrPermissionDenied
	case p11.CKR_ENCRYPTED_DATA_INVALID, p11.CKR_ENCRYPTED_DATA_LEN_RANGE,
		p11.CKR_WRAPPED_KEY_INVALID, p11.CKR_WRAPPED_KEY_LEN_RANGE,
		ckrAEADDecryptFailed:
		return kms.ErrUnwrapFailed
	case p11.CKR_KEY_HANDLE_INVALID, p11.CKR_OBJECT_HANDLE_INVALID,
		p11.CKR_WRAPPING_KEY_HANDLE_INVALID, p11.CKR_UNWRAPPING_KEY_HANDLE_INVALID:
		return kms.ErrKeyNotFound
	case p11.CKR_MECHANISM_INVALID, p11.CKR_MECHANISM_PARAM_INVALID,
		p11.CKR_KEY_TYPE_INCONSISTENT, p11.CKR_KEY_SIZE_RANGE,
		p11.CKR_WRAPPING_KEY_TYPE_INCONSISTENT, p11.CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT,
		p11.CKR_TEMPLATE_INCONSISTENT, p11.CKR_TEMPLATE_INCOMPLETE,
		p11.CKR_ATTRIBUTE_VALUE_INVALID, p11.CKR_DATA_LEN_RANGE:
		// The token does not support what this KEK asks of it: retrying
		// cannot help.
		return kms.ErrInvalidInput
	default:
		// CKR_DEVICE_ERROR, CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT,
		// CKR_SESSION_CLOSED, CKR_SESSION_HANDLE_INVALID, CKR_GENERAL_ERROR,
		// CKR_FUNCTION_FAILED, CKR_HOST_MEMORY, CKR_DEVICE_MEMORY, …
		return kms.ErrUnavailable
	}
}

// sessionLost reports whether err means the session was closed or logged
// out under the call, which a new session may cure.
func sessionLost(err error) bool {
	var code p11.Error
	if !errors.As(err, &code) {
		return false
	}
	switch code {
	case p11.CKR_SESSION_CLOSED, p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_USER_NOT_LOGGED_IN:
		return true
	}
	return false
}

// ambiguous reports whether err is a token's generic failure, which some
// tokens (SoftHSM2 among them) report for a failed GCM tag or KWP check.
func ambiguous(err error) bool {
	var code p11.Error
	return errors.As(err, &code) && (code == p11.CKR_GENERAL_ERROR || code == p11.CKR_FUNCTION_FAILED)
}

// handleLost reports whether err means a key's object handle is no longer
// valid. Tokens may invalidate handles when every session of the
// application closes or the token logs out (SoftHSM2 does); the key is then
// looked up again by its label.
func handleLost(err error) bool {
	var code p11.Error
	if !errors.As(err, &code) {
		return false
	}
	switch code {
	case p11.CKR_KEY_HANDLE_INVALID, p11.CKR_OBJECT_HANDLE_INVALID,
		p11.CKR_WRAPPING_KEY_HANDLE_INVALID, p11.CKR_UNWRAPPING_KEY_HANDLE_INVALID:
		return true
	}
	return false
}
