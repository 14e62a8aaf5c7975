package fields_test

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
)

type LayoutContact struct {
	Phone fields.String `phi:"encrypt"`
}

type layoutRecord struct {
	ID     int64  `phi:"id,table=layout"`
	Tenant string `phi:"scope"`
	LayoutContact
	Home     LayoutContact
	SSN      fields.String     `phi:"encrypt,column=social,deterministic"`
	Born     fields.String     `phi:"encrypt,migrate"`
	SSNIndex fields.BlindIndex `phi:"index,of=SSN+Born,bits=12,text,scope=Tenant"`
}

func TestDescribe(t *testing.T) {
	l, err := fields.Describe(&[]*layoutRecord{})
	require.NoError(t, err)
	assert.Equal(t, reflect.TypeFor[layoutRecord](), l.Type)
	assert.Equal(t, "layout", l.Table)
	assert.Equal(t, "ID", l.ID)
	assert.Equal(t, []int{0}, l.IDIndex)
	assert.Equal(t, "Tenant", l.Scope)
	assert.Equal(t, []int{1}, l.ScopeIndex)
	assert.Equal(t, []fields.FieldLayout{
		{Name: "LayoutContact.Phone", Index: []int{2, 0}, Column: "phone"},
		{Name: "Home.Phone", Index: []int{3, 0}, Column: "home.phone"},
		{Name: "SSN", Index: []int{4}, Column: "social", Deterministic: true},
		{Name: "Born", Index: []int{5}, Column: "born", Migrate: true},
	}, l.Fields)
	assert.Equal(t, []fields.IndexLayout{
		{Name: "SSNIndex", Index: []int{6}, Column: "ssn_index", Of: []string{"SSN", "Born"}, Bits: 12, Text: true, Scope: "Tenant"},
	}, l.Indexes)

	// The reflect.Type works too, and the caller's copy is its own.
	again, err := fields.Describe(reflect.TypeFor[layoutRecord]())
	require.NoError(t, err)
	again.Fields[0].Index[0] = 99
	third, err := fields.Describe(layoutRecord{})
	require.NoError(t, err)
	assert.Equal(t, []int{2, 0}, third.Fields[0].Index)

	// A scope from a method has no field.
	m, err := fields.Describe(&methods{})
	require.NoError(t, err)
	assert.Empty(t, m.Scope)
	assert.Equal(t, "via_methods", m.Table)

	_, err = fields.Describe(42)
	assert.ErrorIs(t, err, fields.ErrUnsupported)
	_, err = fields.Describe(struct{ X fields.String }{})
	assert.ErrorIs(t, err, fields.ErrInvalidTag)
}
