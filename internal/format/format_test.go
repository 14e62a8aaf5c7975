package format

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// goldenInputs returns the golden ciphertexts of the envelope package, the
// frozen examples of this format.
func goldenInputs(t testing.TB) [][]byte {
	data, err := os.ReadFile("../../envelope/testdata/golden-v1.json")
	require.NoError(t, err)
	var g struct {
		Vectors []struct {
			Encoding   string `json:"encoding"`
			Ciphertext string `json:"ciphertext"`
		} `json:"vectors"`
	}
	require.NoError(t, json.Unmarshal(data, &g))
	var out [][]byte
	for _, v := range g.Vectors {
		if v.Encoding == "text" {
			out = append(out, []byte(v.Ciphertext))
			continue
		}
		b, err := hex.DecodeString(v.Ciphertext)
		require.NoError(t, err)
		out = append(out, b)
	}
	require.NotEmpty(t, out)
	return out
}

// reencode rebuilds the header of h, to check that parsing is canonical.
func reencode(t *testing.T, h Header) []byte {
	if h.Form == FormCompact {
		return AppendCompactHeader(nil, h.Suite, h.KeyVersion)
	}
	b, err := AppendSelfContainedHeader(nil, h.Suite, string(h.KEKID), h.Wrapped, h.Commitment)
	require.NoError(t, err)
	return b
}

func FuzzParse(f *testing.F) {
	seeds := goldenInputs(f)
	for _, s := range seeds {
		f.Add(s)
	}
	require.Positive(f, len(seeds))
	f.Fuzz(func(t *testing.T, in []byte) {
		bin := in
		if IsArmored(in) {
			n := DecodedLen(len(in))
			if n < 0 {
				return
			}
			var err error
			if bin, err = Dearmor(make([]byte, n), in); err != nil {
				var fe *Error
				if !errors.As(err, &fe) {
					t.Fatalf("untyped dearmor error %v", err)
				}
				return
			}
			if !bytes.Equal(AppendArmor(nil, bin), in) {
				t.Fatalf("two armorings decode to the same bytes")
			}
		}
		h, err := Parse(bin)
		if err != nil {
			var fe *Error
			if !errors.Is(err, ErrNotEncrypted) && !errors.As(err, &fe) {
				t.Fatalf("untyped parse error %v", err)
			}
			return
		}
		if h.Size > len(bin) {
			t.Fatalf("header size %d beyond input %d", h.Size, len(bin))
		}
		if !bytes.Equal(reencode(t, h), bin[:h.Size]) {
			t.Fatalf("header is not canonical")
		}
	})
}

func TestParseGolden(t *testing.T) {
	for _, in := range goldenInputs(t) {
		bin := in
		if IsArmored(in) {
			var err error
			bin, err = Dearmor(make([]byte, DecodedLen(len(in))), in)
			require.NoError(t, err)
		}
		h, err := Parse(bin)
		require.NoError(t, err)
		assert.Equal(t, reencode(t, h), bin[:h.Size])
	}
}

func TestParseErrors(t *testing.T) {
	good := AppendCompactHeader(nil, AES256GCM, 7)
	good = append(good, make([]byte, 28)...)
	sc, err := AppendSelfContainedHeader(nil, AES256GCM, "local:k", []byte{1, 2, 3}, make([]byte, 32))
	require.NoError(t, err)
	sc = append(sc, make([]byte, 28)...)
	mut := func(b []byte, i int, v byte) []byte { c := bytes.Clone(b); c[i] = v; return c }
	cases := map[string]struct {
		in    []byte
		field string
		unsup bool
	}{
		"short":              {good[:3], "header", false},
		"version":            {mut(good, 1, 2), "version", true},
		"suite":              {mut(good, 3, 9), "suite", true},
		"form":               {mut(good, 2, 7), "form", true},
		"key version zero":   {append(AppendCompactHeader(nil, AES256GCM, 0), make([]byte, 28)...), "key version", false},
		"compact truncated":  {good[:6], "key version", false},
		"body short":         {good[:8+27], "body", false},
		"siv self-contained": {mut(sc, 3, byte(AESSIV)), "suite", false},
		"kek id len zero":    {mut(mut(sc, 4, 0), 5, 0), "kek id length", false},
		"kek id too long":    {mut(mut(sc, 4, 0xff), 5, 0xff), "kek id length", false},
		"kek id truncated":   {sc[:8], "kek id", false},
		"kek id control":     {mut(sc, 6, '\n'), "kek id", false},
		"wrapped len zero":   {mut(mut(sc, 13, 0), 14, 0), "wrapped key length", false},
		"wrapped truncated":  {sc[:16], "wrapped key", false},
		"commitment short":   {sc[:20], "key commitment", false},
		"sc body short":      {sc[:len(sc)-1], "body", false},
	}
	for name, c := range cases {
		_, err := Parse(c.in)
		var fe *Error
		if assert.ErrorAs(t, err, &fe, name) {
			assert.Equal(t, c.field, fe.Field, name)
			assert.Equal(t, c.unsup, errors.Is(err, ErrUnsupportedVersion), name)
		}
	}
	_, err = Parse(nil)
	assert.ErrorIs(t, err, ErrNotEncrypted)
	_, err = Parse([]byte("plain"))
	assert.ErrorIs(t, err, ErrNotEncrypted)
	_, err = Parse(good)
	assert.NoError(t, err)
	_, err = Parse(sc)
	assert.NoError(t, err)
}

func TestArmorStrict(t *testing.T) {
	bin := []byte{0xF5, 1, 1, 1, 0, 0, 0, 1, 0xAA, 0xFB} // 10 bytes: 4 unused bits
	s := AppendArmor(nil, bin)
	got, err := Dearmor(make([]byte, DecodedLen(len(s))), s)
	require.NoError(t, err)
	assert.Equal(t, bin, got)
	for name, bad := range map[string]string{
		"padding":       string(s) + "=",
		"newline":       string(s[:12]) + "\n" + string(s[12:]),
		"std alphabet":  strings.Replace(string(s), "-", "+", 1) + "+",
		"space":         string(s) + " ",
		"trailing bits": string(s[:len(s)-1]) + "B", // non-zero unused bits
	} {
		n := max(DecodedLen(len(bad)), len(bad))
		_, err := Dearmor(make([]byte, n), []byte(bad))
		var fe *Error
		assert.ErrorAs(t, err, &fe, name)
	}
	_, err = Dearmor(nil, []byte("plain"))
	assert.ErrorIs(t, err, ErrNotEncrypted)
	assert.Equal(t, -1, DecodedLen(len(ArmorPrefix)+5))
}

func TestErrorMessage(t *testing.T) {
	_, err := Parse(append([]byte{Magic, 9}, make([]byte, 40)...))
	assert.Equal(t, "envelope: malformed ciphertext: version at byte 1: version 9", err.Error())
}
