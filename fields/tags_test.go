package fields_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
)

// Each type has one tag mistake; the plan must refuse it and name the field.
type (
	badKind struct {
		ID    string        `phi:"id,table=t"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypted"`
	}
	badOption struct {
		ID    string        `phi:"id,table=t"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt,colum=x"`
	}
	optionNeedsValue struct {
		ID    string        `phi:"id,table=t"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt,column"`
	}
	optionTakesNoValue struct {
		ID    string        `phi:"id,table=t"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt,deterministic=yes"`
	}
	duplicateOption struct {
		ID    string        `phi:"id,table=t"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt,column=a,column=b"`
	}
	encryptPlainString struct {
		ID    string `phi:"id,table=t"`
		Scope string `phi:"scope"`
		X     string `phi:"encrypt"`
	}
	unsupportedType struct {
		ID    string                       `phi:"id,table=t"`
		Scope string                       `phi:"scope"`
		X     fields.Encrypted[chan int]   `phi:"encrypt"`
		Y     fields.Encrypted[complex128] `phi:"encrypt"`
	}
	untaggedEncrypted struct {
		ID    string        `phi:"id,table=t"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt"`
		Y     fields.String
	}
	pointerEncrypted struct {
		ID    string         `phi:"id,table=t"`
		Scope string         `phi:"scope"`
		X     fields.String  `phi:"encrypt"`
		Y     *fields.String `phi:"encrypt"`
	}
	unexported struct {
		ID    string        `phi:"id,table=t"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt"`
		//lint:ignore U1000 the field is never used: the plan must refuse its tag.
		y fields.String `phi:"encrypt"`
	}
	noID struct {
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt"`
	}
	twoIDs struct {
		ID    string        `phi:"id,table=t"`
		ID2   string        `phi:"id"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt"`
	}
	noScope struct {
		ID string        `phi:"id,table=t"`
		X  fields.String `phi:"encrypt"`
	}
	noTable struct {
		ID    string        `phi:"id"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt"`
	}
	badIDType struct {
		ID    float64       `phi:"id,table=t"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt"`
	}
	nothingEncrypted struct {
		ID    string `phi:"id,table=t"`
		Scope string `phi:"scope"`
	}
	duplicateColumn struct {
		ID    string        `phi:"id,table=t"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt"`
		Y     fields.String `phi:"encrypt,column=x"`
	}
	indexOfUnknown struct {
		ID    string            `phi:"id,table=t"`
		Scope string            `phi:"scope"`
		X     fields.String     `phi:"encrypt"`
		I     fields.BlindIndex `phi:"index,of=Z,bits=8"`
	}
	indexWithoutBits struct {
		ID    string            `phi:"id,table=t"`
		Scope string            `phi:"scope"`
		X     fields.String     `phi:"encrypt"`
		I     fields.BlindIndex `phi:"index,of=X"`
	}
	indexBadBits struct {
		ID    string            `phi:"id,table=t"`
		Scope string            `phi:"scope"`
		X     fields.String     `phi:"encrypt"`
		I     fields.BlindIndex `phi:"index,of=X,bits=65"`
	}
	indexBadNormalizer struct {
		ID    string            `phi:"id,table=t"`
		Scope string            `phi:"scope"`
		X     fields.String     `phi:"encrypt"`
		I     fields.BlindIndex `phi:"index,of=X,bits=8,normalize=trim+soundex"`
	}
	indexOnString struct {
		ID    string        `phi:"id,table=t"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt"`
		I     []byte        `phi:"index,of=X,bits=8"`
	}
	indexBadScope struct {
		ID    string            `phi:"id,table=t"`
		Scope string            `phi:"scope"`
		X     fields.String     `phi:"encrypt"`
		I     fields.BlindIndex `phi:"index,of=X,bits=8,scope=Nope"`
	}
	hiddenNested struct {
		ID    string        `phi:"id,table=t"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt"`
		//lint:ignore U1000 the field is never used: the plan must refuse the tags inside it.
		inner struct {
			Y fields.String `phi:"encrypt"`
		}
	}
	nestedID struct {
		ID    string        `phi:"id,table=t"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt"`
		Inner struct {
			Other string `phi:"id"`
		}
	}
)

func TestTagErrors(t *testing.T) {
	c := newCodec(t, fields.Config{})
	cases := map[string]struct {
		v     any
		field string
	}{
		"unknown kind":           {&badKind{}, "X"},
		"unknown option":         {&badOption{}, "X"},
		"option needs a value":   {&optionNeedsValue{}, "X"},
		"option takes no value":  {&optionTakesNoValue{}, "X"},
		"duplicate option":       {&duplicateOption{}, "X"},
		"encrypt a plain string": {&encryptPlainString{}, "X"},
		"unsupported type":       {&unsupportedType{}, "X"},
		"untagged encrypted":     {&untaggedEncrypted{}, "Y"},
		"pointer to encrypted":   {&pointerEncrypted{}, "Y"},
		"unexported":             {&unexported{}, "y"},
		"no id":                  {&noID{}, ""},
		"two ids":                {&twoIDs{}, "ID2"},
		"no scope":               {&noScope{}, ""},
		"no table":               {&noTable{}, ""},
		"bad id type":            {&badIDType{}, "ID"},
		"nothing encrypted":      {&nothingEncrypted{}, ""},
		"duplicate column":       {&duplicateColumn{}, "Y"},
		"index of unknown":       {&indexOfUnknown{}, "I"},
		"index without bits":     {&indexWithoutBits{}, "I"},
		"index bad bits":         {&indexBadBits{}, "I"},
		"index bad normalizer":   {&indexBadNormalizer{}, "I"},
		"index on []byte":        {&indexOnString{}, "I"},
		"index bad scope":        {&indexBadScope{}, "I"},
		"id in nested struct":    {&nestedID{}, "Inner.Other"},
		"unexported nested":      {&hiddenNested{}, "inner"},
		"PHIScope() int":         {&scopeInt{}, "PHIScope"},
		"PHIScope(string)":       {&scopeArg{}, "PHIScope"},
		"PHITable() int":         {&tableInt{}, "PHITable"},
		"embedded *struct":       {&embeddedPointer{}, "PhoneContact"},
		"pointer to struct":      {&pointerStruct{}, "Contact"},
		"slice of structs":       {&sliceOfStructs{}, "Contacts"},
		"map of structs":         {&mapOfStructs{}, "Contacts"},
		"slice of encrypted":     {&sliceOfEncrypted{}, "Phones"},
		"array of indexes":       {&arrayOfIndexes{}, "Indexes"},
	}
	for name, tc := range cases {
		err := c.Plan(tc.v)
		require.ErrorIs(t, err, fields.ErrInvalidTag, name)
		var te *fields.TagError
		require.ErrorAs(t, err, &te, name)
		assert.Equal(t, tc.field, te.Field, name)
		// The same error on every use: plans are cached, errors too.
		assert.Equal(t, err, c.Plan(tc.v), name)
		assert.ErrorIs(t, c.Seal(t.Context(), tc.v), fields.ErrInvalidTag, name)
		assert.ErrorIs(t, c.Open(t.Context(), tc.v), fields.ErrInvalidTag, name)
	}
}

// scopeInt, scopeArg and tableInt have PHIScope or PHITable methods of
// the wrong signature: PHIScope() int would put every record in one
// scope (one key for all tenants), PHIScope(string) string cannot be
// called.
type (
	scopeInt struct {
		ID  string `phi:"id,table=t"`
		Org string
		X   fields.String `phi:"encrypt"`
	}
	scopeArg struct {
		ID  string `phi:"id,table=t"`
		Org string
		X   fields.String `phi:"encrypt"`
	}
	tableInt struct {
		ID    string        `phi:"id"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt"`
	}
)

func (r scopeInt) PHIScope() int                  { return len(r.Org) }
func (r *scopeArg) PHIScope(prefix string) string { return prefix + r.Org }
func (tableInt) PHITable() int                    { return 1 }

// PhoneContact holds a phi-tagged field; the types below reach it, or an
// Encrypted or BlindIndex, through a pointer, slice, map or array, where
// Seal would never seal it.
type (
	PhoneContact struct {
		Phone fields.String `phi:"encrypt"`
	}
	embeddedPointer struct {
		ID    string        `phi:"id,table=t"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt"`
		*PhoneContact
	}
	pointerStruct struct {
		ID      string        `phi:"id,table=t"`
		Scope   string        `phi:"scope"`
		X       fields.String `phi:"encrypt"`
		Contact *PhoneContact
	}
	sliceOfStructs struct {
		ID       string        `phi:"id,table=t"`
		Scope    string        `phi:"scope"`
		X        fields.String `phi:"encrypt"`
		Contacts []PhoneContact
	}
	mapOfStructs struct {
		ID       string        `phi:"id,table=t"`
		Scope    string        `phi:"scope"`
		X        fields.String `phi:"encrypt"`
		Contacts map[string]*PhoneContact
	}
	sliceOfEncrypted struct {
		ID     string        `phi:"id,table=t"`
		Scope  string        `phi:"scope"`
		X      fields.String `phi:"encrypt"`
		Phones []fields.String
	}
	arrayOfIndexes struct {
		ID      string        `phi:"id,table=t"`
		Scope   string        `phi:"scope"`
		X       fields.String `phi:"encrypt"`
		Indexes [2]fields.BlindIndex
	}
)

type (
	listNode struct {
		Note string
		Next *listNode
	}
	withList struct {
		ID    string        `phi:"id,table=t"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt"`
		Notes *listNode
		Tags  map[string][]string
	}
)

// TestPointerReachedFieldsRefused: a phi field the walk cannot reach is
// refused by every call, so Seal never returns nil over a field it left
// in plaintext.
func TestPointerReachedFieldsRefused(t *testing.T) {
	c := newCodec(t, fields.Config{})
	r := &embeddedPointer{ID: "1", Scope: "s", X: fields.New("x"), PhoneContact: &PhoneContact{Phone: fields.New("555-0100")}}
	assert.ErrorIs(t, c.Seal(t.Context(), r), fields.ErrInvalidTag)
	assert.False(t, r.Phone.Sealed())
	assert.False(t, r.X.Sealed(), "nothing is sealed")

	// Pointers to types without phi fields, self-referencing ones too,
	// are allowed.
	assert.NoError(t, c.Plan(&withList{}))
}

// methods supplies table and scope through methods instead of tags.
type methods struct {
	ID     string        `phi:"id"`
	Tenant string        // not tagged: PHIScope reads it
	X      fields.String `phi:"encrypt"`
}

func (methods) PHITable() string    { return "via_methods" }
func (m *methods) PHIScope() string { return "tenant:" + m.Tenant }

func TestZeroIntegerID(t *testing.T) {
	type autoIncrement struct {
		ID    int64         `phi:"id,table=t"`
		Scope string        `phi:"scope"`
		X     fields.String `phi:"encrypt"`
	}
	c := newCodec(t, fields.Config{})
	r := autoIncrement{Scope: "s", X: fields.New("v")}
	assert.ErrorIs(t, c.Seal(t.Context(), &r), fields.ErrMissingRecordID, "an id not assigned yet is refused")
	r.ID = 42
	assert.NoError(t, c.Seal(t.Context(), &r))
}

func TestTableAndScopeMethods(t *testing.T) {
	c := newCodec(t, fields.Config{})
	m := methods{ID: "1", Tenant: "a", X: fields.New("v")}
	require.NoError(t, c.Seal(t.Context(), &m))
	v, err := m.X.Value()
	require.NoError(t, err)
	back := methods{ID: "1", Tenant: "a"}
	require.NoError(t, back.X.Scan(v))
	require.NoError(t, c.Open(t.Context(), &back))
	assert.Equal(t, "v", back.X.Get())
	moved := methods{ID: "1", Tenant: "b"}
	require.NoError(t, moved.X.Scan(v))
	assert.Error(t, c.Open(t.Context(), &moved))
}

func TestIndexPlanner(t *testing.T) {
	bits, err := fields.SuggestIndexBits(1_000_000, 0)
	require.NoError(t, err)
	assert.Equal(t, 18, bits, "2^18 = 262,144 values for a million rows: about 4 rows each")
	bits, err = fields.SuggestIndexBits(1_000_000, 12)
	require.NoError(t, err)
	assert.Equal(t, 11, bits, "never more bits than the value's entropy, less one")
	_, err = fields.SuggestIndexBits(3, 0)
	assert.Error(t, err)

	// ExpectedRows refuses plans that would single out rows.
	c := newCodec(t, fields.Config{ExpectedRows: 1174})
	err = c.Plan(&Patient{})
	assert.ErrorIs(t, err, fields.ErrInvalidTag, "16 bits over 1,174 rows leak: at most 9")
	ok := newCodec(t, fields.Config{ExpectedRows: 1 << 20})
	assert.NoError(t, ok.Plan(&Patient{}))
}
