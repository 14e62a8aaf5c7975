package fields_test

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

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
	SSNIndex fields.BlindIndex `phi:"index,of=SSN+Born,normalize=digits|trim+fold,bits=12,text,scope=Tenant"`
}

var stringType = reflect.TypeFor[string]()

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
		{Name: "LayoutContact.Phone", Index: []int{2, 0}, Column: "phone", Type: stringType, Kind: "string"},
		{Name: "Home.Phone", Index: []int{3, 0}, Column: "home.phone", Type: stringType, Kind: "string"},
		{Name: "SSN", Index: []int{4}, Column: "social", Type: stringType, Kind: "string", Deterministic: true},
		{Name: "Born", Index: []int{5}, Column: "born", Type: stringType, Kind: "string", Migrate: true},
	}, l.Fields)
	assert.Equal(t, []fields.IndexLayout{
		{Name: "SSNIndex", Index: []int{6}, Column: "ssn_index", Of: []string{"SSN", "Born"}, Normalize: "digits|trim+fold", Bits: 12, Text: true, Scope: "Tenant"},
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

type kindsRecord struct {
	ID     string                        `phi:"id,table=kinds"`
	Tenant string                        `phi:"scope"`
	S      fields.Encrypted[string]      `phi:"encrypt"`
	B      fields.Encrypted[[]byte]      `phi:"encrypt"`
	Ok     fields.Encrypted[bool]        `phi:"encrypt"`
	I      fields.Encrypted[int32]       `phi:"encrypt"`
	U      fields.Encrypted[uint16]      `phi:"encrypt"`
	F      fields.Encrypted[float32]     `phi:"encrypt"`
	T      fields.Encrypted[time.Time]   `phi:"encrypt"`
	IP     fields.Encrypted[netip.Addr]  `phi:"encrypt"`
	J      fields.Encrypted[[]string]    `phi:"encrypt"`
	P      fields.Encrypted[*string]     `phi:"encrypt"`
	M      fields.Encrypted[map[int]int] `phi:"encrypt"`
}

// TestDescribeKinds: each field's plaintext type and its encoding, which
// decides which Go types its values decrypt into.
func TestDescribeKinds(t *testing.T) {
	l, err := fields.Describe(&kindsRecord{})
	require.NoError(t, err)
	got := map[string]string{}
	for _, f := range l.Fields {
		got[f.Name] = f.Kind
	}
	assert.Equal(t, map[string]string{"S": "string", "B": "bytes", "Ok": "bool", "I": "int", "U": "uint", "F": "float",
		"T": "time", "IP": "binary", "J": "json", "P": "pointer", "M": "json"}, got)
	assert.Equal(t, reflect.TypeFor[int32](), l.Fields[3].Type)
	assert.Equal(t, reflect.TypeFor[*string](), l.Fields[9].Type)
	assert.Equal(t, reflect.TypeFor[netip.Addr](), l.Fields[7].Type)
}
