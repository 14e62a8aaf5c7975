package fields_test

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/davecgh/go-spew/spew"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
)

// appRecord is an application type that keeps encrypted values, blind
// indexes and records in unexported fields, where fmt cannot call their
// Format or String methods and prints their raw fields instead.
type appRecord struct {
	note    string
	ssn     fields.String
	photo   fields.Bytes
	idx     fields.BlindIndex
	rec     Patient
	recp    *Patient
	records []*Patient
}

// fakeT is a testify TestingT that keeps the failure messages.
type fakeT struct{ msgs []string }

func (f *fakeT) Errorf(format string, args ...any) {
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}

// spacedHex is b as go-spew's hex dump writes it: "0a 1b 2c".
func spacedHex(b []byte) string {
	var parts []string
	for _, c := range b {
		parts = append(parts, hex.EncodeToString([]byte{c}))
	}
	return strings.Join(parts, " ")
}

// byteForms returns the ways a printer may show bytes b: hex, go-spew's
// spaced hex of a window, fmt's decimal list of a window, and the text of
// an armored ciphertext's window (go-spew's ASCII column).
func byteForms(b []byte) []string {
	out := []string{hex.EncodeToString(b)}
	w := b
	if len(b) >= 24 {
		w = b[16:24] // past the header: random bytes
		out = append(out, string(b[16:32]))
	}
	dec := strings.Trim(fmt.Sprint(w), "[]")
	return append(out, spacedHex(w), dec, hex.EncodeToString(w))
}

// TestLeakCanaryReflection prints records where fmt and go-spew reach raw
// struct fields: in slices and maps of pointers (fmt's bad-verb path prints
// raw fields), in unexported fields of application types, through go-spew
// with and without methods, through a failing testify assert.Equal, and
// through slog's text and JSON handlers. Neither plaintext, nor a
// ciphertext's bytes, nor an index value may show, whatever the record's
// state: unsealed, sealed (text and binary), scanned, opened.
func TestLeakCanaryReflection(t *testing.T) {
	ctx := context.Background()
	const canary = "999-77-CANARY"
	const lastName = "CanaryLastName"
	photo := []byte("CANARY-PHOTO-BYTES")
	secrets := []string{canary, lastName, string(photo), hex.EncodeToString(photo), spacedHex(photo[:8])}

	var all []*Patient
	for _, binary := range []bool{false, true} {
		c := newCodec(t, fields.Config{Binary: binary})
		fresh := func() *Patient {
			p := loadCSV(t)[0]
			p.SSN = fields.New(canary)
			p.Last = fields.New(lastName)
			p.Photo = fields.New(photo)
			return p
		}
		unsealed := fresh()
		sealed := fresh()
		require.NoError(t, c.Seal(ctx, sealed))
		for _, v := range []any{sealed.SSN, sealed.Last, sealed.Photo, sealed.SSNIndex, sealed.NameDOB} {
			dv, err := v.(driver.Valuer).Value()
			if err != nil {
				continue
			}
			var b []byte
			switch x := dv.(type) {
			case string:
				b = []byte(x)
			case []byte:
				b = x
			}
			require.NotEmpty(t, b)
			secrets = append(secrets, byteForms(b)...)
		}
		scanned := load(t, sealed.ID, sealed.TenantID, store(t, sealed))
		opened := load(t, sealed.ID, sealed.TenantID, store(t, sealed))
		require.NoError(t, c.Open(ctx, opened))
		require.Equal(t, canary, opened.SSN.Get())
		all = append(all, unsealed, sealed, scanned, opened)
	}
	// A value scanned from a plaintext column (legacy plaintext).
	legacy := &Patient{ID: "x", TenantID: "t"}
	require.NoError(t, legacy.SSN.Scan(canary))
	require.NoError(t, legacy.Last.Scan([]byte(lastName)))
	all = append(all, legacy)

	byID := map[string]*Patient{}
	var values []Patient
	for i, p := range all {
		byID[fmt.Sprint(i)] = p
		values = append(values, *p)
	}
	app := &appRecord{note: "n", ssn: all[1].SSN, photo: all[1].Photo, idx: all[1].SSNIndex, rec: *all[3], recp: all[5], records: all}
	objects := []any{all, byID, values, app, *app, all[1], *all[3], legacy}

	spewConfigs := map[string]*spew.ConfigState{
		"spew default": spew.NewDefaultConfig(),
		"spew as testify uses it": {Indent: " ", DisablePointerAddresses: true, DisableCapacities: true,
			SortKeys: true, DisableMethods: true, MaxDepth: 10},
		"spew unlimited, no methods": {DisableMethods: true},
	}
	noTime := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	for i, obj := range objects {
		out := map[string]string{}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			out["fmt "+verb] = fmt.Sprintf(verb, obj)
		}
		for name, cfg := range spewConfigs {
			out[name+" Sdump"] = cfg.Sdump(obj)
			out[name+" Sprintf"] = cfg.Sprintf("%v %+v %#v", obj, obj, obj)
		}
		out["spew.Sdump"] = spew.Sdump(obj)
		var text, js bytes.Buffer
		slog.New(slog.NewTextHandler(&text, noTime)).Info("m", "v", obj)
		slog.New(slog.NewJSONHandler(&js, noTime)).Info("m", "v", obj)
		out["slog text"], out["slog JSON"] = text.String(), js.String()
		for name, s := range out {
			for _, secret := range secrets {
				assert.NotContains(t, s, secret, "object %d (%T) through %s", i, obj, name)
			}
		}
	}

	// A failing assert.Equal prints both records, and a diff of them made
	// with go-spew, methods disabled.
	for i := range all {
		for j := range all {
			if i == j {
				continue
			}
			ft := &fakeT{}
			a, b := *all[i], *all[j]
			a.ID = "different"
			assert.Equal(ft, a, b)
			assert.Equal(ft, &a, &b)
			assert.Equal(ft, []*Patient{&a}, []*Patient{&b})
			assert.Equal(ft, appRecord{rec: a}, appRecord{rec: b})
			require.NotEmpty(t, ft.msgs, "the records differ")
			for _, m := range ft.msgs {
				for _, secret := range secrets {
					assert.NotContains(t, m, secret, "assert.Equal of records %d and %d", i, j)
				}
			}
		}
	}
}

// TestValueSemantics checks what holding values behind pointers must not
// change: copies are independent, zero values are NULL, nil and empty
// byte slices stay apart, and (documented) reflect.DeepEqual compares by
// identity.
func TestValueSemantics(t *testing.T) {
	var zero fields.String
	assert.True(t, zero.IsNull())
	assert.True(t, zero.Sealed())
	assert.False(t, zero.Opened())
	assert.Equal(t, "", zero.Get())
	v, err := zero.Value()
	assert.NoError(t, err)
	assert.Nil(t, v)

	a := fields.New("first")
	b := a
	b.Set("second")
	assert.Equal(t, "first", a.Get(), "a copy is independent")
	assert.Equal(t, "second", b.Get())
	b.Clear()
	assert.Equal(t, "first", a.Get())
	assert.True(t, b.IsNull())

	type big struct{ A, B string }
	x := fields.New(big{A: "a"})
	y := x
	y.Set(big{A: "b"})
	assert.Equal(t, "a", x.Get().A)

	assert.Nil(t, fields.New([]byte(nil)).Get())
	assert.NotNil(t, fields.New([]byte{}).Get())
	assert.Equal(t, []byte("xy"), fields.New([]byte("xy")).Get())

	c := a
	assert.Equal(t, a, c, "a copy equals its original")
	s1 := fields.New(strings.Repeat("x", 3))
	s2 := fields.New(strings.Repeat("x", 3))
	assert.NotEqual(t, s1, s2, "DeepEqual compares by identity, not plaintext (documented)")
	assert.Equal(t, s1.Get(), s2.Get())

	var idx fields.BlindIndex
	require.NoError(t, idx.Scan([]byte(nil)))
	assert.True(t, idx.IsNull())
	require.NoError(t, idx.Scan([]byte{1, 2}))
	other := idx
	require.NoError(t, other.Scan([]byte{1, 3}))
	assert.False(t, idx.Equal(other))
	raw, err := idx.Value()
	require.NoError(t, err)
	assert.Equal(t, []byte{1, 2}, raw)
}
