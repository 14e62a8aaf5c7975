package gormphi

import (
	"errors"
	"fmt"
	"reflect"
	"sync"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/phicrypt/phicrypt/fields"
)

// Name is the plugin's name in gorm.Config.Plugins.
const Name = "phicrypt"

// Config configures a Plugin.
type Config struct {
	// Codec seals and opens the records. Required.
	Codec *fields.Codec
	// Models are record types (pointers to zero values, as for
	// AutoMigrate) checked when the plugin is registered, so that a
	// disagreement between phi tags and GORM's schema fails at startup
	// rather than on first use.
	Models []any
}

// Plugin seals records before GORM writes them and opens them after GORM
// reads them. Register it once per *gorm.DB with db.Use; it is safe for
// concurrent use.
type Plugin struct {
	codec  *fields.Codec
	models []any
	cache  sync.Map // *schema.Schema -> *modelResult
	tables sync.Map // tableKey(table) -> *model, for statements without a model
	tags   sync.Map // reflect.Type -> bool: has phi tags
	// layouts holds fields.Describe of the types that open has met.
	layouts sync.Map // reflect.Type -> *fields.Layout
}

type modelResult struct {
	m   *model
	err error
}

var _ gorm.Plugin = (*Plugin)(nil)

// New returns a Plugin for cfg.
func New(cfg Config) (*Plugin, error) {
	if cfg.Codec == nil {
		return nil, errors.New("gormphi: Config.Codec is nil")
	}
	return &Plugin{codec: cfg.Codec, models: cfg.Models}, nil
}

// Name returns Name.
func (p *Plugin) Name() string { return Name }

// Codec returns the plugin's codec.
func (p *Plugin) Codec() *fields.Codec { return p.codec }

// Initialize registers the plugin's callbacks on db and checks
// Config.Models. db.Use calls it.
//
// Create: records are sealed after the BeforeSave and BeforeCreate hooks,
// before associations and the INSERT. Update (Save, Updates, Update,
// UpdateColumn(s)): the assignments GORM is about to make are checked and
// the encrypted ones sealed, after the hooks and the associations, before
// the UPDATE. Query (Find, First, Take, Last, preloads): records are
// opened before the AfterFind hooks.
func (p *Plugin) Initialize(db *gorm.DB) error {
	cb := db.Callback()
	if err := cb.Create().After("gorm:before_create").Before("gorm:save_before_associations").
		Register("phicrypt:seal", p.beforeCreate); err != nil {
		return err
	}
	if err := cb.Update().After("gorm:save_before_associations").Before("gorm:update").
		Register("phicrypt:seal", p.beforeUpdate); err != nil {
		return err
	}
	if err := cb.Update().After("gorm:update").Register("phicrypt:after_update", p.afterUpdate); err != nil {
		return err
	}
	if err := cb.Query().After("gorm:preload").Before("gorm:after_query").
		Register("phicrypt:open", p.afterQuery); err != nil {
		return err
	}
	return p.Check(db, p.models...)
}

// Check checks the phi tags of each model against GORM's schema for db,
// as the plugin does on first use of a type: encrypted fields and blind
// indexes must be GORM columns whose names are their bound columns, the
// phi table must be GORM's table, and encrypted columns must have a text
// or binary type. Types without phi tags pass.
func (p *Plugin) Check(db *gorm.DB, models ...any) error {
	for _, v := range models {
		s, err := parse(db, v)
		if err != nil {
			return err
		}
		if _, err := p.model(s); err != nil {
			return err
		}
	}
	return nil
}

func parse(db *gorm.DB, v any) (*schema.Schema, error) {
	stmt := &gorm.Statement{DB: db}
	if err := stmt.Parse(v); err != nil {
		return nil, fmt.Errorf("gormphi: %w", err)
	}
	return stmt.Schema, nil
}

// model returns the checked model of s, or nil for a type without phi
// tags.
func (p *Plugin) model(s *schema.Schema) (*model, error) {
	if r, ok := p.cache.Load(s); ok {
		r := r.(*modelResult)
		return r.m, r.err
	}
	m, err := buildModel(s, p.codec)
	r, _ := p.cache.LoadOrStore(s, &modelResult{m, err})
	if m != nil {
		p.tables.LoadOrStore(tableKey(s.Table), m)
	}
	return r.(*modelResult).m, r.(*modelResult).err
}

// tagged reports whether struct type t has phi tags, cached.
func (p *Plugin) tagged(t reflect.Type) bool {
	if v, ok := p.tags.Load(t); ok {
		return v.(bool)
	}
	has := hasPHITags(t, map[reflect.Type]bool{})
	p.tags.Store(t, has)
	return has
}

// layout returns fields.Describe(t), cached.
func (p *Plugin) layout(t reflect.Type) (*fields.Layout, error) {
	if l, ok := p.layouts.Load(t); ok {
		return l.(*fields.Layout), nil
	}
	l, err := fields.Describe(t)
	if err != nil {
		return nil, err
	}
	p.layouts.Store(t, l)
	return l, nil
}

// pluginOf returns the plugin registered on db.
func pluginOf(db *gorm.DB) (*Plugin, error) {
	if pl, ok := db.Config.Plugins[Name].(*Plugin); ok {
		return pl, nil
	}
	return nil, ErrNotRegistered
}

// recordsOf returns what fields.Seal and fields.Open take for GORM's
// reflect value: a pointer to a struct, or a slice.
func recordsOf(rv reflect.Value) (any, bool) {
	switch rv.Kind() {
	case reflect.Struct:
		if rv.CanAddr() {
			return rv.Addr().Interface(), true
		}
	case reflect.Slice:
		return rv.Interface(), true
	case reflect.Array:
		if rv.CanAddr() {
			return rv.Slice(0, rv.Len()).Interface(), true
		}
	}
	return nil, false
}

// eachRecord calls fn for each addressable struct in rv.
func eachRecord(rv reflect.Value, fn func(r reflect.Value) error) error {
	switch rv.Kind() {
	case reflect.Struct:
		return fn(rv)
	case reflect.Slice, reflect.Array:
		for i := 0; i < rv.Len(); i++ {
			r := rv.Index(i)
			for r.Kind() == reflect.Pointer || r.Kind() == reflect.Interface {
				if r.IsNil() {
					break
				}
				r = r.Elem()
			}
			if r.Kind() == reflect.Struct {
				if err := fn(r); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
