package gormphi_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/fields/gormphi"
)

// Each of these types disagrees with GORM in one way.
type (
	renamedColumn struct {
		ID       string        `phi:"id,table=renamed_columns"`
		TenantID string        `phi:"scope"`
		SSN      fields.String `gorm:"column:social" phi:"encrypt"` // bound to "ssn"
	}
	otherTable struct {
		ID       string        `phi:"id,table=patients"` // GORM: other_tables
		TenantID string        `phi:"scope"`
		SSN      fields.String `phi:"encrypt"`
	}
	timeColumn struct {
		ID       string                      `phi:"id,table=time_columns"`
		TenantID string                      `phi:"scope"`
		Born     fields.Encrypted[time.Time] `gorm:"type:timestamp" phi:"encrypt"` // a timestamp column
	}
	ignoredByGORM struct {
		ID       string        `phi:"id,table=ignored_by_gorms"`
		TenantID string        `phi:"scope"`
		SSN      fields.String `gorm:"-" phi:"encrypt"`
	}
	// aligned renames both.
	aligned struct {
		ID       string                      `phi:"id,table=aligned"`
		TenantID string                      `phi:"scope"`
		SSN      fields.String               `gorm:"column:social" phi:"encrypt,column=social"`
		Born     fields.Encrypted[time.Time] `phi:"encrypt"`
		SSNIndex fields.BlindIndex           `gorm:"column:social_idx" phi:"index,of=SSN,bits=8,column=social_idx"`
	}
)

func (aligned) TableName() string { return "aligned" }

// Phi-tagged fields that package fields does not describe but GORM makes
// columns of the record: through an embedded pointer, or in an embedded
// struct tagged phi:"-".
type (
	UnseenPhone struct {
		Phone fields.String `phi:"encrypt"`
	}
	embeddedPointer struct {
		ID       string        `phi:"id,table=embedded_pointers"`
		TenantID string        `phi:"scope"`
		SSN      fields.String `phi:"encrypt"`
		*UnseenPhone
	}
	embeddedSkipped struct {
		ID          string        `phi:"id,table=embedded_skippeds"`
		TenantID    string        `phi:"scope"`
		SSN         fields.String `phi:"encrypt"`
		UnseenPhone `phi:"-"`
	}
	onlyEmbedded struct { // its only phi tags are the embedded struct's
		ID          string `gorm:"primaryKey"`
		UnseenPhone `phi:"-"`
	}
)

// TestLayoutRefusesUnseenPHIColumns checks that a type whose GORM columns
// include a phi-tagged field that the codec would neither seal nor check
// is refused, rather than left to take plaintext through Updates(map).
func TestLayoutRefusesUnseenPHIColumns(t *testing.T) {
	codec, _ := newCodec(t, fields.Config{})
	for _, model := range []any{&embeddedPointer{}, &embeddedSkipped{}, &onlyEmbedded{}} {
		db, err := gorm.Open(dialects["sqlite"](t), &gorm.Config{Logger: logger.Discard})
		require.NoError(t, err)
		plugin, err := gormphi.New(gormphi.Config{Codec: codec})
		require.NoError(t, err)
		require.NoError(t, db.Use(plugin))
		err = plugin.Check(db, model)
		// The plugin's own check, or package fields refusing the type.
		var le *gormphi.LayoutError
		var te *fields.TagError
		assert.True(t, errors.As(err, &le) || errors.As(err, &te), "%T: %v", model, err)
		// On first use too, before anything is written.
		err = db.Model(model).Create(map[string]any{"id": "1", "tenant_id": "t", "phone": "555-0100"}).Error
		assert.True(t, errors.As(err, &le) || errors.As(err, &te), "%T: %v", model, err)
	}
	// Package fields skips a struct tagged phi:"-" without error: the
	// refusal is the plugin's.
	db := openDB(t, "sqlite", nil)
	plugin, err := gormphi.New(gormphi.Config{Codec: codec})
	require.NoError(t, err)
	var le *gormphi.LayoutError
	require.ErrorAs(t, plugin.Check(db, &embeddedSkipped{}), &le)
	assert.Equal(t, "Phone", le.Field)
	assert.ErrorIs(t, le, gormphi.ErrLayout)
}

func TestLayoutChecks(t *testing.T) {
	codec, _ := newCodec(t, fields.Config{})
	for _, model := range []any{&renamedColumn{}, &otherTable{}, &timeColumn{}, &ignoredByGORM{}} {
		db, err := gorm.Open(dialects["sqlite"](t), &gorm.Config{Logger: logger.Discard})
		require.NoError(t, err)
		plugin, err := gormphi.New(gormphi.Config{Codec: codec, Models: []any{model}})
		require.NoError(t, err)
		err = db.Use(plugin)
		var le *gormphi.LayoutError
		require.ErrorAs(t, err, &le, "%T", model)
		assert.ErrorIs(t, err, gormphi.ErrLayout)

		// Registered without Models, the plugin refuses the type on
		// first use, before writing anything.
		db, err = gorm.Open(dialects["sqlite"](t), &gorm.Config{Logger: logger.Discard})
		require.NoError(t, err)
		plugin, err = gormphi.New(gormphi.Config{Codec: codec})
		require.NoError(t, err)
		require.NoError(t, db.Use(plugin))
		assert.ErrorIs(t, db.Create(model).Error, gormphi.ErrLayout)
	}

	db := openDB(t, "sqlite", codec, &aligned{})
	a := &aligned{ID: "1", TenantID: "t", SSN: fields.New("999-00-0001"), Born: fields.New(time.Date(1990, 1, 2, 0, 0, 0, 0, time.UTC))}
	require.NoError(t, db.Create(a).Error)
	found, err := gormphi.Search(db, &aligned{TenantID: "t", SSN: fields.New("999-00-0001")}, "SSNIndex")
	require.NoError(t, err)
	require.Len(t, found, 1)
	assert.True(t, a.Born.Get().Equal(found[0].Born.Get()))

	_, err = gormphi.New(gormphi.Config{})
	assert.Error(t, err)
	bare, err := gorm.Open(dialects["sqlite"](t), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	_, err = gormphi.Search(bare, &aligned{TenantID: "t", SSN: fields.New("x")}, "SSNIndex")
	assert.ErrorIs(t, err, gormphi.ErrNotRegistered)
}
