package fields_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
)

const errCanary = "999-66-ERRCANARY"

// textV1 and binV1 are what a field held before a type change; textV2 and
// binV2 replace them, with the same encoding tag, and their unmarshalers
// quote their input in their errors, as many do.
type (
	textV1 struct{ S string }
	textV2 struct{ S string }
	binV1  struct{ S string }
	binV2  struct{ S string }
	jsonV2 struct{ S string }
	// leakyMarshal fails to marshal with its value in the error.
	leakyMarshal struct{ S string }
)

func (v textV1) MarshalText() ([]byte, error)   { return []byte(v.S), nil }
func (v *textV1) UnmarshalText(b []byte) error  { v.S = string(b); return nil }
func (v textV2) MarshalText() ([]byte, error)   { return []byte(v.S), nil }
func (v *textV2) UnmarshalText(b []byte) error  { return fmt.Errorf("textV2: bad input %q", b) }
func (v binV1) MarshalBinary() ([]byte, error)  { return []byte(v.S), nil }
func (v *binV1) UnmarshalBinary(b []byte) error { v.S = string(b); return nil }
func (v binV2) MarshalBinary() ([]byte, error)  { return []byte(v.S), nil }
func (v *binV2) UnmarshalBinary(b []byte) error { return fmt.Errorf("binV2: bad input %q", b) }
func (v *jsonV2) UnmarshalJSON(b []byte) error  { return fmt.Errorf("jsonV2: bad input %s", b) }
func (v leakyMarshal) MarshalText() ([]byte, error) {
	return nil, fmt.Errorf("cannot marshal %q", v.S)
}
func (v *leakyMarshal) UnmarshalText(b []byte) error { return fmt.Errorf("bad %q", b) }

type typedBefore struct {
	ID    string                   `phi:"id,table=typed"`
	Scope string                   `phi:"scope"`
	Text  fields.Encrypted[textV1] `phi:"encrypt"`
	Bin   fields.Encrypted[binV1]  `phi:"encrypt"`
	JSON  fields.Encrypted[textV1] `phi:"encrypt,column=json"`
}

// jsonV1 is encoded as JSON: a struct without marshalers.
type jsonV1 struct{ S string }

type typedBeforeJSON struct {
	ID    string                   `phi:"id,table=typed"`
	Scope string                   `phi:"scope"`
	JSON  fields.Encrypted[jsonV1] `phi:"encrypt,column=json"`
}

type typedAfter struct {
	ID    string                   `phi:"id,table=typed"`
	Scope string                   `phi:"scope"`
	Text  fields.Encrypted[textV2] `phi:"encrypt"`
	Bin   fields.Encrypted[binV2]  `phi:"encrypt"`
	JSON  fields.Encrypted[jsonV2] `phi:"encrypt,column=json"`
}

// TestThirdPartyErrorsDropped changes a field's type so that the new
// type's unmarshaler fails on the stored plaintext and quotes it in its
// error, and makes a marshaler fail the same way: the errors match
// ErrTypeMismatch (or ErrEncode) and never carry the plaintext.
func TestThirdPartyErrorsDropped(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	before := typedBefore{ID: "1", Scope: "tenant:1", Text: fields.New(textV1{errCanary}), Bin: fields.New(binV1{errCanary})}
	require.NoError(t, c.Seal(ctx, &before))
	beforeJSON := typedBeforeJSON{ID: "1", Scope: "tenant:1", JSON: fields.New(jsonV1{errCanary})}
	require.NoError(t, c.Seal(ctx, &beforeJSON))

	for _, name := range []string{"Text", "Bin", "JSON"} {
		after := typedAfter{ID: "1", Scope: "tenant:1"}
		switch name {
		case "Text":
			v, err := before.Text.Value()
			require.NoError(t, err)
			require.NoError(t, after.Text.Scan(v))
		case "Bin":
			v, err := before.Bin.Value()
			require.NoError(t, err)
			require.NoError(t, after.Bin.Scan(v))
		case "JSON":
			v, err := beforeJSON.JSON.Value()
			require.NoError(t, err)
			require.NoError(t, after.JSON.Scan(v))
		}
		err := c.Open(ctx, &after)
		require.Error(t, err, name)
		assert.ErrorIs(t, err, fields.ErrTypeMismatch, name)
		var fe *fields.FieldError
		assert.True(t, errors.As(err, &fe), name)
		assert.NotContains(t, err.Error(), errCanary, name)
		assert.NotContains(t, fmt.Sprintf("%+v", err), errCanary, name)
	}

	// Legacy plaintext that the type's unmarshalers refuse.
	type legacy struct {
		ID    string                     `phi:"id,table=typed"`
		Scope string                     `phi:"scope"`
		Text  fields.Encrypted[textV2]   `phi:"encrypt,migrate"`
		List  fields.Encrypted[[]jsonV2] `phi:"encrypt,migrate"`
	}
	for _, field := range []string{"Text", "List"} {
		l := legacy{ID: "1", Scope: "tenant:1"}
		require.NoError(t, l.Text.Scan(`"`+errCanary+`"`))
		require.NoError(t, l.List.Scan(`["`+errCanary+`"]`))
		if field == "Text" {
			require.NoError(t, l.List.Scan(nil))
		} else {
			require.NoError(t, l.Text.Scan(nil))
		}
		err := c.Open(ctx, &l)
		assert.ErrorIs(t, err, fields.ErrTypeMismatch, field)
		if err != nil {
			assert.NotContains(t, err.Error(), errCanary, field)
		}
	}

	// A marshaler that fails and quotes its value.
	type leaky struct {
		ID    string                         `phi:"id,table=typed"`
		Scope string                         `phi:"scope"`
		V     fields.Encrypted[leakyMarshal] `phi:"encrypt"`
		Idx   fields.BlindIndex              `phi:"index,of=V,bits=8"`
	}
	r := leaky{ID: "1", Scope: "tenant:1", V: fields.New(leakyMarshal{errCanary})}
	err := c.Seal(ctx, &r)
	assert.ErrorIs(t, err, fields.ErrEncode)
	if err != nil {
		assert.NotContains(t, err.Error(), errCanary)
	}
	_, err = c.IndexValue(ctx, &r, "Idx")
	assert.ErrorIs(t, err, fields.ErrEncode)
	if err != nil {
		assert.NotContains(t, err.Error(), errCanary)
	}
}
