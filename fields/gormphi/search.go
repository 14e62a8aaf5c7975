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
// query selecting no encrypted column needs no id or scope.
func (p *Plugin) open(ctx context.Context, rv reflect.Value) error {
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
	return p.codec.Open(ctx, recs)
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
	return p.open(ctx, reflect.ValueOf(dest))
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
// under another scope's key. A truncated index also matches other
// plaintexts, on purpose: keep the candidates for which Codec.Match is
// true, or call Search, which does both. A LIMIT counts candidates, not
// matches.
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
		if scopeCol != "" {
			tv := reflect.Indirect(reflect.ValueOf(template))
			f, _ := tv.Type().FieldByName(scopeField)
			db = db.Where(clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: scopeCol}, Value: tv.FieldByIndex(f.Index).Interface()})
		}
		return db
	}
}

// Search finds the records of type T whose blind index named index holds
// template's plaintext, within template's scope: it queries with
// WhereIndex (db may carry further conditions, and a context with
// WithContext), and keeps the candidates that Codec.Match confirms.
func Search[T any](db *gorm.DB, template *T, index string) ([]T, error) {
	p, err := pluginOf(db)
	if err != nil {
		return nil, err
	}
	var candidates []T
	if err := db.Scopes(WhereIndex(template, index)).Find(&candidates).Error; err != nil {
		return nil, err
	}
	found := candidates[:0]
	for i := range candidates {
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
