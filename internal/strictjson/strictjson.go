// Package strictjson decodes configuration JSON (key files, profiles,
// migration specs) strictly: a file that encoding/json would accept while
// ignoring or overriding part of it is refused. Its errors describe the
// problem and its position, never a value from the input, which may hold
// key material.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/phicrypt/phicrypt/internal/jsonerr"
)

// Decode decodes the single JSON value data into v, and refuses:
//   - an object member that v has no field for;
//   - two members of one object whose names encoding/json would take for
//     the same field (equal ignoring case): it would keep the last one,
//     and drop what the first held without a word;
//   - anything after the value but white space.
func Decode(data []byte, v any) error {
	if err := checkMembers(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(jsonerr.Describe(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("data after the JSON value, at byte %d", dec.InputOffset())
	}
	return nil
}

// checkMembers walks data's tokens and refuses an object with two members
// of the same name, ignoring case.
func checkMembers(data []byte) error {
	type level struct {
		object  bool
		wantKey bool     // an object's next string is a member name
		names   []string // the object's member names so far
	}
	var stack []level
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		at := dec.InputOffset()
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errors.New(jsonerr.Describe(err))
		}
		if d, ok := tok.(json.Delim); ok && (d == '{' || d == '[') {
			stack = append(stack, level{object: d == '{', wantKey: d == '{'})
			continue
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
		} else if n := len(stack); n > 0 && stack[n-1].wantKey {
			top := &stack[n-1]
			name := tok.(string)
			for _, seen := range top.names {
				if strings.EqualFold(seen, name) {
					return fmt.Errorf("duplicate member name at byte %d", at)
				}
			}
			top.names = append(top.names, name)
			top.wantKey = false
			continue
		}
		// A value ended: an enclosing object's next string is a name.
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
}
