package gormphi

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/phicrypt/phicrypt/fields"
)

// errScanned stops open's search for a value to open.
var errScanned = errors.New("gormphi: a scanned value")

// open opens the records of rv (a struct or a slice of structs or
// pointers) that hold values read from the database. Records whose
// encrypted fields are all NULL or already open are left alone, so that a
// query selecting no encrypted column needs no id or scope. With keep,
// only the records for which keep is true are opened: the others stay
// sealed.
func (p *Plugin) open(ctx context.Context, rv reflect.Value, keep func(reflect.Value) bool) error {
	for rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	t := rv.Type()
	if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
		t = t.Elem()
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
	}
	if t.Kind() != reflect.Struct || !p.tagged(t) {
		return nil
	}
	l, err := p.layout(t)
	if err != nil {
		return err
	}
	// Anything to open? The first scanned value ends the search.
	if eachRecord(rv, func(r reflect.Value) error {
		for _, f := range l.Fields {
			if v := r.FieldByIndex(f.Index).Addr().Interface().(openable); !v.IsNull() && !v.Opened() {
				return errScanned
			}
		}
		return nil
	}) == nil {
		return nil
	}
	recs, ok := recordsOf(rv)
	if !ok {
		return fmt.Errorf("gormphi: cannot open a %v that is not addressable: pass a pointer", rv.Type())
	}
	if keep != nil {
		kept := reflect.MakeSlice(reflect.SliceOf(reflect.PointerTo(t)), 0, 0)
		_ = eachRecord(rv, func(r reflect.Value) error {
			if r.Type() == t && r.CanAddr() && keep(r) {
				kept = reflect.Append(kept, r.Addr())
			}
			return nil
		})
		recs = kept.Interface()
	}
	return p.codec.Open(ctx, recs)
}

// settingOpenScope holds the scope of a search (a string) of a type whose
// scope comes from a PHIScope method: no column holds it, so the WHERE
// clause cannot narrow the rows to it, and the plugin opens only the rows
// read whose PHIScope is that scope, leaving the others sealed.
const settingOpenScope = "phicrypt:open_scope"

// methodScope returns what the PHIScope method of the addressable record
// r returns, and false when r's type has none.
func methodScope(r reflect.Value) (string, bool) {
	m := r.Addr().MethodByName("PHIScope")
	if !m.IsValid() || m.Type().NumIn() != 0 || m.Type().NumOut() != 1 || m.Type().Out(0).Kind() != reflect.String {
		return "", false
	}
	return m.Call(nil)[0].String(), true
}

// inScope returns the filter of the records that a query of scope (see
// settingOpenScope) may open: those whose PHIScope method returns it.
func inScope(scope string) func(reflect.Value) bool {
	return func(r reflect.Value) bool {
		s, ok := methodScope(r)
		return ok && s == scope
	}
}

// Open decrypts the encrypted fields of dest (a pointer to a struct, or
// to a slice of structs or pointers) with the codec of the plugin
// registered on db: for values read by Rows and ScanRows, Row, Pluck or
// Raw(...).Scan, which run no query callbacks. Find, First, Take, Last and
// preloads need no call: the plugin opens what they read.
func Open(db *gorm.DB, dest any) error {
	p, err := pluginOf(db)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if db.Statement != nil && db.Statement.Context != nil {
		ctx = db.Statement.Context
	}
	if err := p.bindUnseen(db, reflect.TypeOf(dest)); err != nil {
		return err
	}
	return p.open(ctx, reflect.ValueOf(dest), nil)
}

// bindUnseen checks the record type of t (a pointer to a struct or to a
// slice) against GORM's schema, as the callbacks do on first use, when its
// tags name no table: so that a type read only by Rows or Scan is bound
// to GORM's table before it is opened.
func (p *Plugin) bindUnseen(db *gorm.DB, t reflect.Type) error {
	for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct || !p.tagged(t) {
		return nil
	}
	if l, err := fields.Describe(t); err != nil || l.Table != "" {
		return nil // p.open reports the error
	}
	return p.Check(db, reflect.New(t).Interface())
}

// Scan is db.Scan(dest) followed by Open: GORM's Scan runs no query
// callbacks after reading the row, so the plugin does not see what it
// read. It returns the *gorm.DB of the Scan, with the Open error added.
func Scan(db *gorm.DB, dest any) *gorm.DB {
	tx := db.Scan(dest)
	if tx.Error == nil && tx.RowsAffected > 0 {
		tx.AddError(Open(tx, dest))
	}
	return tx
}

// WhereIndex is a GORM scope that narrows a query to the rows whose blind
// index named index (the Go name of a BlindIndex field) may match
// template's plaintext:
//
//	term := &Patient{TenantID: tenant, SSN: fields.New("999-12-3456")}
//	var candidates []Patient
//	db.Scopes(gormphi.WhereIndex(term, "SSNIndex")).Find(&candidates)
//
// It adds "index_column IN (terms)", one term per live index key version
// (Codec.IndexTerms), and "scope_column = template's scope" when the
// index's key is scoped by a field, since an index value means nothing
// under another scope's key. When a PHIScope method gives the scope, no
// column holds it: the query reads the candidates of every scope, and the
// plugin opens only those of the template's scope, leaving the others
// sealed. A truncated index also matches other plaintexts, on purpose,
// and other scopes' rows by chance: keep the candidates for which
// Codec.Match (which compares the scope too) is true, or call Search,
// which does both. A LIMIT counts candidates, not matches.
func WhereIndex(template any, index string) func(*gorm.DB) *gorm.DB {
	return func(db *gorm.DB) *gorm.DB {
		p, err := pluginOf(db)
		if err != nil {
			db.AddError(err)
			return db
		}
		s, err := parse(db, template)
		if err != nil {
			db.AddError(err)
			return db
		}
		m, err := p.model(s)
		if err == nil && m == nil {
			err = fmt.Errorf("gormphi: %v has no phi tags", s.ModelType)
		}
		if err != nil {
			db.AddError(err)
			return db
		}
		var c *column
		for _, x := range m.cols {
			if x.blind != nil && x.name == index {
				c = x
			}
		}
		if c == nil {
			db.AddError(fmt.Errorf("gormphi: %v has no blind index %q", s.ModelType, index))
			return db
		}
		terms, err := p.codec.IndexTerms(db.Statement.Context, template, index)
		if err != nil {
			db.AddError(err)
			return db
		}
		values := make([]any, len(terms))
		for i, t := range terms {
			values[i] = t
		}
		db = db.Where(clause.IN{Column: clause.Column{Table: clause.CurrentTable, Name: c.db}, Values: values})
		scopeCol, scopeField := m.scopeCol, m.layout.Scope
		if c.scope != "" {
			scopeCol, scopeField = c.scope, c.blind.Scope
		}
		tv := reflect.ValueOf(template).Elem() // a pointer: IndexTerms checked it
		if scopeCol == "" {
			// A PHIScope method gives the scope: the rows of other
			// scopes are read, but left sealed.
			scope, _ := methodScope(tv)
			return db.Set(settingOpenScope, scope)
		}
		f, _ := tv.Type().FieldByName(scopeField)
		return db.Where(clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: scopeCol}, Value: tv.FieldByIndex(f.Index).Interface()})
	}
}

// Search finds the records of type T whose blind index named index holds
// template's plaintext, within template's scope: it queries with
// WhereIndex (db may carry further conditions, and a context with
// WithContext), and keeps the candidates of template's scope that
// Codec.Match confirms. Candidates of other scopes (read when a PHIScope
// method gives the scope) are neither opened nor returned.
func Search[T any](db *gorm.DB, template *T, index string) ([]T, error) {
	p, err := pluginOf(db)
	if err != nil {
		return nil, err
	}
	if template == nil {
		return nil, fields.ErrUnsupported
	}
	var candidates []T
	if err := db.Scopes(WhereIndex(template, index)).Find(&candidates).Error; err != nil {
		return nil, err
	}
	keep := func(reflect.Value) bool { return true }
	if scope, ok := methodScope(reflect.ValueOf(template).Elem()); ok {
		keep = inScope(scope)
	}
	found := candidates[:0]
	for i := range candidates {
		if !keep(reflect.ValueOf(&candidates[i]).Elem()) {
			continue // another scope's record, left sealed
		}
		ok, err := p.codec.Match(&candidates[i], template, index)
		if err != nil {
			return nil, err
		}
		if ok {
			found = append(found, candidates[i])
		}
	}
	clear(candidates[len(found):]) // no decrypted PHI left behind the slice's length
	return found, nil
}
