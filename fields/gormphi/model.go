package gormphi

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"gorm.io/gorm/schema"

	"github.com/phicrypt/phicrypt/fields"
)

// model is what the plugin knows of a tagged record type in one GORM
// schema: its layout and the GORM column of each encrypted field and
// blind index, checked to agree.
type model struct {
	layout *fields.Layout
	table  string // GORM's table
	// byColumn maps a GORM column (DBName), as columnKey spells it, to
	// an encrypted field or a blind index: use column to look one up.
	byColumn map[string]*column
	cols     []*column // encrypted fields, then indexes, in layout order
	scopeCol string    // GORM column of the scope field, "" if none
}

// column is an encrypted field or a blind index of a model.
type column struct {
	name    string // Go path
	db      string // GORM column
	index   []int  // reflect index path
	typ     reflect.Type
	blind   *fields.IndexLayout // nil for an encrypted field
	sources []*column           // a blind index's source fields
	scope   string              // a blind index's scope column ("" if the record's)
}

// buildModel checks the phi layout of s's type against GORM's schema. It
// returns nil, nil for a type without phi tags. A type whose tags name no
// table is bound to GORM's table on codec (fields.Codec.BindTable).
func buildModel(s *schema.Schema, codec *fields.Codec) (*model, error) {
	if !hasPHITags(s.ModelType, map[reflect.Type]bool{}) {
		return nil, nil
	}
	l, err := fields.Describe(s.ModelType)
	if err != nil {
		return nil, err
	}
	m := &model{layout: l, table: s.Table, byColumn: map[string]*column{}}
	bad := func(field, format string, args ...any) error {
		return &LayoutError{Type: s.ModelType.String(), Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if l.Table == "" {
		if err := codec.BindTable(s.ModelType, s.Table); err != nil {
			return nil, fmt.Errorf("gormphi: GORM table %q: %w", s.Table, err)
		}
	} else if l.Table != s.Table {
		return nil, bad("", "phi table %q but GORM table %q: set table= on the phi id tag, or a TableName method, so that both agree", l.Table, s.Table)
	}
	gormField := func(name string, index []int) (*schema.Field, error) {
		for _, f := range s.Fields {
			if slices.Equal(f.StructField.Index, index) && f.DBName != "" {
				return f, nil
			}
		}
		return nil, bad(name, "GORM has no column for it: encrypted fields and blind indexes must be fields of the record or of an embedded struct (tag association fields phi:\"-\")")
	}
	if l.Scope != "" {
		f, err := gormField(l.Scope, l.ScopeIndex)
		if err != nil {
			return nil, err
		}
		m.scopeCol = f.DBName
	}
	byName := map[string]*column{}
	for _, fl := range l.Fields {
		f, err := gormField(fl.Name, fl.Index)
		if err != nil {
			return nil, err
		}
		if f.DBName != fl.Column {
			return nil, bad(fl.Name, "bound to column %q but GORM's column is %q: give both the same name with phi:\"encrypt,column=NAME\" and gorm:\"column:NAME\"", fl.Column, f.DBName)
		}
		if kind := columnKind(f); kind != textColumn && kind != binaryColumn {
			return nil, bad(fl.Name, "GORM would make it a %q column, which cannot hold a ciphertext: a text column (the default), or bytes (gorm:\"type:bytes\": bytea, BLOB) with fields.Config.Binary", kind)
		}
		c := &column{name: fl.Name, db: f.DBName, index: fl.Index, typ: f.FieldType}
		byName[fl.Name] = c
		m.byColumn[columnKey(c.db)] = c
		m.cols = append(m.cols, c)
	}
	for i := range l.Indexes {
		il := &l.Indexes[i]
		f, err := gormField(il.Name, il.Index)
		if err != nil {
			return nil, err
		}
		if f.DBName != il.Column {
			return nil, bad(il.Name, "blind index keyed to column %q but GORM's column is %q: give both the same name with phi:\"index,column=NAME,...\" and gorm:\"column:NAME\"", il.Column, f.DBName)
		}
		switch kind := columnKind(f); {
		case il.Text && kind != textColumn:
			return nil, bad(il.Name, "a blind index with the text option needs a text column, not %q: tag it gorm:\"type:text\"", kind)
		case !il.Text && kind != binaryColumn:
			return nil, bad(il.Name, "a blind index needs a bytes column (bytea, BLOB), not %q: drop the gorm type, or add the text option to the phi tag", kind)
		}
		c := &column{name: il.Name, db: f.DBName, index: il.Index, typ: f.FieldType, blind: il}
		for _, src := range il.Of {
			c.sources = append(c.sources, byName[src])
		}
		if il.Scope != "" {
			sf, ok := s.ModelType.FieldByName(il.Scope)
			if !ok {
				return nil, bad(il.Name, "no scope field %s", il.Scope)
			}
			g, err := gormField(il.Scope, sf.Index)
			if err != nil {
				return nil, err
			}
			c.scope = g.DBName
		}
		m.byColumn[columnKey(c.db)] = c
		m.cols = append(m.cols, c)
	}
	// A phi-tagged field that package fields does not describe (one
	// reached through an embedded *struct, say) would be a GORM column
	// that the plugin neither seals nor checks: refuse the type.
	described := [][]int{l.IDIndex, l.ScopeIndex}
	for _, c := range m.cols {
		described = append(described, c.index)
	}
	for _, f := range s.Fields {
		tag, ok := f.StructField.Tag.Lookup("phi")
		if !ok || tag == "-" || f.DBName == "" {
			continue
		}
		if !slices.ContainsFunc(described, func(ix []int) bool { return slices.Equal(ix, f.StructField.Index) }) {
			return nil, bad(f.Name, "phi tag %q on GORM column %q, but package fields does not see the field (reached through an embedded pointer?): embed the struct by value", tag, f.DBName)
		}
	}
	return m, nil
}

// Column kinds, by what they hold.
const (
	textColumn   = "text"
	binaryColumn = "bytes"
)

// columnKind returns textColumn or binaryColumn for a GORM field whose
// column holds text or bytes, and the column's type otherwise. Encrypted
// values are text and blind indexes bytes for GORM (their GormDataType
// methods); a gorm:"type:..." tag overrides them, with GORM's portable
// names (string, bytes) or a dialect's (text, varchar(n), bytea, blob).
func columnKind(f *schema.Field) string {
	typ := strings.ToLower(string(f.DataType))
	for _, s := range []string{"bytea", "blob", "binary", "bytes"} {
		if strings.Contains(typ, s) {
			return binaryColumn
		}
	}
	for _, s := range []string{"text", "char", "clob", "string"} {
		if strings.Contains(typ, s) {
			return textColumn
		}
	}
	return typ
}

// hasPHITags reports whether t has a phi tag, or a struct it holds or
// that GORM flattens into its columns (an embedded struct or *struct,
// even one tagged phi:"-") has one.
func hasPHITags(t reflect.Type, seen map[reflect.Type]bool) bool {
	if t.Kind() != reflect.Struct || seen[t] {
		return false
	}
	seen[t] = true
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag, tagged := sf.Tag.Lookup("phi")
		if tagged && tag != "-" {
			return true
		}
		ft := sf.Type
		flattened := sf.Anonymous || strings.Contains(strings.ToUpper(sf.Tag.Get("gorm")), "EMBEDDED")
		if flattened && ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if (!tagged || flattened) && hasPHITags(ft, seen) {
			return true
		}
	}
	return false
}

// lookup finds the encrypted field or blind index of a GORM column or Go
// field name, as GORM's Schema.LookUpField does, but comparing names as
// a database does (see columnKey), so that no spelling of a column that
// reaches it escapes the checks.
func (m *model) lookup(s *schema.Schema, key string) *column {
	if c := m.column(key); c != nil {
		return c
	}
	if s != nil {
		if f := s.LookUpField(key); f != nil {
			return m.column(f.DBName)
		}
	}
	for _, c := range m.cols {
		if strings.EqualFold(c.name, key) {
			return c
		}
	}
	return nil
}

// column returns the encrypted field or blind index whose column is
// name, however the statement spells it; nil if none.
func (m *model) column(name string) *column {
	return m.byColumn[columnKey(name)]
}

// columnKey returns the column that name reaches in SQL, in the form the
// plugin compares: without surrounding spaces, without quotes (`, ", [ ])
// or a table prefix (patients.ssn), in lower case. SQLite and MySQL
// compare column names without case, so "SSN" and "sSn" write the ssn
// column; PostgreSQL folds unquoted names to lower case.
func columnKey(name string) string {
	name = strings.Map(func(r rune) rune {
		if strings.ContainsRune("`\"[]", r) {
			return -1
		}
		return r
	}, name)
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	return strings.ToLower(strings.TrimSpace(name))
}

// tableKey returns the table that a table name or expression (as given
// to db.Table) writes, in the form the plugin compares: its first word
// (without an alias: "patients p", "patients AS p"), without quotes or a
// schema prefix (public.patients), in lower case. MySQL on Windows and
// macOS and SQLite compare table names without case, and PostgreSQL
// folds unquoted names to lower case, so "Patients" writes patients.
func tableKey(name string) string {
	name = strings.TrimSpace(name)
	if i := strings.IndexAny(name, " \t\n\r,"); i >= 0 {
		name = name[:i]
	}
	return columnKey(name)
}

// LayoutError is a disagreement between a record type's phi tags and its
// GORM schema, found when the plugin first sees the type (or registers it,
// see Config.Models). It names fields, never values.
type LayoutError struct {
	Type, Field, Reason string
}

// Error names the type, the field and the disagreement.
func (e *LayoutError) Error() string {
	s := "gormphi: " + e.Type
	if e.Field != "" {
		s += "." + e.Field
	}
	return s + ": " + e.Reason
}

// Unwrap returns ErrLayout.
func (e *LayoutError) Unwrap() error { return ErrLayout }

// Errors. Test for them with errors.Is; the plugin also returns the errors
// of package fields (fields.ErrNotSealed, fields.ErrMissingRecordID, ...),
// of package envelope (envelope.ErrDecrypt) and of the KMS
// (kms.ErrUnavailable), wrapped.
var (
	// ErrLayout means a record type's phi tags and its GORM schema
	// disagree; the error is a *LayoutError.
	ErrLayout = errors.New("gormphi: phi tags and GORM schema disagree")
	// ErrPlaintext means a write gave an encrypted column (or a blind
	// index column) something other than an encrypted value (or a blind
	// index): a string, a number, a SQL expression. It is refused, since
	// it could be plaintext.
	ErrPlaintext = errors.New("gormphi: refusing a value that is not encrypted for an encrypted column")
	// ErrIndexSources means an update changes some source fields of a
	// blind index but the others are not known, so the index cannot be
	// recomputed: include them in the update, or Save the whole record.
	ErrIndexSources = errors.New("gormphi: update changes a blind index source, but not all of its sources are known")
	// ErrNotRegistered means a function of this package was given a
	// *gorm.DB without the plugin (see Plugin).
	ErrNotRegistered = errors.New("gormphi: plugin not registered on this *gorm.DB (db.Use)")
)
