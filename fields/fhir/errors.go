package fhir

import "errors"

// Errors. Test for them with errors.Is.
var (
	// ErrInvalidPath means a path does not parse or a profile cannot use
	// it; the error is a *PathError.
	ErrInvalidPath = errors.New("fhir: invalid path")
	// ErrSyntax means a document is not valid JSON; the error is a
	// *SyntaxError.
	ErrSyntax = errors.New("fhir: invalid JSON")
)
