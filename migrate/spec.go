package migrate

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/phicrypt/phicrypt/fields"
)

// Spec describes the encrypted columns of a table, as the application's
// struct tags do: the migration engine seals and opens rows through the
// fields package with a record type built from it, so what it writes is
// exactly what the application reads.
type Spec struct {
	// Table is the table's name.
	Table string
	// ID is the primary key column (single-column keys only); its values
	// are the record ids bound to every value.
	ID string
	// ScopeColumn is the column that holds each row's scope, or Scope the
	// one scope of every row. Exactly one must be set.
	ScopeColumn string
	Scope       string
	// Columns are the encrypted columns.
	Columns []Column
	// Indexes are the blind index columns.
	Indexes []Index
}

// Column is an encrypted column.
type Column struct {
	// Name is the column read. In place, it is also the column written.
	Name string
	// Target, if set, is the column the ciphertext is written to, leaving
	// Name's plaintext in place for a dual-read window (drop it after the
	// switch).
	Target string
	// Bind is the column name bound to the ciphertexts (the application's
	// phi column= option); Target or Name by default.
	Bind string
	// Type is the Go type of the application's field: string, bytes, int,
	// float, bool or time. It decides the plaintext encoding.
	Type string
	// Deterministic matches the application's deterministic option.
	Deterministic bool
}

// Index is a blind index column, as the application's index tag declares
// it.
type Index struct {
	// Column is the index column.
	Column string
	// Of names the indexed columns (Column.Name), in order.
	Of []string
	// Normalize and Bits are the tag's normalize= and bits= options, Text
	// its text option.
	Normalize string
	Bits      int
	Text      bool
}

// ErrSpec means a Spec is invalid.
var ErrSpec = errors.New("migrate: invalid spec")

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

var goTypes = map[string]reflect.Type{
	"string": reflect.TypeFor[fields.Encrypted[string]](),
	"bytes":  reflect.TypeFor[fields.Encrypted[[]byte]](),
	"int":    reflect.TypeFor[fields.Encrypted[int64]](),
	"float":  reflect.TypeFor[fields.Encrypted[float64]](),
	"bool":   reflect.TypeFor[fields.Encrypted[bool]](),
	"time":   reflect.TypeFor[fields.Encrypted[time.Time]](),
}

func (c Column) target() string {
	if c.Target != "" {
		return c.Target
	}
	return c.Name
}

func (c Column) bind() string {
	if c.Bind != "" {
		return c.Bind
	}
	return c.target()
}

// Validate checks the spec: SQL identifiers only (they are interpolated
// into queries), known types, indexes over known columns with bits in
// range and normalizers that accept their sources' types. Its errors
// match ErrSpec.
func (s *Spec) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrSpec, fmt.Sprintf(format, args...))
	}
	for _, id := range []string{s.Table, s.ID} {
		if !identifier.MatchString(id) {
			return bad("%q is not a plain SQL identifier", id)
		}
	}
	if (s.ScopeColumn == "") == (s.Scope == "") {
		return bad("set exactly one of ScopeColumn and Scope")
	}
	if s.ScopeColumn != "" && !identifier.MatchString(s.ScopeColumn) {
		return bad("%q is not a plain SQL identifier", s.ScopeColumn)
	}
	if len(s.Columns) == 0 {
		return bad("no encrypted column")
	}
	seen := map[string]bool{s.ID: true, s.ScopeColumn: true}
	for _, c := range s.Columns {
		for _, name := range []string{c.Name, c.Target} {
			if name != "" && !identifier.MatchString(name) {
				return bad("%q is not a plain SQL identifier", name)
			}
		}
		if _, ok := goTypes[c.Type]; !ok {
			return bad("column %s: type %q is not one of string, bytes, int, float, bool, time", c.Name, c.Type)
		}
		if seen[c.Name] || (c.Target != "" && seen[c.Target]) {
			return bad("column %s appears twice", c.Name)
		}
		seen[c.Name], seen[c.target()] = true, true
	}
	for _, ix := range s.Indexes {
		if !identifier.MatchString(ix.Column) || seen[ix.Column] {
			return bad("index column %q is not a new plain SQL identifier", ix.Column)
		}
		seen[ix.Column] = true
		if len(ix.Of) == 0 {
			return bad("index %s indexes no column", ix.Column)
		}
		for _, of := range ix.Of {
			if s.column(of) < 0 {
				return bad("index %s: %s is not an encrypted column", ix.Column, of)
			}
		}
		if ix.Bits < 1 || ix.Bits > fields.MaxIndexBits {
			return bad("index %s: bits must be 1 to %d", ix.Column, fields.MaxIndexBits)
		}
	}
	// The record type built from the spec must be one the fields package
	// accepts: this checks the normalizers against the source types.
	if _, err := fields.Describe(s.rowType()); err != nil {
		return fmt.Errorf("%w: %w", ErrSpec, err)
	}
	return nil
}

func (s *Spec) column(name string) int {
	for i, c := range s.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// rowType builds the record type the fields package sees: an id, a scope,
// an Encrypted field per column (in migration mode, so that legacy
// plaintext opens) and a BlindIndex per index, tagged as the application's
// struct would be.
func (s *Spec) rowType() reflect.Type {
	sf := []reflect.StructField{
		{Name: "ID", Type: reflect.TypeFor[string](), Tag: reflect.StructTag(`phi:"id,table=` + s.Table + `"`)},
		{Name: "Scope", Type: reflect.TypeFor[string](), Tag: `phi:"scope"`},
	}
	for i, c := range s.Columns {
		tag := "encrypt,migrate,column=" + c.bind()
		if c.Deterministic {
			tag += ",deterministic"
		}
		sf = append(sf, reflect.StructField{Name: "C" + strconv.Itoa(i), Type: goTypes[c.Type], Tag: reflect.StructTag(`phi:"` + tag + `"`)})
	}
	for i, ix := range s.Indexes {
		var of []string
		for _, name := range ix.Of {
			of = append(of, "C"+strconv.Itoa(s.column(name)))
		}
		tag := "index,of=" + strings.Join(of, "+") + ",bits=" + strconv.Itoa(ix.Bits) + ",column=" + ix.Column
		if ix.Normalize != "" {
			tag += ",normalize=" + ix.Normalize
		}
		if ix.Text {
			tag += ",text"
		}
		sf = append(sf, reflect.StructField{Name: "I" + strconv.Itoa(i), Type: reflect.TypeFor[fields.BlindIndex](), Tag: reflect.StructTag(`phi:"` + tag + `"`)})
	}
	return reflect.StructOf(sf)
}
