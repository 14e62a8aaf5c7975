package gormphi

import (
	"context"
	"fmt"
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/phicrypt/phicrypt/fields"
)

// statementModel returns the model of the statement's schema, or, when
// GORM has no schema (db.Table("patients")) or a schema without phi tags
// (db.Table("patients").Model(&Row{})), the model of the table it writes:
// nil when the statement writes no known PHI table.
func (p *Plugin) statementModel(db *gorm.DB) (*model, error) {
	if s := db.Statement.Schema; s != nil {
		if m, err := p.model(s); err != nil || m != nil {
			return m, err
		}
	}
	return p.tableModel(db.Statement), nil
}

// tableModel returns the model of the table a statement names, compared
// as the database does (see tableKey): the table expression first, since
// GORM sets Statement.Table to the alias of "patients p".
func (p *Plugin) tableModel(stmt *gorm.Statement) *model {
	names := []string{stmt.Table}
	if stmt.TableExpr != nil {
		names = []string{stmt.TableExpr.SQL, stmt.Table}
	}
	for _, n := range names {
		if m, ok := p.tables.Load(tableKey(n)); ok {
			return m.(*model)
		}
	}
	return nil
}

// beforeCreate seals the records of an INSERT, or checks the values of a
// map insert.
func (p *Plugin) beforeCreate(db *gorm.DB) {
	if db.Error != nil {
		return
	}
	m, err := p.statementModel(db)
	if err != nil || m == nil {
		db.AddError(err)
		return
	}
	switch dest := db.Statement.Dest.(type) {
	case map[string]any:
		db.AddError(m.checkMap(db.Statement.Schema, dest))
		return
	case []map[string]any:
		for _, d := range dest {
			if db.AddError(m.checkMap(db.Statement.Schema, d)) != nil {
				return
			}
		}
		return
	}
	if s := db.Statement.Schema; s != nil && s.ModelType != m.layout.Type {
		// Records of another type written to m's table
		// (db.Table("patients").Create(&row)): checked, not sealed.
		db.AddError(m.checkRecords(db.Statement.Context, s, db.Statement.ReflectValue))
		return
	}
	if db.Statement.SkipHooks {
		// Written as they are: unsealed values fail in the driver
		// (fields.ErrNotSealed).
		return
	}
	rv := db.Statement.ReflectValue
	if err := eachRecord(rv, m.checkID); err != nil {
		db.AddError(err)
		return
	}
	recs, ok := recordsOf(rv)
	if !ok {
		db.AddError(fmt.Errorf("gormphi: cannot seal a %v that is not addressable: pass a pointer", rv.Type()))
		return
	}
	db.AddError(p.codec.Seal(db.Statement.Context, recs))
}

// checkID refuses a record whose id is its type's zero value: an
// auto-increment key is not known before the INSERT, and every value is
// bound to the id.
func (m *model) checkID(r reflect.Value) error {
	if r.Type() != m.layout.Type {
		return nil
	}
	if r.FieldByIndex(m.layout.IDIndex).IsZero() {
		return fmt.Errorf("%w: %s.%s is not set; values are bound to the record id, so it must exist before the INSERT: use a client-generated UUID or ULID, or set it in a BeforeCreate hook",
			fields.ErrMissingRecordID, m.layout.Type, m.layout.ID)
	}
	return nil
}

// checkMap checks the values a map gives to encrypted and index columns:
// the plugin does not seal maps, so they must be sealed values of the
// right type (or nil, for NULL).
func (m *model) checkMap(s *schema.Schema, values map[string]any) error {
	for k, v := range values {
		if c := m.lookup(s, k); c != nil {
			if err := c.check(v, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkRecords checks the values that records of schema s, a type other
// than m's, give to m's encrypted and index columns, as checkMap does.
func (m *model) checkRecords(ctx context.Context, s *schema.Schema, rv reflect.Value) error {
	return eachRecord(rv, func(r reflect.Value) error {
		for _, f := range s.Fields {
			if c := m.column(f.DBName); c != nil && f.DBName != "" {
				v, _ := f.ValueOf(ctx, r)
				if err := c.check(v, true); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// check checks a value written to column c: nil (NULL), a value of the
// field's type, or a non-nil pointer to one. With sealed, an encrypted
// value must also be sealed.
func (c *column) check(v any, sealed bool) error {
	v, ok := c.value(v)
	if !ok {
		what := "a nil pointer"
		if v != nil {
			what = "a " + reflect.TypeOf(v).String()
		}
		return fmt.Errorf("%w: %s (column %s) takes a %v, not %s", ErrPlaintext, c.name, c.db, c.typ, what)
	}
	if s, ok := v.(interface{ Sealed() bool }); ok && sealed && !s.Sealed() {
		return fmt.Errorf("%w (%s, column %s)", fields.ErrNotSealed, c.name, c.db)
	}
	return nil
}

// value returns v as a value of c's type (nil for NULL), and false when it
// is not one.
func (c *column) value(v any) (any, bool) {
	if v == nil {
		return nil, true
	}
	rv := reflect.ValueOf(v)
	if rv.Type() == c.typ {
		return v, true
	}
	if rv.Kind() == reflect.Pointer && rv.Type().Elem() == c.typ && !rv.IsNil() {
		return rv.Elem().Interface(), true
	}
	return v, false
}

// settingAddedSet marks a statement whose SET clause the plugin added.
const settingAddedSet = "phicrypt:set"

// beforeUpdate builds the UPDATE's assignments as GORM would, checks those
// to encrypted and index columns, seals the encrypted ones against the
// record's id and scope, adds the blind indexes they change, and hands the
// result to GORM's update callback as its SET clause.
func (p *Plugin) beforeUpdate(db *gorm.DB) {
	stmt := db.Statement
	if db.Error != nil || stmt.SQL.Len() != 0 {
		return
	}
	m, err := p.statementModel(db)
	if err != nil || m == nil {
		db.AddError(err)
		return
	}
	if c, ok := stmt.Clauses["SET"]; ok {
		// A SET clause given by the caller (db.Clauses(clause.Set{...})):
		// checked, not sealed.
		if set, ok := c.Expression.(clause.Set); ok {
			for _, a := range set {
				if col := m.lookup(stmt.Schema, a.Column.Name); col != nil {
					if db.AddError(col.check(a.Value, true)) != nil {
						return
					}
				}
			}
		}
		return
	}
	if stmt.Schema == nil {
		// db.Table(...): GORM does not know the columns; check a map.
		if values, ok := stmt.Dest.(map[string]any); ok {
			db.AddError(m.checkMap(nil, values))
		}
		return
	}
	set := callbacks.ConvertToAssignments(stmt)
	if db.Error != nil || len(set) == 0 {
		return
	}
	var touched []int // indexes into set of encrypted assignments
	for i, a := range set {
		if c := m.column(a.Column.Name); c != nil {
			v, ok := c.value(a.Value)
			if err := c.check(a.Value, stmt.SkipHooks); err != nil {
				db.AddError(err)
				return
			}
			if ok {
				set[i].Value = v
			}
			if c.blind == nil {
				touched = append(touched, i)
			}
		}
	}
	if len(touched) > 0 && !stmt.SkipHooks {
		var err error
		if set, err = p.sealAssignments(db, m, set, touched); err != nil {
			db.AddError(err)
			return
		}
	}
	stmt.AddClause(set)
	stmt.Settings.Store(settingAddedSet, true)
}

// sealAssignments seals the encrypted values of set against the record
// being updated, and adds the blind indexes that depend on them.
func (p *Plugin) sealAssignments(db *gorm.DB, m *model, set clause.Set, touched []int) (clause.Set, error) {
	stmt := db.Statement
	rec := stmt.ReflectValue
	if rec.Kind() != reflect.Struct || rec.Type() != m.layout.Type {
		return nil, fmt.Errorf("%w: an update of encrypted columns needs one %v record (db.Model(&record)) with its id and scope, since every value is bound to them",
			fields.ErrMissingRecordID, m.layout.Type)
	}
	if err := m.checkID(rec); err != nil {
		return nil, err
	}
	// Work on a copy of the record: the assigned values replace its
	// fields, and fields that neither change nor feed a changed index are
	// cleared so that Seal leaves them alone.
	work := reflect.New(m.layout.Type).Elem()
	work.Set(rec)
	assigned := map[*column]int{}
	for _, i := range touched {
		c := m.column(set[i].Column.Name)
		assigned[c] = i
		f := work.FieldByIndex(c.index)
		if set[i].Value == nil {
			f.SetZero()
		} else {
			f.Set(reflect.ValueOf(set[i].Value))
		}
	}
	var indexes []*column
	needed := map[*column]bool{}
	for _, c := range m.cols {
		if c.blind == nil {
			continue
		}
		changes := false
		for _, s := range c.sources {
			if _, ok := assigned[s]; ok {
				changes = true
			}
		}
		if !changes {
			continue
		}
		for _, s := range c.sources {
			if _, ok := assigned[s]; ok {
				continue
			}
			if !work.FieldByIndex(s.index).Addr().Interface().(interface{ Opened() bool }).Opened() {
				return nil, fmt.Errorf("%w: %s changes, and %s, another source of blind index %s, is not in the update nor opened in the record",
					ErrIndexSources, names(c.sources, assigned), s.name, c.name)
			}
			needed[s] = true
		}
		indexes = append(indexes, c)
	}
	for _, c := range m.cols {
		if _, ok := assigned[c]; c.blind == nil && !ok && !needed[c] {
			work.FieldByIndex(c.index).SetZero()
		}
	}
	if err := p.codec.Seal(stmt.Context, work.Addr().Interface()); err != nil {
		return nil, err
	}
	// The sealed values go to the SET clause and back to the record.
	canSet := rec.CanAddr()
	for c, i := range assigned {
		v := work.FieldByIndex(c.index)
		set[i].Value = v.Interface()
		if canSet {
			rec.FieldByIndex(c.index).Set(v)
		}
	}
	for _, c := range indexes {
		v := work.FieldByIndex(c.index)
		found := false
		for i := range set {
			if m.column(set[i].Column.Name) == c {
				set[i].Value, found = v.Interface(), true
			}
		}
		if !found {
			set = append(set, clause.Assignment{Column: clause.Column{Name: c.db}, Value: v.Interface()})
		}
		if canSet {
			rec.FieldByIndex(c.index).Set(v)
		}
	}
	return set, nil
}

func names(cols []*column, assigned map[*column]int) string {
	s := ""
	for _, c := range cols {
		if _, ok := assigned[c]; ok {
			if s != "" {
				s += ", "
			}
			s += c.name
		}
	}
	return s
}

// afterUpdate removes the SET clause beforeUpdate added, so that a
// reused statement does not carry it over.
func (p *Plugin) afterUpdate(db *gorm.DB) {
	if _, ok := db.Statement.Settings.LoadAndDelete(settingAddedSet); ok {
		delete(db.Statement.Clauses, "SET")
	}
}

// openable is what the plugin sees of an Encrypted field.
type openable interface {
	IsNull() bool
	Opened() bool
}

// afterQuery opens the records a query read, before the AfterFind hooks.
func (p *Plugin) afterQuery(db *gorm.DB) {
	if db.Error != nil || db.Statement.SkipHooks || db.RowsAffected == 0 {
		return
	}
	var keep func(reflect.Value) bool
	if scope, ok := db.Statement.Settings.Load(settingOpenScope); ok {
		keep = inScope(scope.(string))
	}
	db.AddError(p.open(db.Statement.Context, db.Statement.ReflectValue, keep))
}
