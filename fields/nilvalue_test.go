package fields_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
)

// nilTenant and nilMRN have value-receiver String and MarshalText
// methods, which a nil pointer cannot call.
type (
	nilTenant struct{ Name string }
	nilMRN    struct{ V string }
)

func (t nilTenant) String() string             { return t.Name }
func (m nilMRN) MarshalText() ([]byte, error)  { return []byte(m.V), nil }
func (m *nilMRN) UnmarshalText(b []byte) error { m.V = string(b); return nil }

type (
	nilScopeRec struct {
		ID     string            `phi:"id,table=nil_scope"`
		Tenant *nilTenant        `phi:"scope"`
		SSN    fields.String     `phi:"encrypt"`
		SSNIdx fields.BlindIndex `phi:"index,of=SSN,normalize=digits,bits=8"`
	}
	nilIDRec struct {
		ID     *nilMRN       `phi:"id,table=nil_id"`
		Tenant string        `phi:"scope"`
		SSN    fields.String `phi:"encrypt"`
	}
	nilStringerRec struct {
		ID     string        `phi:"id,table=nil_stringer"`
		Tenant fmt.Stringer  `phi:"scope"`
		SSN    fields.String `phi:"encrypt"`
	}
	nilIndexScopeRec struct {
		ID      string `phi:"id,table=nil_index_scope"`
		Patient string `phi:"scope"`
		Tenant  *nilTenant
		SSN     fields.String     `phi:"encrypt"`
		SSNIdx  fields.BlindIndex `phi:"index,of=SSN,normalize=digits,bits=8,scope=Tenant"`
	}
	nilValueRec struct {
		ID     string                    `phi:"id,table=nil_value"`
		Tenant string                    `phi:"scope"`
		MRN    fields.Encrypted[*nilMRN] `phi:"encrypt"`
		MRNIdx fields.BlindIndex         `phi:"index,of=MRN,bits=8"`
	}
)

// TestNilIDAndScope: a nil pointer or interface as id or scope fails with
// ErrMissingRecordID in every call that reads it, never a panic (in
// OpenPipeline's goroutines a panic would end the process).
func TestNilIDAndScope(t *testing.T) {
	ctx := t.Context()
	c := newCodec(t, fields.Config{InsecureSkipIndexPlanner: true})
	calls := map[string]func() error{
		"Seal scope": func() error { return c.Seal(ctx, &nilScopeRec{ID: "1", SSN: fields.New("x")}) },
		"Open scope": func() error { return c.Open(ctx, &nilScopeRec{ID: "1"}) },
		"Open batch scope": func() error {
			return c.Open(ctx, make([]nilScopeRec, 600))
		},
		"OpenPipeline scope": func() error {
			pl := c.OpenPipeline(ctx)
			for range 600 {
				if err := pl.Add(&nilScopeRec{ID: "1"}); err != nil {
					return errors.Join(err, pl.Wait())
				}
			}
			return pl.Wait()
		},
		"IndexValue scope": func() error {
			_, err := c.IndexValue(ctx, &nilScopeRec{SSN: fields.New("1")}, "SSNIdx")
			return err
		},
		"IndexTerms scope": func() error {
			_, err := c.IndexTerms(ctx, &nilScopeRec{SSN: fields.New("1")}, "SSNIdx")
			return err
		},
		"Seal id":            func() error { return c.Seal(ctx, &nilIDRec{Tenant: "t", SSN: fields.New("x")}) },
		"Open id":            func() error { return c.Open(ctx, &nilIDRec{Tenant: "t"}) },
		"Seal nil interface": func() error { return c.Seal(ctx, &nilStringerRec{ID: "1", SSN: fields.New("x")}) },
		"Seal nil in interface": func() error {
			return c.Seal(ctx, &nilStringerRec{ID: "1", Tenant: (*nilTenant)(nil), SSN: fields.New("x")})
		},
		"Seal index scope": func() error {
			return c.Seal(ctx, &nilIndexScopeRec{ID: "1", Patient: "p", SSN: fields.New("123")})
		},
		"IndexTerms index scope": func() error {
			_, err := c.IndexTerms(ctx, &nilIndexScopeRec{Patient: "p", SSN: fields.New("1")}, "SSNIdx")
			return err
		},
	}
	for name, call := range calls {
		var err error
		require.NotPanics(t, func() { err = call() }, name)
		assert.ErrorIs(t, err, fields.ErrMissingRecordID, name)
	}

	// Set and non-nil, they work.
	require.NoError(t, c.Seal(ctx, &nilScopeRec{ID: "1", Tenant: &nilTenant{"tenant:a"}, SSN: fields.New("x")}))
	require.NoError(t, c.Seal(ctx, &nilIDRec{ID: &nilMRN{"MRN-1"}, Tenant: "t", SSN: fields.New("x")}))
	require.NoError(t, c.Seal(ctx, &nilStringerRec{ID: "1", Tenant: nilTenant{"tenant:a"}, SSN: fields.New("x")}))
}

// TestNilEncryptedPointerIndexed: a nil *T whose T has a value-receiver
// MarshalText seals and indexes (to NULL's peer, the empty text) without
// calling the method on nil.
func TestNilEncryptedPointerIndexed(t *testing.T) {
	c := newCodec(t, fields.Config{InsecureSkipIndexPlanner: true})
	r := &nilValueRec{ID: "1", Tenant: "t", MRN: fields.New[*nilMRN](nil)}
	require.NotPanics(t, func() { require.NoError(t, c.Seal(t.Context(), r)) })
	assert.True(t, r.MRN.Sealed())
}

// badMRN's MarshalText fails quoting the value, as validation code does.
type badMRN string

func (m badMRN) MarshalText() ([]byte, error) {
	if !strings.HasPrefix(string(m), "MRN-") {
		return nil, fmt.Errorf("invalid MRN %q", string(m))
	}
	return []byte(m), nil
}

// TestIDMarshalTextErrorDropped: the error of the id's own MarshalText,
// which may quote the id (an MRN), is replaced by ErrEncode naming the
// type.
func TestIDMarshalTextErrorDropped(t *testing.T) {
	type rec struct {
		MRN    badMRN        `phi:"id,table=bad_mrn"`
		Tenant string        `phi:"scope"`
		Name   fields.String `phi:"encrypt"`
	}
	c := newCodec(t, fields.Config{})
	err := c.Seal(t.Context(), &rec{MRN: "00012345678", Tenant: "t", Name: fields.New("Jane")})
	require.ErrorIs(t, err, fields.ErrEncode)
	assert.NotContains(t, err.Error(), "00012345678")
	assert.Contains(t, err.Error(), "MarshalText")
}
