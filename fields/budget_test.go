package fields_test

import (
	"context"
	"crypto/fips140"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

// mixed has random and deterministic fields and a NULL one.
type mixed struct {
	ID     string        `phi:"id,table=mixed"`
	Tenant string        `phi:"scope"`
	A, B   fields.String `phi:"encrypt"`
	C      fields.String `phi:"encrypt,deterministic"`
	D      fields.String `phi:"encrypt"`
}

// TestSealCountsEveryValue: Seal takes a record's data key once, but
// counts each value it encrypts against the key's message budget: with a
// budget of 6 messages, the second record of three random values spends
// it and the third is sealed under a new version. Deterministic values do
// not touch the random key's budget.
func TestSealCountsEveryValue(t *testing.T) {
	skipInFIPS(t)
	ctx := context.Background()
	data, err := local.Generate(local.Options{KeyID: "local:budget"})
	require.NoError(t, err)
	kek, err := local.New(local.Config{Data: data})
	require.NoError(t, err)
	kr, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore(), MaxMessages: 6, ReserveBlock: 3})
	require.NoError(t, err)
	c := newCodec(t, fields.Config{Keyring: kr})
	version := func(e fields.String) uint32 {
		v, err := e.Value()
		require.NoError(t, err)
		info, err := envelope.Inspect([]byte(v.(string)))
		require.NoError(t, err)
		return info.KeyVersion
	}
	var got [][3]uint32
	for _, id := range []string{"1", "2", "3"} {
		r := &mixed{ID: id, Tenant: "tenant:b", A: fields.New("a"), B: fields.New("b"), C: fields.New("c"), D: fields.New("d")}
		require.NoError(t, c.Seal(ctx, r))
		got = append(got, [3]uint32{version(r.A), version(r.B), version(r.D)})
		back := &mixed{ID: id, Tenant: "tenant:b"}
		for _, f := range []struct{ from, to *fields.String }{{&r.A, &back.A}, {&r.B, &back.B}, {&r.C, &back.C}, {&r.D, &back.D}} {
			v, _ := f.from.Value()
			require.NoError(t, f.to.Scan(v))
		}
		require.NoError(t, c.Open(ctx, back))
		assert.Equal(t, []string{"a", "b", "c", "d"}, []string{back.A.Get(), back.B.Get(), back.C.Get(), back.D.Get()})
	}
	assert.Equal(t, [][3]uint32{{1, 1, 1}, {1, 1, 1}, {2, 2, 2}}, got)
}

// useCounter counts the key uses audited.
type useCounter struct {
	mu   sync.Mutex
	uses map[string]int
}

func (u *useCounter) Audit(_ context.Context, e keys.Event) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if e.Op == keys.OpUse {
		u.uses[e.Use]++
	}
	return nil
}

// TestAuditUsesPerValue: with keys.Config.AuditUses, Seal and Open audit
// one use per value, though they look keys up once per record.
func TestAuditUsesPerValue(t *testing.T) {
	skipInFIPS(t)
	ctx := context.Background()
	data, err := local.Generate(local.Options{KeyID: "local:uses"})
	require.NoError(t, err)
	kek, err := local.New(local.Config{Data: data})
	require.NoError(t, err)
	uses := &useCounter{uses: map[string]int{}}
	kr, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore(), Auditor: uses, AuditUses: true})
	require.NoError(t, err)
	c := newCodec(t, fields.Config{Keyring: kr})
	r := &mixed{ID: "1", Tenant: "tenant:u", A: fields.New("a"), B: fields.New("b"), C: fields.New("c"), D: fields.New("d")}
	require.NoError(t, c.Seal(ctx, r))
	assert.Equal(t, 4, uses.uses["encrypt"])
	back := &mixed{ID: "1", Tenant: "tenant:u"}
	for _, f := range []struct{ from, to *fields.String }{{&r.A, &back.A}, {&r.B, &back.B}, {&r.C, &back.C}, {&r.D, &back.D}} {
		v, _ := f.from.Value()
		require.NoError(t, f.to.Scan(v))
	}
	require.NoError(t, c.Open(ctx, back))
	assert.Equal(t, 4, uses.uses["decrypt"])
}

// badTags has an encrypted field without a phi tag.
type badTags struct {
	ID     string `phi:"id,table=bad"`
	Tenant string `phi:"scope"`
	SSN    fields.String
}

// TestCodecAlternatesTypes: a codec that remembers the last record type's
// plan uses each type's own plan when types alternate, and a type with
// bad tags fails whatever came before.
func TestCodecAlternatesTypes(t *testing.T) {
	skipInFIPS(t)
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	for range 2 {
		m := &mixed{ID: "1", Tenant: "tenant:x", A: fields.New("a"), B: fields.New("b"), C: fields.New("c"), D: fields.New("d")}
		require.NoError(t, c.Seal(ctx, m))
		assert.True(t, m.A.Sealed())
		ty := &tiny{ID: "2", TenantID: "tenant:x", SSN: fields.New("999-12-3456")}
		require.NoError(t, c.Seal(ctx, ty))
		assert.True(t, ty.SSN.Sealed())
		assert.False(t, ty.SSNIndex.IsNull(), "tiny's plan, with its index")
		err := c.Seal(ctx, &badTags{ID: "3", Tenant: "tenant:x", SSN: fields.New("x")})
		assert.ErrorIs(t, err, fields.ErrInvalidTag)
	}
}

// skipInFIPS skips a test whose records hold a deterministic (AES-SIV)
// field, which FIPS 140-3 mode refuses (as TestSuites checks).
func skipInFIPS(t *testing.T) {
	t.Helper()
	if fips140.Enabled() {
		t.Skip("the record has a deterministic (AES-SIV) field, refused in FIPS 140-3 mode")
	}
}
