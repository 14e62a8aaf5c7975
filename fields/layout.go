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
	// Table is the table name bound to every value.
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
	// Bits is its length in bits; Text is true when it is stored as
	// base64url text rather than bytes.
	Bits int
	Text bool
	// Scope is the Go name of the field that scopes its key, or "" when
	// the record's scope does.
	Scope string
}

// Describe returns the layout of the record type of v: a struct, a pointer
// to one, a slice of either, or their reflect.Type. A type whose tags are
// wrong fails with the *TagError that Seal would return. The layout is
// built from the type's cached plan; the caller may keep and share it, and
// must not modify it.
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
	if err != nil {
		return nil, err
	}
	l := &Layout{Type: t, Table: p.table, ID: p.id.name, IDIndex: slices.Clone(p.id.path)}
	if p.scope.method == "" {
		l.Scope, l.ScopeIndex = p.scope.name, slices.Clone(p.scope.path)
	}
	for _, f := range p.fields {
		l.Fields = append(l.Fields, FieldLayout{Name: f.name, Index: slices.Clone(f.path), Column: f.column,
			Deterministic: f.deterministic, Migrate: f.migrate})
	}
	for _, ip := range p.indexes {
		x := IndexLayout{Name: ip.name, Index: slices.Clone(ip.path), Column: ip.column, Bits: ip.bits, Text: ip.text}
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
