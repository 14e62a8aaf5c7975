// Package jsonerr describes encoding/json errors without the input they
// quote: the JSON that phicrypt parses may hold key material or PHI, and
// its errors must not carry it.
package jsonerr

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Describe returns err's kind and position: a syntax error's offset, a type
// error's field and offset, an unknown field's name; never a value.
func Describe(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("wrong type for field %q at byte %d", typ.Field, typ.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return err.Error() // names a field, not a value
	}
	return "malformed JSON"
}
