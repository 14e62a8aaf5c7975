package gormphi

import (
	"fmt"
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/phicrypt/phicrypt/fields"
)

// Find returns the records of type T that equal template on the encrypted
// fields it sets, within its scope, opened:
//
//	found, err := gormphi.Find(db, &Patient{TenantID: t, SSN: fields.New(ssn)})
//
// It searches every blind index whose source fields are all set in
// template (not prefix indexes: see fields.Query.EqualSet), under every
// live index key version, and keeps the rows that Codec.Match confirms
// for each: the false positives of truncated indexes never come back. A
// set field that no such index covers fails with fields.ErrNoIndex; a
// template without its scope with fields.ErrMissingRecordID. Fields
// that are not encrypted (plain columns) are not compared: add them to
// db with Where. An index matches as its normalizers compare, so a
// phonetic index alone finds the names that sound alike.
func Find[T any](db *gorm.DB, template *T) ([]T, error) {
	return Query[T](db, fields.NewQuery(template).EqualSet())
}

// Query runs q on db (which may carry further conditions, a context with
// WithContext, an Order, but no Limit, since a LIMIT would count
// candidates rather than matches) and returns the matching records of
// type T, opened: Where narrows the rows to q's candidates, and
// fields.Search.Match keeps those that really match. q's template must
// be a *T.
func Query[T any](db *gorm.DB, q *fields.Query) ([]T, error) {
	if _, ok := q.Template().(*T); !ok {
		return nil, fmt.Errorf("gormphi: Query[%v] with a template of type %T", reflect.TypeFor[T](), q.Template())
	}
	s, scopes, err := Prepare(db, q)
	if err != nil {
		return nil, err
	}
	var candidates []T
	if err := db.Scopes(scopes).Find(&candidates).Error; err != nil {
		return nil, err
	}
	found := candidates[:0]
	for i := range candidates {
		ok, err := s.Match(&candidates[i])
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

// Where is a GORM scope that narrows a query to the candidates of q: the
// rows of the template's scope whose blind indexes hold q's terms (see
// fields.Codec.Search). The candidates include the false positives of
// truncated indexes and of a range's edge buckets, and, when a PHIScope
// method gives the scope (no column holds it), the rows of other scopes,
// which the plugin leaves sealed: keep those for which the Search's Match
// is true, or call Query, which does both.
func Where(q *fields.Query) func(*gorm.DB) *gorm.DB {
	return func(db *gorm.DB) *gorm.DB {
		_, scopes, err := Prepare(db, q)
		if err != nil {
			db.AddError(err)
			return db
		}
		return scopes(db)
	}
}

// Prepare computes q's terms once and returns the Search, whose Match
// keeps the rows that really match, with the scope that narrows a query
// on db to q's candidates, as Where does. It is for code that reads the
// candidates itself, in batches (FindInBatches, with a Limit per batch)
// or with a cursor: Where would compute the terms again each time GORM
// applies it, and a separate Codec.Search once more.
func Prepare(db *gorm.DB, q *fields.Query) (*fields.Search, func(*gorm.DB) *gorm.DB, error) {
	p, err := pluginOf(db)
	if err != nil {
		return nil, nil, err
	}
	return p.search(db, q)
}

// search computes q's terms and the scope that writes them with GORM's
// columns for the template's type.
func (p *Plugin) search(db *gorm.DB, q *fields.Query) (*fields.Search, func(*gorm.DB) *gorm.DB, error) {
	st, err := parse(db, q.Template())
	if err != nil {
		return nil, nil, err
	}
	m, err := p.model(st)
	if err == nil && m == nil {
		err = fmt.Errorf("gormphi: %v has no phi tags", st.ModelType)
	}
	if err != nil {
		return nil, nil, err
	}
	ctx := db.Statement.Context
	s, err := p.codec.Search(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	tv := reflect.Indirect(reflect.ValueOf(q.Template()))
	var exprs []clause.Expression
	if m.scopeCol != "" {
		exprs = append(exprs, clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: m.scopeCol}, Value: s.Scope})
	}
	scoped := map[string]bool{}
	for _, sc := range s.Conds {
		var ors []clause.Expression
		for _, ct := range sc.Columns {
			var c *column
			for _, x := range m.cols {
				if x.blind != nil && x.name == ct.Index {
					c = x
				}
			}
			if c == nil {
				return nil, nil, fmt.Errorf("gormphi: %v has no blind index %q", st.ModelType, ct.Index)
			}
			values := make([]any, len(ct.Terms))
			for i, t := range ct.Terms {
				values[i] = t
			}
			ors = append(ors, clause.IN{Column: clause.Column{Table: clause.CurrentTable, Name: c.db}, Values: values})
			if c.scope != "" && !scoped[c.scope] {
				// The index's key is scoped by a field of its own.
				scoped[c.scope] = true
				f, _ := tv.Type().FieldByName(c.blind.Scope)
				exprs = append(exprs, clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: c.scope}, Value: tv.FieldByIndex(f.Index).Interface()})
			}
		}
		if len(ors) == 1 {
			exprs = append(exprs, ors[0])
		} else {
			exprs = append(exprs, clause.Or(ors...))
		}
	}
	return s, func(db *gorm.DB) *gorm.DB {
		for _, e := range exprs {
			db = db.Where(e)
		}
		if m.scopeCol == "" {
			// A PHIScope method gives the scope: open only the rows of
			// the template's (Match refuses the others).
			db = db.Set(settingOpenScope, s.Scope)
		}
		return db
	}, nil
}
