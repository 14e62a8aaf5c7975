package fields_test

import (
	"context"
	"crypto/fips140"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
)

// equalPlain compares the plaintext of two patients.
func equalPlain(t *testing.T, want, got *Patient) {
	t.Helper()
	assert.Equal(t, want.SSN.Get(), got.SSN.Get())
	assert.Equal(t, want.Drivers.Get(), got.Drivers.Get())
	assert.Equal(t, want.Passport.Get(), got.Passport.Get())
	assert.Equal(t, want.Prefix.Get(), got.Prefix.Get())
	assert.Equal(t, want.First.Get(), got.First.Get())
	assert.Equal(t, want.Last.Get(), got.Last.Get())
	assert.Equal(t, want.Maiden.Get(), got.Maiden.Get())
	assert.True(t, want.BirthDate.Get().Equal(got.BirthDate.Get()))
	assert.Equal(t, want.DeathDate.Get() == nil, got.DeathDate.Get() == nil)
	if w := want.DeathDate.Get(); w != nil {
		assert.True(t, w.Equal(*got.DeathDate.Get()))
	}
	assert.Equal(t, want.Address.Get(), got.Address.Get())
	assert.Equal(t, want.Location.Get(), got.Location.Get())
	assert.Equal(t, want.Tags.Get(), got.Tags.Get())
	assert.Equal(t, want.Visits.Get(), got.Visits.Get())
	assert.Equal(t, want.Deceased.Get(), got.Deceased.Get())
	assert.Equal(t, want.ExternalRef.Get(), got.ExternalRef.Get())
	assert.Equal(t, want.Photo.Get(), got.Photo.Get())
	assert.Equal(t, want.Coverage.Get(), got.Coverage.Get())
}

// TestCSVRoundTrip seals all 1,174 Synthea rows (as one batch), stores
// their driver values, scans them back and opens them.
func TestCSVRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	patients := loadCSV(t)
	require.NoError(t, c.Seal(ctx, patients))
	for _, p := range patients {
		r := store(t, p)
		for i, v := range r {
			if s, ok := v.(string); ok && i < 11 {
				assert.True(t, strings.HasPrefix(s, envelope.ArmorPrefix), "column %d is stored armored", i)
			}
		}
		for _, phi := range []string{p.SSN.Get(), p.First.Get(), p.Last.Get(), p.Drivers.Get(), p.Address.Get().Line} {
			if phi == "" {
				continue
			}
			for _, v := range r {
				if s, ok := v.(string); ok {
					assert.NotContains(t, s, phi)
				}
			}
		}
		got := load(t, p.ID, p.TenantID, r)
		require.NoError(t, c.Open(ctx, got))
		equalPlain(t, p, got)
	}
}

func TestBinaryEncoding(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{Binary: true})
	p := loadCSV(t)[0]
	require.NoError(t, c.Seal(ctx, p))
	v, err := p.SSN.Value()
	require.NoError(t, err)
	b, ok := v.([]byte)
	require.True(t, ok, "binary ciphertexts are []byte for bytea columns")
	assert.Equal(t, byte(0xF5), b[0])
	got := load(t, p.ID, p.TenantID, store(t, p))
	require.NoError(t, c.Open(ctx, got))
	equalPlain(t, p, got)
}

// TestSwappedFields moves a ciphertext to another record and to another
// column: both fail to decrypt.
func TestSwappedFields(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	all := loadCSV(t)
	a, b := all[0], all[3] // same tenant
	require.Equal(t, a.TenantID, b.TenantID)
	require.NoError(t, c.Seal(ctx, []*Patient{a, b}))
	ra, rb := store(t, a), store(t, b)
	ra[0], rb[0] = rb[0], ra[0] // swap the SSN columns
	for _, x := range []struct {
		p *Patient
		r row
	}{{a, ra}, {b, rb}} {
		err := c.Open(ctx, load(t, x.p.ID, x.p.TenantID, x.r))
		assert.ErrorIs(t, err, envelope.ErrDecrypt)
		var fe *fields.FieldError
		require.ErrorAs(t, err, &fe)
		assert.Equal(t, "SSN", fe.Field)
	}
	// Another column of the same record.
	ra = store(t, a)
	ra[0], ra[1] = ra[1], ra[0]
	assert.ErrorIs(t, c.Open(ctx, load(t, a.ID, a.TenantID, ra)), envelope.ErrDecrypt)
	// Another tenant (one that has keys).
	other := all[1]
	require.NoError(t, c.Seal(ctx, other))
	require.NotEqual(t, a.TenantID, other.TenantID)
	ra = store(t, a)
	assert.ErrorIs(t, c.Open(ctx, load(t, a.ID, other.TenantID, ra)), envelope.ErrDecrypt)
}

// TestSealIsAllOrNothing: Seal stores a record's ciphertexts only once
// every field of it is sealed, so a field that fails leaves the fields
// before it as they were: none holds a ciphertext of a record that was
// never sealed whole. The ciphertexts, which share one allocation, each
// open in their own field.
func TestSealIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{MaxPlaintextSize: 16})
	r := &pair{ID: "p1", TenantID: "tenant:a", A: fields.New("a0"), B: fields.New("b0")}
	require.NoError(t, c.Seal(ctx, r))

	r.A.Set("a1")
	r.B.Set(strings.Repeat("b", 64))
	err := c.Seal(ctx, r)
	require.ErrorIs(t, err, envelope.ErrTooLarge)
	var fe *fields.FieldError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, "B", fe.Field)
	_, err = r.A.Value()
	assert.ErrorIs(t, err, fields.ErrNotSealed, "A, before the failing field, was not sealed")
	assert.Equal(t, "a1", r.A.Get())

	r.B.Set("b1")
	require.NoError(t, c.Seal(ctx, r))
	got := &pair{ID: r.ID, TenantID: r.TenantID}
	for _, f := range [][2]*fields.String{{&r.A, &got.A}, {&r.B, &got.B}} {
		v, err := f[0].Value()
		require.NoError(t, err)
		require.NoError(t, f[1].Scan(v))
	}
	require.NoError(t, c.Open(ctx, got))
	assert.Equal(t, "a1", got.A.Get())
	assert.Equal(t, "b1", got.B.Get())
}

// TestSealWideRecord: a record of more fields than Seal keeps track of on
// the stack (40), with small values, which share one allocation, and large
// ones (over 1 KiB), which Seal copies out on their own, seals and opens
// in binary and in text, each field with its own value.
func TestSealWideRecord(t *testing.T) {
	const n = 40
	sf := []reflect.StructField{
		{Name: "ID", Type: reflect.TypeFor[string](), Tag: `phi:"id,table=wide"`},
		{Name: "Tenant", Type: reflect.TypeFor[string](), Tag: `phi:"scope"`},
	}
	for i := range n {
		sf = append(sf, reflect.StructField{Name: fmt.Sprintf("F%d", i), Type: reflect.TypeFor[fields.String](), Tag: `phi:"encrypt"`})
	}
	typ := reflect.StructOf(sf)
	newRecord := func() reflect.Value {
		r := reflect.New(typ)
		r.Elem().Field(0).SetString("w1")
		r.Elem().Field(1).SetString("tenant:a")
		return r
	}
	field := func(r reflect.Value, i int) *fields.String {
		return r.Elem().Field(2 + i).Addr().Interface().(*fields.String)
	}
	value := func(i int) string {
		size := i
		if i%7 == 3 {
			size = 1000 + 700*i // from 1,100 bytes up: sealed on their own
		}
		return strings.Repeat(string(rune('a'+i%26)), size)
	}
	ctx := context.Background()
	for _, binary := range []bool{true, false} {
		c := newCodec(t, fields.Config{Binary: binary})
		r := newRecord()
		for i := range n {
			field(r, i).Set(value(i))
		}
		require.NoError(t, c.Seal(ctx, r.Interface()))
		got := newRecord()
		for i := range n {
			v, err := field(r, i).Value()
			require.NoError(t, err)
			require.NoError(t, field(got, i).Scan(v))
		}
		require.NoError(t, c.Open(ctx, got.Interface()))
		for i := range n {
			assert.Equal(t, value(i), field(got, i).Get(), "binary %v, field %d", binary, i)
		}
	}
}

func TestUnsealedRecordHasNoDriverValue(t *testing.T) {
	p := loadCSV(t)[0]
	_, err := p.SSN.Value()
	assert.ErrorIs(t, err, fields.ErrNotSealed)

	c := newCodec(t, fields.Config{})
	require.NoError(t, c.Seal(context.Background(), p))
	_, err = p.SSN.Value()
	assert.NoError(t, err)
	p.SSN.Set("999-00-0000")
	_, err = p.SSN.Value()
	assert.ErrorIs(t, err, fields.ErrNotSealed, "a changed value needs sealing again")

	var never fields.String
	v, err := never.Value()
	assert.NoError(t, err)
	assert.Nil(t, v, "a value never set is NULL")
}

func TestNullAndNil(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	p := loadCSV(t)[0]
	p.Maiden = fields.New[*string](nil)
	p.Photo = fields.Bytes{}
	require.NoError(t, c.Seal(ctx, p))
	v, err := p.Maiden.Value()
	require.NoError(t, err)
	assert.NotNil(t, v, "a nil pointer is encrypted: NULL-ness is hidden")
	v, err = p.Photo.Value()
	require.NoError(t, err)
	assert.Nil(t, v, "a value never set is NULL")
	got := load(t, p.ID, p.TenantID, store(t, p))
	require.NoError(t, c.Open(ctx, got))
	assert.Nil(t, got.Maiden.Get())
	assert.False(t, got.Maiden.IsNull())
	assert.True(t, got.Photo.IsNull())
}

func TestRecordIDAndScopeRequired(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	p := loadCSV(t)[0]
	p.ID = ""
	assert.ErrorIs(t, c.Seal(ctx, p), fields.ErrMissingRecordID)
	p = loadCSV(t)[0]
	p.TenantID = ""
	assert.ErrorIs(t, c.Seal(ctx, p), fields.ErrMissingRecordID)
}

func TestTypeMismatch(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t)
	c := newCodec(t, fields.Config{Keyring: kr})
	type asString struct {
		ID    string        `phi:"id,table=t"`
		Scope string        `phi:"scope"`
		V     fields.String `phi:"encrypt,column=v"`
	}
	type asInt struct {
		ID    string                `phi:"id,table=t"`
		Scope string                `phi:"scope"`
		V     fields.Encrypted[int] `phi:"encrypt,column=v"`
	}
	a := asString{ID: "1", Scope: "s", V: fields.New("42")}
	require.NoError(t, c.Seal(ctx, &a))
	v, err := a.V.Value()
	require.NoError(t, err)
	b := asInt{ID: "1", Scope: "s"}
	require.NoError(t, b.V.Scan(v))
	assert.ErrorIs(t, c.Open(ctx, &b), fields.ErrTypeMismatch, "a value decodes only into its declared type")
}

func TestDeterministic(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	type contact struct {
		ID    string        `phi:"id,table=contacts"`
		Scope string        `phi:"scope"`
		Email fields.String `phi:"encrypt,deterministic"`
		Phone fields.String `phi:"encrypt"`
	}
	a := contact{ID: "a", Scope: "tenant:1", Email: fields.New("x@example.org"), Phone: fields.New("555-0100")}
	b := contact{ID: "b", Scope: "tenant:1", Email: fields.New("x@example.org"), Phone: fields.New("555-0100")}
	err := c.Seal(ctx, &a)
	if fips140Enabled() {
		assert.ErrorIs(t, err, envelope.ErrNotApproved)
		return
	}
	require.NoError(t, err)
	require.NoError(t, c.Seal(ctx, &b))
	ea, _ := a.Email.Value()
	eb, _ := b.Email.Value()
	assert.Equal(t, ea, eb, "equal values, equal ciphertexts, across records")
	pa, _ := a.Phone.Value()
	pb, _ := b.Phone.Value()
	assert.NotEqual(t, pa, pb)
	got := contact{ID: "b", Scope: "tenant:1"}
	require.NoError(t, got.Email.Scan(ea))
	require.NoError(t, got.Phone.Scan(pb))
	require.NoError(t, c.Open(ctx, &got))
	assert.Equal(t, "x@example.org", got.Email.Get())
}

func TestMigrationMode(t *testing.T) {
	ctx := context.Background()
	var reported []fields.Legacy
	var mu sync.Mutex
	c := newCodec(t, fields.Config{OnLegacyPlaintext: func(_ context.Context, l fields.Legacy) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, l)
	}})
	type legacy struct {
		ID     string                      `phi:"id,table=legacy"`
		Scope  string                      `phi:"scope"`
		Name   fields.String               `phi:"encrypt,migrate"`
		Born   fields.Encrypted[time.Time] `phi:"encrypt,migrate"`
		Visits fields.Encrypted[int64]     `phi:"encrypt,migrate"`
		Strict fields.String               `phi:"encrypt"`
	}
	// Legacy plaintext as a database returns it.
	r := legacy{ID: "7", Scope: "tenant:1"}
	require.NoError(t, r.Name.Scan([]byte("Lemuel304 MacGyver246")))
	require.NoError(t, r.Born.Scan(time.Date(1972, 3, 14, 0, 0, 0, 0, time.UTC)))
	require.NoError(t, r.Visits.Scan(int64(12)))
	require.NoError(t, c.Open(ctx, &r))
	assert.Equal(t, "Lemuel304 MacGyver246", r.Name.Get())
	assert.Equal(t, 1972, r.Born.Get().Year())
	assert.Equal(t, int64(12), r.Visits.Get())
	assert.Len(t, reported, 3)
	assert.Equal(t, fields.Legacy{Table: "legacy", Column: "name", RecordID: "7", Field: "Name"}, reported[0])
	assert.False(t, r.Name.Sealed(), "a legacy value must be sealed before it is written back")
	_, err := r.Name.Value()
	assert.ErrorIs(t, err, fields.ErrNotSealed)

	require.NoError(t, c.Seal(ctx, &r))
	v, err := r.Name.Value()
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(v.(string), envelope.ArmorPrefix))

	// Strict mode (the default) refuses plaintext.
	s := legacy{ID: "8", Scope: "tenant:1"}
	require.NoError(t, s.Strict.Scan("999-12-3456"))
	err = c.Open(ctx, &s)
	assert.ErrorIs(t, err, fields.ErrNotEncrypted)
	assert.NotContains(t, err.Error(), "999-12-3456")

	// A legacy value scanned but not opened never goes back out.
	u := legacy{ID: "9", Scope: "tenant:1"}
	require.NoError(t, u.Name.Scan("plain"))
	_, err = u.Name.Value()
	assert.ErrorIs(t, err, fields.ErrNotSealed)
}

// TestLegacyDriverValues: migration mode stores a driver's number in a
// field of another type only when it fits exactly, and turns it into text
// in decimal; anything else fails with ErrTypeMismatch, so migrate never
// writes back a corrupted value.
func TestLegacyDriverValues(t *testing.T) {
	type legacy struct {
		ID     string                      `phi:"id,table=legacy_values"`
		Scope  string                      `phi:"scope"`
		MRN    fields.String               `phi:"encrypt,migrate"`
		Small  fields.Encrypted[int8]      `phi:"encrypt,migrate"`
		Count  fields.Encrypted[int]       `phi:"encrypt,migrate"`
		Unsig  fields.Encrypted[uint16]    `phi:"encrypt,migrate"`
		Ratio  fields.Encrypted[float32]   `phi:"encrypt,migrate"`
		Weight fields.Encrypted[float64]   `phi:"encrypt,migrate"`
		Ptr    fields.Encrypted[*int16]    `phi:"encrypt,migrate"`
		Born   fields.Encrypted[time.Time] `phi:"encrypt,migrate"`
	}
	c := newCodec(t, fields.Config{})
	open := func(set func(r *legacy) error) (*legacy, error) {
		r := &legacy{ID: "1", Scope: "tenant:1"}
		require.NoError(t, set(r))
		return r, c.Open(t.Context(), r)
	}
	good := map[string]struct {
		set   func(r *legacy) error
		check func(r *legacy)
	}{
		"int64 into string": {func(r *legacy) error { return r.MRN.Scan(int64(12345)) },
			func(r *legacy) { assert.Equal(t, "12345", r.MRN.Get()) }},
		"float64 into string": {func(r *legacy) error { return r.MRN.Scan(3.5) },
			func(r *legacy) { assert.Equal(t, "3.5", r.MRN.Get()) }},
		"bool into string": {func(r *legacy) error { return r.MRN.Scan(true) },
			func(r *legacy) { assert.Equal(t, "true", r.MRN.Get()) }},
		"int64 into int8": {func(r *legacy) error { return r.Small.Scan(int64(-128)) },
			func(r *legacy) { assert.Equal(t, int8(-128), r.Small.Get()) }},
		"whole float64 into int": {func(r *legacy) error { return r.Count.Scan(4.0) },
			func(r *legacy) { assert.Equal(t, 4, r.Count.Get()) }},
		"large whole float64 into int": {func(r *legacy) error { return r.Count.Scan(1e15) },
			func(r *legacy) { assert.Equal(t, 1_000_000_000_000_000, r.Count.Get()) }},
		"int64 into uint16": {func(r *legacy) error { return r.Unsig.Scan(int64(65535)) },
			func(r *legacy) { assert.Equal(t, uint16(65535), r.Unsig.Get()) }},
		"float64 into float32": {func(r *legacy) error { return r.Ratio.Scan(0.5) },
			func(r *legacy) { assert.Equal(t, float32(0.5), r.Ratio.Get()) }},
		"int64 into float64": {func(r *legacy) error { return r.Weight.Scan(int64(1 << 53)) },
			func(r *legacy) { assert.Equal(t, float64(1<<53), r.Weight.Get()) }},
		"int64 into *int16": {func(r *legacy) error { return r.Ptr.Scan(int64(7)) },
			func(r *legacy) { assert.Equal(t, int16(7), *r.Ptr.Get()) }},
		"time into time": {func(r *legacy) error { return r.Born.Scan(time.Date(1972, 3, 14, 0, 0, 0, 0, time.UTC)) },
			func(r *legacy) { assert.Equal(t, 1972, r.Born.Get().Year()) }},
	}
	for name, tc := range good {
		r, err := open(tc.set)
		require.NoError(t, err, name)
		tc.check(r)
	}
	bad := map[string]func(r *legacy) error{
		"int64 over int8":        func(r *legacy) error { return r.Small.Scan(int64(300)) },
		"fraction into int":      func(r *legacy) error { return r.Count.Scan(3.9) },
		"infinity into int":      func(r *legacy) error { return r.Count.Scan(math.Inf(1)) },
		"negative into uint16":   func(r *legacy) error { return r.Unsig.Scan(int64(-1)) },
		"int64 over uint16":      func(r *legacy) error { return r.Unsig.Scan(int64(70000)) },
		"float64 over float32":   func(r *legacy) error { return r.Ratio.Scan(1e300) },
		"inexact int64 in float": func(r *legacy) error { return r.Weight.Scan(int64(1<<53 + 1)) },
		"int64 over *int16":      func(r *legacy) error { return r.Ptr.Scan(int64(1 << 20)) },
		"bool into int":          func(r *legacy) error { return r.Count.Scan(true) },
		"time into int":          func(r *legacy) error { return r.Count.Scan(time.Now()) },
		"int64 into time.Time":   func(r *legacy) error { return r.Born.Scan(int64(19720314)) },
	}
	for name, set := range bad {
		_, err := open(set)
		assert.ErrorIs(t, err, fields.ErrTypeMismatch, name)
	}
}

func TestJSONPolicy(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	p := loadCSV(t)[0]
	out, err := json.Marshal(p)
	require.NoError(t, err)
	assert.Contains(t, string(out), `"SSN":"[redacted]"`, "unsealed: redacted")
	require.NoError(t, c.Seal(ctx, p))
	out, err = json.Marshal(p)
	require.NoError(t, err)
	assert.Contains(t, string(out), `"SSN":"[redacted]"`, "sealed: redacted too, no ciphertext in logs")
	assert.Contains(t, string(out), `"SSNIndex":"[redacted]"`)
	assert.Contains(t, string(out), `"DeathDate":null`, "NULL stays null")
	assert.NotContains(t, string(out), p.SSN.Get())
	assert.NotContains(t, string(out), "phicrypt:")

	var back Patient
	assert.ErrorIs(t, json.Unmarshal(out, &back), fields.ErrJSON, "redacted values are not read back")
	var plain Patient
	assert.ErrorIs(t, json.Unmarshal([]byte(`{"ID":"x","TenantID":"t","SSN":"999-12-3456"}`), &plain), fields.ErrJSON, "JSON never smuggles plaintext in")
	require.NoError(t, json.Unmarshal([]byte(`{"ID":"x","TenantID":"t","SSN":null}`), &plain))
	assert.True(t, plain.SSN.IsNull())
}

func TestScanRejectsOtherTypesIntoIndex(t *testing.T) {
	var x fields.BlindIndex
	assert.Error(t, x.Scan(42))
	assert.Error(t, x.Scan("not base64!"))
}

func TestConcurrentSealOpen(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	patients := loadCSV(t)[:64]
	var wg sync.WaitGroup
	for _, p := range patients {
		wg.Add(1)
		go func(p *Patient) {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				if !assert.NoError(t, c.Seal(ctx, p)) {
					return
				}
				r := store(t, p)
				got := load(t, p.ID, p.TenantID, r)
				if !assert.NoError(t, c.Open(ctx, got)) {
					return
				}
				assert.Equal(t, p.SSN.Get(), got.SSN.Get())
			}
		}(p)
	}
	wg.Wait()
}

func TestSealIsIdempotentOnValues(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	p := loadCSV(t)[0]
	require.NoError(t, c.Seal(ctx, p))
	require.NoError(t, c.Seal(ctx, p), "sealing a sealed record re-encrypts it")
	got := load(t, p.ID, p.TenantID, store(t, p))
	require.NoError(t, c.Seal(ctx, got), "fields read and not opened keep their ciphertext")
	require.NoError(t, c.Open(ctx, got))
	equalPlain(t, p, got)
}

func TestUnsupportedValues(t *testing.T) {
	c := newCodec(t, fields.Config{})
	for _, v := range []any{nil, 42, "x", &[]int{1}, []string{"a"}} {
		assert.ErrorIs(t, c.Seal(context.Background(), v), fields.ErrUnsupported, "%T", v)
	}
}

func fips140Enabled() bool { return fips140.Enabled() }

var _ driver.Valuer = fields.String{}

// TestBytesAreCopied: fields.Bytes copies the caller's slice on Set and
// hands out a copy on Get, so that a stored plaintext never changes and
// copies of a value are independent.
func TestBytesAreCopied(t *testing.T) {
	buf := []byte("PHOTO-OF-PATIENT-A")
	a := fields.New(buf)
	cp := a
	copy(buf, "PHOTO-OF-PATIENT-B") // the caller reuses its buffer
	assert.Equal(t, "PHOTO-OF-PATIENT-A", string(a.Get()))
	assert.Equal(t, "PHOTO-OF-PATIENT-A", string(cp.Get()))

	got := a.Get()
	copy(got, "XXXXX")
	assert.Equal(t, "PHOTO-OF-PATIENT-A", string(a.Get()), "Get hands out a copy")
	assert.Equal(t, "PHOTO-OF-PATIENT-A", string(cp.Get()))

	var e fields.Bytes
	e.Set([]byte{})
	assert.NotNil(t, e.Get(), "an empty slice stays empty, not nil")
	e.Set(nil)
	assert.Nil(t, e.Get())
}
