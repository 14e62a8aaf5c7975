package fields

import (
	"reflect"
	"slices"
)

// Layout describes how a Codec treats a record type: its table, where its
// record id and scope come from, and the column that each encrypted field
// and blind index is bound to. Integrations built on this package (an ORM
// plugin, a migration tool, a DDL generator) use it to map Go fields to
// database columns. It holds no key and no value.
type Layout struct {
	// Type is the record's struct type.
	Type reflect.Type
	// Table is the table name bound to every value: the id tag's table=
	// option, or the PHITable method's. It is "" for a type that names
	// no table, which a Codec seals only once bound to one (see
	// Codec.BindTable; the GORM plugin binds GORM's table name).
	Table string
	// ID is the Go name of the record id field, IDIndex its index path
	// (for reflect.Value.FieldByIndex).
	ID      string
	IDIndex []int
	// Scope is the Go name of the scope field, or "" when the type's
	// PHIScope method gives the scope; ScopeIndex is its index path.
	Scope      string
	ScopeIndex []int
	// Fields are the encrypted fields, in struct order.
	Fields []FieldLayout
	// Indexes are the blind indexes, in struct order.
	Indexes []IndexLayout
}

// FieldLayout is an encrypted field of a Layout.
type FieldLayout struct {
	// Name is the field's Go path, e.g. "SSN" or "Contact.Phone"; Index is
	// its index path.
	Name  string
	Index []int
	// Column is the column name bound to its values.
	Column string
	// Type is the plaintext's Go type: T of the field's Encrypted[T].
	Type reflect.Type
	// Kind is how the plaintext is encoded before encryption, which
	// decides into which Go types a value decrypts: "string", "bytes",
	// "bool", "int" (any signed integer type, as 64 bits), "uint", "float"
	// (float32 or float64, as 64 bits), "time" (time.Time), "binary" (an
	// encoding.BinaryMarshaler), "text" (an encoding.TextMarshaler),
	// "json" (a struct, slice, array or map) or "pointer" (a pointer to
	// one of these).
	Kind string
	// Deterministic and Migrate are the tag's options.
	Deterministic, Migrate bool
}

// IndexLayout is a blind index of a Layout.
type IndexLayout struct {
	// Name is the index field's Go path; Index is its index path.
	Name  string
	Index []int
	// Column is the column name its key is bound to.
	Column string
	// Of are the Go paths of its source fields, in order.
	Of []string
	// Normalize is the tag's normalize= option as written (for
	// example "digits" or "trim+fold|date"), "" when it has none.
	Normalize string
	// Bits is its length in bits; Text is true when it is stored as
	// base64url text rather than bytes.
	Bits int
	Text bool
	// Scope is the Go name of the field that scopes its key, or "" when
	// the record's scope does.
	Scope string
}

// Describe returns the layout of the record type of v: a struct, a pointer
// to one, a slice of either, or their reflect.Type: what its phi tags
// declare, and nothing else (no key, no key version, no value; the index
// key versions in use are the keyring's). A type whose tags are wrong
// fails with the *TagError that Seal would return; a type that only lacks
// a table is described with an empty Table. The layout is built from the
// type's cached plan; the caller may keep and share it, and must not
// modify it.
func Describe(v any) (*Layout, error) {
	t, ok := v.(reflect.Type)
	if !ok {
		t = reflect.TypeOf(v)
	}
	for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice) {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil, ErrUnsupported
	}
	p, err := planFor(t)
	if err != nil && p == nil {
		return nil, err
	}
	l := &Layout{Type: t, Table: p.table, ID: p.id.name, IDIndex: slices.Clone(p.id.path)}
	if p.scope.method == "" {
		l.Scope, l.ScopeIndex = p.scope.name, slices.Clone(p.scope.path)
	}
	for _, f := range p.fields {
		elem := reflect.New(t.FieldByIndex(f.path).Type).Interface().(valueField).elemType()
		l.Fields = append(l.Fields, FieldLayout{Name: f.name, Index: slices.Clone(f.path), Column: f.column,
			Type: elem, Kind: kindNames[tagOf(elem)], Deterministic: f.deterministic, Migrate: f.migrate})
	}
	for _, ip := range p.indexes {
		x := IndexLayout{Name: ip.name, Index: slices.Clone(ip.path), Column: ip.column, Bits: ip.bits, Text: ip.text}
		// The plan keeps the parsed chains; the option as written is the
		// tag's, which the plan has already checked.
		if tg, err := parseTag(t.FieldByIndex(ip.path).Tag.Get("phi")); err == nil {
			x.Normalize = tg.opts["normalize"]
		}
		for _, s := range ip.sources {
			x.Of = append(x.Of, p.fields[s].name)
		}
		if ip.scope != nil {
			x.Scope = ip.scope.name
		}
		l.Indexes = append(l.Indexes, x)
	}
	return l, nil
}

// kindNames names the plaintext encodings (FieldLayout.Kind).
var kindNames = map[byte]string{
	tagString: "string", tagBytes: "bytes", tagBool: "bool", tagInt: "int", tagUint: "uint",
	tagFloat: "float", tagTime: "time", tagBinary: "binary", tagText: "text", tagJSON: "json",
	tagPointer: "pointer",
}
