package fields_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

// TestIndexNeedsAScope: no blind index is computed under a key of the
// empty scope, which Destroy could never shred.
func TestIndexNeedsAScope(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	spec := fields.IndexSpec{Table: "patients", Column: "ssn", Bits: 16, Normalize: "digits"}
	calls := map[string]func() error{
		"IndexValue": func() error {
			_, err := c.IndexValue(ctx, &tiny{SSN: fields.New("999-12-3456")}, "SSNIndex")
			return err
		},
		"IndexTerms": func() error {
			_, err := c.IndexTerms(ctx, &tiny{SSN: fields.New("999-12-3456")}, "SSNIndex")
			return err
		},
		"IndexValue(index scope)": func() error {
			_, err := c.IndexValue(ctx, &perPatient{Patient: "patient:1", SSN: fields.New("999-12-3456")}, "SSNIndex")
			return err
		},
		"IndexTerms(index scope)": func() error {
			_, err := c.IndexTerms(ctx, &perPatient{Patient: "patient:1", SSN: fields.New("999-12-3456")}, "SSNIndex")
			return err
		},
		"IndexFor": func() error {
			_, err := c.IndexFor(ctx, "", spec, "999-12-3456")
			return err
		},
		"TermsFor": func() error {
			_, err := c.TermsFor(ctx, "", spec, "999-12-3456")
			return err
		},
		"Seal": func() error {
			return c.Seal(ctx, &tiny{ID: "1", SSN: fields.New("999-12-3456")})
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			assert.ErrorIs(t, call(), fields.ErrMissingRecordID)
		})
	}
	// The index's own scope is enough for a search: the record's scope is
	// not needed.
	_, err := c.IndexTerms(ctx, &perPatient{TenantID: "tenant:t", SSN: fields.New("999-12-3456")}, "SSNIndex")
	assert.NoError(t, err)
}

// TestIndexRefusesReservedScopes: the keyring's reserved scopes are
// refused through fields too.
func TestIndexRefusesReservedScopes(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	_, err := c.IndexValue(ctx, &tiny{TenantID: "phicrypt:audit", SSN: fields.New("999-12-3456")}, "SSNIndex")
	assert.ErrorIs(t, err, keys.ErrReservedScope)
	_, err = c.IndexFor(ctx, "phicrypt:audit", fields.IndexSpec{Table: "t", Column: "c", Bits: 8}, "x")
	assert.ErrorIs(t, err, keys.ErrReservedScope)
	err = c.Seal(ctx, &tiny{ID: "1", TenantID: "phicrypt:audit", SSN: fields.New("999-12-3456")})
	assert.ErrorIs(t, err, keys.ErrReservedScope)
}

// getCounter counts the key store's Get calls.
type getCounter struct {
	keys.Store
	gets atomic.Int64
}

func (s *getCounter) Get(ctx context.Context, id keys.ID) (*keys.KeySet, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, id)
}

// TestWarmSearchReadsNoKeyStore: once its keys are cached, a blind-index
// search (IndexTerms, TermsFor) sends nothing to the key store.
func TestWarmSearchReadsNoKeyStore(t *testing.T) {
	ctx := context.Background()
	data, err := local.Generate(local.Options{KeyID: "local:fields-test"})
	require.NoError(t, err)
	kek, err := local.New(local.Config{Data: data})
	require.NoError(t, err)
	store := &getCounter{Store: keys.NewMemoryStore()}
	kr, err := keys.New(keys.Config{KEK: kek, Store: store})
	require.NoError(t, err)
	c := newCodec(t, fields.Config{Keyring: kr})
	template := &tiny{TenantID: "tenant:st-mary", SSN: fields.New("999-12-3456")}
	spec := fields.IndexSpec{Table: "tiny", Column: "ssn_index", Bits: 3, Normalize: "digits", Text: true}
	first, err := c.IndexTerms(ctx, template, "SSNIndex")
	require.NoError(t, err)
	_, err = c.TermsFor(ctx, "tenant:st-mary", spec, "999-12-3456")
	require.NoError(t, err)
	before := store.gets.Load()
	for i := 0; i < 10; i++ {
		terms, err := c.IndexTerms(ctx, template, "SSNIndex")
		require.NoError(t, err)
		require.Len(t, terms, 1)
		assert.True(t, terms[0].Equal(first[0]))
		_, err = c.TermsFor(ctx, "tenant:st-mary", spec, "999-12-3456")
		require.NoError(t, err)
	}
	assert.Equal(t, before, store.gets.Load(), "warm searches make no key store call")
}
