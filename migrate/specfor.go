package migrate

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"unicode"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/internal/strictjson"
)

// SpecOption adjusts the Spec that SpecFor builds, for what the struct
// tags do not say: the SQL names of the id and scope columns when they
// are not the snake_case of the Go names, a table the tags leave to an
// ORM, a legacy plaintext column read in place of the encrypted one.
type SpecOption func(*specOptions)

type specOptions struct {
	table, id, scopeColumn, scope string
	legacy                        map[string]string
}

// WithTable sets the table of a type whose tags name none (no table=, no
// PHITable method: the GORM plugin takes GORM's table name). For a type
// that names a table, it must be the same.
func WithTable(table string) SpecOption { return func(o *specOptions) { o.table = table } }

// WithIDColumn sets the primary key column; by default, the snake_case
// of the Go name of the field tagged phi:"id" (ID: "id", PatientID:
// "patient_id"), as the fields package and GORM name columns.
func WithIDColumn(column string) SpecOption { return func(o *specOptions) { o.id = column } }

// WithScopeColumn sets the column holding each row's scope; by default,
// the snake_case of the Go name of the field tagged phi:"scope".
func WithScopeColumn(column string) SpecOption {
	return func(o *specOptions) { o.scopeColumn, o.scope = column, "" }
}

// WithScope gives every row of the table the one scope, for a type whose
// scope comes from a PHIScope method rather than a field.
func WithScope(scope string) SpecOption {
	return func(o *specOptions) { o.scope, o.scopeColumn = scope, "" }
}

// WithLegacyColumn says that the plaintext of the encrypted column column
// (as the tags bind it) is read from the legacy column legacy, whose SQL
// type cannot hold a ciphertext (an INTEGER, a DATE): an Encrypt job
// writes the ciphertexts into column and leaves legacy as it is, to be
// dropped after the switch (Column.Target).
func WithLegacyColumn(column, legacy string) SpecOption {
	return func(o *specOptions) {
		if o.legacy == nil {
			o.legacy = map[string]string{}
		}
		o.legacy[column] = legacy
	}
}

// specTypes maps the plaintext encodings of fields.FieldLayout.Kind to the
// Column types that write and read them.
var specTypes = map[string]string{
	"string": "string", "bytes": "bytes", "int": "int", "float": "float", "bool": "bool", "time": "time",
}

// SpecFor returns the Spec of the record type of v (a struct, a pointer to
// one, or their reflect.Type), built from its phi tags by fields.Describe,
// so that a migration seals exactly what the application reads: the
// table, the encrypted columns with their plaintext types and the
// deterministic option, the blind indexes with their sources,
// normalizers, bits and text option. It holds names only: no key, no
// value. Index key versions are the keyring's, not the spec's.
//
// Errors match ErrSpec: a type whose tags are wrong (also matching
// fields.ErrInvalidTag), a type naming no table without WithTable, a
// field whose plaintext type a Spec cannot describe (a uint, a
// TextMarshaler, a struct, a pointer: string, []byte, signed integers,
// floats, bool and time.Time only), a blind index with its own scope
// (scope=), a nested column, and what Validate refuses.
//
// Save the spec as JSON (json.Marshal) for the command line tool:
// phicrypt migrate encrypt --spec patients.json (see the package
// documentation).
func SpecFor(v any, opts ...SpecOption) (Spec, error) {
	var s Spec
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrSpec, fmt.Sprintf(format, args...))
	}
	l, err := fields.Describe(v)
	if err != nil {
		return s, fmt.Errorf("%w: %w", ErrSpec, err)
	}
	o := specOptions{}
	if l.Scope != "" {
		o.scopeColumn = snakeCase(l.Scope)
	}
	o.id = snakeCase(l.ID)
	for _, opt := range opts {
		opt(&o)
	}
	s.Table = l.Table
	switch {
	case o.table != "" && l.Table != "" && o.table != l.Table:
		return s, bad("%v names table %q, not %q", l.Type, l.Table, o.table)
	case o.table != "":
		s.Table = o.table
	case l.Table == "":
		return s, bad("%v names no table: pass WithTable", l.Type)
	}
	s.ID, s.ScopeColumn, s.Scope = o.id, o.scopeColumn, o.scope
	if s.ScopeColumn == "" && s.Scope == "" {
		return s, bad("%v takes its scope from a PHIScope method: pass WithScopeColumn or WithScope", l.Type)
	}
	names := map[string]string{} // Go field -> Column.Name
	for _, f := range l.Fields {
		typ, ok := specTypes[f.Kind]
		if !ok {
			return s, bad("%v.%s: a spec cannot describe a %v field (a %s value): migrate handles string, []byte, signed integer, float, bool and time.Time fields", l.Type, f.Name, f.Type, f.Kind)
		}
		c := Column{Name: f.Column, Type: typ, Deterministic: f.Deterministic}
		if legacy, ok := o.legacy[f.Column]; ok {
			c.Name, c.Target = legacy, f.Column
			delete(o.legacy, f.Column)
		}
		names[f.Name] = c.Name
		s.Columns = append(s.Columns, c)
	}
	if len(o.legacy) > 0 {
		cols := slices.Sorted(maps.Keys(o.legacy))
		return s, bad("WithLegacyColumn(%q, ...): %v has no encrypted column %q", cols[0], l.Type, cols[0])
	}
	for _, il := range l.Indexes {
		if il.Scope != "" {
			return s, bad("%v.%s: a blind index with its own scope (scope=%s) cannot be migrated by a spec", l.Type, il.Name, il.Scope)
		}
		ix := Index{Column: il.Column, Normalize: il.Normalize, Bits: il.Bits, Text: il.Text}
		for _, src := range il.Of {
			ix.Of = append(ix.Of, names[src])
		}
		s.Indexes = append(s.Indexes, ix)
	}
	if err := s.Validate(); err != nil {
		return s, err
	}
	return s, nil
}

// snakeCase is the default column of a Go name, as the fields package
// and GORM's default naming strategy derive it: PatientID → patient_id.
func snakeCase(name string) string {
	var b strings.Builder
	rs := []rune(name)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]))) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// maxSpecSize bounds a spec file: a spec is names, a few KiB at most.
const maxSpecSize = 1 << 20

// ReadSpec reads a Spec saved as JSON (json.Marshal of a Spec, as the
// command line tool's --spec takes it) and validates it. Unknown fields,
// a second JSON value, a document over 1 MiB and whatever Validate
// refuses fail with errors matching ErrSpec.
func ReadSpec(r io.Reader) (Spec, error) {
	var s Spec
	data, err := io.ReadAll(io.LimitReader(r, maxSpecSize+1))
	if err != nil {
		return s, fmt.Errorf("migrate: read spec: %w", err)
	}
	if len(data) > maxSpecSize {
		return s, fmt.Errorf("%w: larger than %d bytes", ErrSpec, maxSpecSize)
	}
	if err := strictjson.Decode(data, &s); err != nil {
		return Spec{}, fmt.Errorf("%w: %v", ErrSpec, err)
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}
