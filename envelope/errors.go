package envelope

import (
	"errors"

	"github.com/phicrypt/phicrypt/internal/aead"
	"github.com/phicrypt/phicrypt/internal/format"
)

// Errors. Test for them with errors.Is.
var (
	// ErrDecrypt is the one error for every authentication failure: a
	// wrong key, a tampered or truncated ciphertext, a ciphertext moved to
	// another context, a key commitment mismatch. It says nothing about
	// which check failed.
	ErrDecrypt = errors.New("envelope: message authentication failed")

	// ErrNotEncrypted means the input starts with neither the binary magic
	// byte nor the text armor prefix: it is a plaintext value. Whether that
	// is acceptable (a legacy row awaiting migration) is the caller's call.
	ErrNotEncrypted = format.ErrNotEncrypted

	// ErrUnsupportedVersion means the ciphertext has a format version, form
	// or suite that this version of phicrypt does not know, most likely
	// because a newer version wrote it. It is wrapped in a *FormatError.
	ErrUnsupportedVersion = format.ErrUnsupportedVersion

	// ErrTooLarge means a plaintext, or the plaintext a ciphertext would
	// hold, is larger than the configured maximum. It is reported before
	// any allocation or cryptographic work.
	ErrTooLarge = errors.New("envelope: value too large")

	// ErrKeyNotFound means the key a ciphertext names is not available: the
	// keyring has no such version for the scope, or the KEK that wrapped a
	// self-contained value is not this one. The error also matches the
	// keyring's or KEK's own error.
	ErrKeyNotFound = errors.New("envelope: key not found")

	// ErrInvalidBinding means a Binding is outside the limits documented on
	// the type (missing scope, oversized or duplicate fields).
	ErrInvalidBinding = errors.New("envelope: invalid binding")

	// ErrNotApproved means a suite that is not FIPS 140-3 approved
	// (XChaCha20Poly1305, AESSIV) was asked for while the program runs in
	// FIPS 140-3 mode (GODEBUG=fips140=on or only).
	ErrNotApproved = aead.ErrNotApproved

	// ErrWrongForm means a ciphertext of one form was given to another
	// form's decrypter: a self-contained value to a Compact or the
	// reverse, a stream to Decrypt, or a value to DecryptStream. It is
	// wrapped in a *FormatError. Use Inspect to tell forms apart.
	ErrWrongForm = errors.New("envelope: ciphertext has the other form")
)

func errWrongForm() error {
	return &FormatError{Field: "form", Offset: 2, Reason: "not the form this decrypter reads", Err: ErrWrongForm}
}

// FormatError is a malformed ciphertext. It names the field and its byte
// offset, never the bytes themselves. It wraps ErrUnsupportedVersion when
// the cause is an unknown version, form or suite.
type FormatError = format.Error
