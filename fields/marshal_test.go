package fields_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
)

// ptrTextMRN and ptrBinCode have pointer-receiver marshalers and only
// unexported fields: encoded as JSON of a copy, they would be "{}".
type (
	ptrTextMRN struct{ v string }
	ptrBinCode struct{ v string }
	// withBig holds a big.Int by value, whose MarshalJSON has a pointer
	// receiver.
	withBig struct{ N big.Int }
	// binShape has a pointer-receiver MarshalBinary that earlier releases
	// did not see: they stored it as JSON of its fields, as plainShape.
	binShape   struct{ A int }
	plainShape struct{ A int }
)

func (m *ptrTextMRN) MarshalText() ([]byte, error)   { return []byte(m.v), nil }
func (m *ptrTextMRN) UnmarshalText(b []byte) error   { m.v = string(b); return nil }
func (c *ptrBinCode) MarshalBinary() ([]byte, error) { return []byte(c.v), nil }
func (c *ptrBinCode) UnmarshalBinary(b []byte) error { c.v = string(b); return nil }
func (s *binShape) MarshalBinary() ([]byte, error)   { return []byte{byte(s.A)}, nil }
func (s *binShape) UnmarshalBinary(b []byte) error {
	if len(b) != 1 {
		return assert.AnError
	}
	s.A = int(b[0])
	return nil
}

type pointerMarshalers struct {
	ID    string                        `phi:"id,table=ptr_marshalers"`
	Scope string                        `phi:"scope"`
	MRN   fields.Encrypted[ptrTextMRN]  `phi:"encrypt"`
	PMRN  fields.Encrypted[*ptrTextMRN] `phi:"encrypt"`
	Code  fields.Encrypted[ptrBinCode]  `phi:"encrypt"`
	Big   fields.Encrypted[withBig]     `phi:"encrypt"`
	Idx   fields.BlindIndex             `phi:"index,of=MRN,bits=32"`
}

// copyCT moves a sealed value to a field as a database round trip does.
func copyCT(t *testing.T, from driver.Valuer, to sql.Scanner) {
	t.Helper()
	v, err := from.Value()
	require.NoError(t, err)
	require.NoError(t, to.Scan(v))
}

// TestPointerReceiverMarshalers: Seal encodes through the value's
// address, so pointer-receiver MarshalText, MarshalBinary and MarshalJSON
// are used and values round-trip, instead of being stored as "{}"; blind
// indexes read the same text.
func TestPointerReceiverMarshalers(t *testing.T) {
	ctx := t.Context()
	c := newCodec(t, fields.Config{InsecureSkipIndexPlanner: true})
	var n big.Int
	n.SetString("123456789012345678901234567890", 10)
	r := &pointerMarshalers{ID: "1", Scope: "s", MRN: fields.New(ptrTextMRN{"MRN-77"}),
		PMRN: fields.New(&ptrTextMRN{"MRN-78"}), Code: fields.New(ptrBinCode{"C-9"}), Big: fields.New(withBig{N: n})}
	require.NoError(t, c.Seal(ctx, r))
	back := &pointerMarshalers{ID: "1", Scope: "s"}
	copyCT(t, r.MRN, &back.MRN)
	copyCT(t, r.PMRN, &back.PMRN)
	copyCT(t, r.Code, &back.Code)
	copyCT(t, r.Big, &back.Big)
	require.NoError(t, c.Open(ctx, back))
	assert.Equal(t, "MRN-77", back.MRN.Get().v)
	assert.Equal(t, "MRN-78", back.PMRN.Get().v)
	assert.Equal(t, "C-9", back.Code.Get().v)
	big := back.Big.Get()
	assert.Equal(t, 0, n.Cmp(&big.N))

	other, err := c.IndexValue(ctx, &pointerMarshalers{Scope: "s", MRN: fields.New(ptrTextMRN{"MRN-99"})}, "Idx")
	require.NoError(t, err)
	assert.False(t, r.Idx.Equal(other), "the index reads MarshalText, not the \"{}\" of a copy")
}

// TestEarlierJSONEncodingOpens: a type whose pointer-receiver
// MarshalBinary earlier releases did not see was stored as JSON of its
// fields; those values still open.
func TestEarlierJSONEncodingOpens(t *testing.T) {
	type before struct {
		ID    string                       `phi:"id,table=json_compat"`
		Scope string                       `phi:"scope"`
		X     fields.Encrypted[plainShape] `phi:"encrypt,column=x"`
	}
	type after struct {
		ID    string                     `phi:"id,table=json_compat"`
		Scope string                     `phi:"scope"`
		X     fields.Encrypted[binShape] `phi:"encrypt,column=x"`
	}
	ctx := t.Context()
	c := newCodec(t, fields.Config{})
	old := &before{ID: "1", Scope: "s", X: fields.New(plainShape{A: 7})}
	require.NoError(t, c.Seal(ctx, old))
	got := &after{ID: "1", Scope: "s"}
	copyCT(t, old.X, &got.X)
	require.NoError(t, c.Open(ctx, got))
	assert.Equal(t, 7, got.X.Get().A)

	// New values use MarshalBinary, and open too.
	now := &after{ID: "1", Scope: "s", X: fields.New(binShape{A: 8})}
	require.NoError(t, c.Seal(ctx, now))
	got = &after{ID: "1", Scope: "s"}
	copyCT(t, now.X, &got.X)
	require.NoError(t, c.Open(ctx, got))
	assert.Equal(t, 8, got.X.Get().A)
}

// Types that Seal could not round-trip are refused at Plan.
type (
	holdsEncrypted struct{ X fields.String }
	// onlyMarshalText has a MarshalText but no UnmarshalText: its JSON
	// would be a string that does not decode into the struct.
	onlyMarshalText struct{ V string }
)

func (m *onlyMarshalText) MarshalText() ([]byte, error) { return []byte(m.V), nil }

// onlyMarshalJSON has a MarshalJSON but no UnmarshalJSON: its JSON is a
// string that does not decode back into the struct.
type onlyMarshalJSON struct{ V string }

func (m onlyMarshalJSON) MarshalJSON() ([]byte, error) { return json.Marshal(m.V) }

// textKey is a map key with MarshalText but no UnmarshalText.
type textKey struct{ A, B string }

func (k textKey) MarshalText() ([]byte, error) { return []byte(k.A + "|" + k.B), nil }

// Types that reach such a marshaler at depth.
type (
	contactWithHalfJSON struct {
		Phone onlyMarshalJSON
	}
	contactsWithHalfText struct {
		Phones []*onlyMarshalText
	}
	contactsByTextKey struct {
		ByKey map[textKey]string
	}
)

func TestUnroundtrippableTypesRefused(t *testing.T) {
	type innerEncrypted struct {
		ID    string                           `phi:"id,table=t"`
		Scope string                           `phi:"scope"`
		X     fields.Encrypted[holdsEncrypted] `phi:"encrypt"`
	}
	type sliceOfIndexes struct {
		ID    string                                           `phi:"id,table=t"`
		Scope string                                           `phi:"scope"`
		X     fields.Encrypted[map[string][]fields.BlindIndex] `phi:"encrypt"`
	}
	type pointerToInner struct {
		ID    string                            `phi:"id,table=t"`
		Scope string                            `phi:"scope"`
		X     fields.Encrypted[*holdsEncrypted] `phi:"encrypt"`
	}
	type halfText struct {
		ID    string                            `phi:"id,table=t"`
		Scope string                            `phi:"scope"`
		X     fields.Encrypted[onlyMarshalText] `phi:"encrypt"`
	}
	type nestedHalfJSON struct {
		ID    string                                `phi:"id,table=t"`
		Scope string                                `phi:"scope"`
		X     fields.Encrypted[contactWithHalfJSON] `phi:"encrypt"`
	}
	type nestedHalfText struct {
		ID    string                                 `phi:"id,table=t"`
		Scope string                                 `phi:"scope"`
		X     fields.Encrypted[contactsWithHalfText] `phi:"encrypt"`
	}
	type halfTextKey struct {
		ID    string                              `phi:"id,table=t"`
		Scope string                              `phi:"scope"`
		X     fields.Encrypted[contactsByTextKey] `phi:"encrypt"`
	}
	c := newCodec(t, fields.Config{})
	for name, v := range map[string]any{
		"struct holding an Encrypted":                 &innerEncrypted{},
		"map of BlindIndex slices":                    &sliceOfIndexes{},
		"pointer to an Encrypted":                     &pointerToInner{},
		"MarshalText, no UnmarshalText":               &halfText{},
		"field with MarshalJSON, no UnmarshalJSON":    &nestedHalfJSON{},
		"elements with MarshalText, no UnmarshalText": &nestedHalfText{},
		"map key with MarshalText, no UnmarshalText":  &halfTextKey{},
	} {
		err := c.Plan(v)
		require.ErrorIs(t, err, fields.ErrInvalidTag, name)
		var te *fields.TagError
		require.ErrorAs(t, err, &te, name)
		assert.Equal(t, "X", te.Field, name)
	}
}

// Nested types whose marshalers have their unmarshalers plan, and round-trip.
func TestNestedMarshalersRoundTrip(t *testing.T) {
	type visit struct {
		At    time.Time
		Cost  *big.Int
		Codes map[int]string
		Extra json.RawMessage
	}
	type record struct {
		ID    string                  `phi:"id,table=t"`
		Scope string                  `phi:"scope"`
		X     fields.Encrypted[visit] `phi:"encrypt"`
	}
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	in := visit{At: time.Date(2026, 12, 7, 1, 2, 3, 0, time.UTC), Cost: big.NewInt(12345), Codes: map[int]string{7: "x"}, Extra: json.RawMessage(`{"a":1}`)}
	r := &record{ID: "1", Scope: "s", X: fields.New(in)}
	require.NoError(t, c.Seal(ctx, r))
	got := &record{ID: "1", Scope: "s"}
	copyCT(t, r.X, &got.X)
	require.NoError(t, c.Open(ctx, got))
	out := got.X.Get()
	assert.True(t, in.At.Equal(out.At))
	assert.Equal(t, 0, in.Cost.Cmp(out.Cost))
	assert.Equal(t, in.Codes, out.Codes)
	assert.JSONEq(t, string(in.Extra), string(out.Extra))
}
