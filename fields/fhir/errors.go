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
	// ErrUnexpectedShape means an element that the profile names, or that
	// holds resources (contained, Bundle.entry), has a JSON type it cannot
	// have in FHIR JSON: a string where an object is expected
	// ("name": "..." for an array of HumanName), an array inside an
	// array, a contained resource that contains resources. The document
	// is refused rather than let the value through unencrypted. The error
	// names the element's path and the JSON type found, never the value.
	ErrUnexpectedShape = errors.New("fhir: unexpected JSON type")
	// ErrInvalidResourceType means a resourceType is not a FHIR resource
	// type name (an upper-case letter, then letters: "Patient", not
	// "patient"). No profile could apply to it.
	ErrInvalidResourceType = errors.New("fhir: invalid resourceType")
	// ErrUnknownResourceType means a resource's type is not one the
	// profile knows (see Profile.Resources) and Config.UnknownTypes is
	// RefuseUnknown, the default.
	ErrUnknownResourceType = errors.New("fhir: resource type unknown to the profile")
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
