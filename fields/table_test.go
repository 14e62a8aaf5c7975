package fields_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
)

// untabled names no table: an ORM that owns table names binds one.
type untabled struct {
	ID       string            `phi:"id"`
	Tenant   string            `phi:"scope"`
	SSN      fields.String     `phi:"encrypt"`
	SSNIndex fields.BlindIndex `phi:"index,of=SSN,normalize=digits,bits=16"`
}

func TestBindTable(t *testing.T) {
	ctx := context.Background()
	codec := newCodec(t, fields.Config{})

	// Unbound, the type is refused as before, with its TagError.
	rec := &untabled{ID: "r1", Tenant: "tenant:a", SSN: fields.New("999-12-3456")}
	var tagErr *fields.TagError
	require.ErrorAs(t, codec.Seal(ctx, rec), &tagErr)
	assert.ErrorIs(t, tagErr, fields.ErrInvalidTag)
	assert.Contains(t, tagErr.Reason, "no table")

	// Describe shows the rest of the layout, with no table.
	l, err := fields.Describe(&untabled{})
	require.NoError(t, err)
	assert.Empty(t, l.Table)
	assert.Len(t, l.Fields, 1)

	require.NoError(t, codec.BindTable(&untabled{}, "people"))
	require.NoError(t, codec.BindTable([]untabled{}, "people"), "binding again to the same table")
	require.NoError(t, codec.Seal(ctx, rec))

	// The values are bound to the table, as if the tag said table=people.
	type tabled struct {
		ID       string            `phi:"id,table=people"`
		Tenant   string            `phi:"scope"`
		SSN      fields.String     `phi:"encrypt"`
		SSNIndex fields.BlindIndex `phi:"index,of=SSN,normalize=digits,bits=16"`
	}
	scanned := func() fields.String {
		v, err := rec.SSN.Value()
		require.NoError(t, err)
		var s fields.String
		require.NoError(t, s.Scan(v))
		return s
	}
	same := &tabled{ID: rec.ID, Tenant: rec.Tenant, SSN: scanned()}
	require.NoError(t, codec.Open(ctx, same))
	assert.Equal(t, "999-12-3456", same.SSN.Get())
	terms, err := codec.IndexTerms(ctx, &tabled{Tenant: "tenant:a", SSN: fields.New("999123456")}, "SSNIndex")
	require.NoError(t, err)
	require.Len(t, terms, 1)
	assert.True(t, terms[0].Equal(rec.SSNIndex))
	other := &tabled{ID: "r2", Tenant: rec.Tenant, SSN: scanned()}
	assert.ErrorIs(t, codec.Open(ctx, other), envelope.ErrDecrypt, "still bound to the record")

	// Another table, an empty one, or a table the type names: refused.
	assert.ErrorIs(t, codec.BindTable(&untabled{}, "others"), fields.ErrTableBinding)
	assert.ErrorIs(t, codec.BindTable(&untabled{}, ""), fields.ErrTableBinding)
	assert.ErrorIs(t, codec.BindTable(&tabled{}, "others"), fields.ErrTableBinding)
	require.NoError(t, codec.BindTable(&tabled{}, "people"))
	assert.ErrorIs(t, codec.BindTable(struct{ X fields.String }{}, "t"), fields.ErrInvalidTag)

	// Another codec has not bound it.
	assert.ErrorIs(t, newCodec(t, fields.Config{}).Seal(ctx, &untabled{ID: "r3", Tenant: "tenant:a", SSN: fields.New("1")}), fields.ErrInvalidTag)
}

// TestGormDataType: GORM asks the value types for their column types
// (schema.GormDataTypeInterface): text for ciphertexts whatever the
// plaintext type, bytes for blind indexes.
func TestGormDataType(t *testing.T) {
	type gormDataTyper interface{ GormDataType() string }
	for _, v := range []any{&fields.Encrypted[string]{}, &fields.Encrypted[int64]{}, &fields.Encrypted[[]byte]{}, fields.Encrypted[struct{ A int }]{}} {
		d, ok := v.(gormDataTyper)
		require.True(t, ok, "%T", v)
		assert.Equal(t, "string", d.GormDataType(), "%T", v)
	}
	d, ok := any(&fields.BlindIndex{}).(gormDataTyper)
	require.True(t, ok)
	assert.Equal(t, "bytes", d.GormDataType())
}
