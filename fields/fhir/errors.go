package fhir

import (
	"errors"
	"strings"

	"github.com/phicrypt/phicrypt/envelope"
)

// Errors. Test for them with errors.Is; decryption failures also match
// envelope's errors (envelope.ErrDecrypt, envelope.ErrKeyNotFound, ...).
var (
	// ErrInvalidPath means a path does not parse or a profile cannot use
	// it; the error is a *PathError.
	ErrInvalidPath = errors.New("fhir: invalid path")
	// ErrSyntax means a document is not valid JSON; the error is a
	// *SyntaxError.
	ErrSyntax = errors.New("fhir: invalid JSON")
	// ErrNotResource means a document is not a FHIR resource: not an
	// object, or without a string resourceType.
	ErrNotResource = errors.New("fhir: not a FHIR resource")
	// ErrMissingID means a resource with elements to encrypt has no id.
	// Every value is bound to its resource's id, so the id must exist
	// before encryption: assign ids on the client (PUT, or a UUID).
	ErrMissingID = errors.New("fhir: resource has no id")
	// ErrEncryptedInput means Encrypt was given a document that already
	// holds a phicrypt ciphertext or blind index extension. Encrypting it
	// again would not round-trip; decrypt it first.
	ErrEncryptedInput = errors.New("fhir: document already holds phicrypt ciphertexts")
	// ErrNotEncrypted means Decrypt found plaintext in an element that the
	// profile encrypts (see Config.AllowPlaintext). It is
	// envelope.ErrNotEncrypted.
	ErrNotEncrypted = envelope.ErrNotEncrypted
	// ErrMalformedValue means a ciphertext decrypted, but not to an element
	// value this package writes. Only a writer holding the keys can cause
	// it.
	ErrMalformedValue = errors.New("fhir: decrypted value is not a JSON element value")
)

// ElementError is a failure at one element of a document (or at a resource
// as a whole). Path locates it from the document's root, with array
// indexes ("Bundle.entry[3].resource.name[0].family"); neither the value
// nor the resource id is printed.
type ElementError struct {
	Path string
	Err  error
}

func (e *ElementError) Error() string { return "fhir: " + e.Path + ": " + cause(e.Err) }

// Unwrap returns the cause.
func (e *ElementError) Unwrap() error { return e.Err }

// cause is err's message without this package's prefix, for a wrapper
// that has one already.
func cause(err error) string { return strings.TrimPrefix(err.Error(), "fhir: ") }
