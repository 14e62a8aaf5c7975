package format

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"

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

// goldenStreamInputs returns the golden streams of the envelope package.
func goldenStreamInputs(t testing.TB) [][]byte {
	data, err := os.ReadFile("../../envelope/testdata/golden-stream-v1.json")
	require.NoError(t, err)
	var g struct {
		Vectors []struct {
			Ciphertext string `json:"ciphertext_hex"`
		} `json:"vectors"`
	}
	require.NoError(t, json.Unmarshal(data, &g))
	var out [][]byte
	for _, v := range g.Vectors {
		b, err := hex.DecodeString(v.Ciphertext)
		require.NoError(t, err)
		out = append(out, b)
	}
	require.NotEmpty(t, out)
	return out
}

// reencode rebuilds the header of h, to check that parsing is canonical.
func reencode(t *testing.T, h Header) []byte {
	var (
		b   []byte
		err error
	)
	switch h.Form {
	case FormCompact:
		return AppendCompactHeader(nil, h.Suite, h.KeyVersion)
	case FormStream:
		b, err = AppendStreamHeader(nil, h.Suite, string(h.KEKID), h.Wrapped, h.Commitment, h.SegmentSize, h.Salt)
	default:
		b, err = AppendSelfContainedHeader(nil, h.Suite, string(h.KEKID), h.Wrapped, h.Commitment)
	}
	require.NoError(t, err)
	return b
}

func FuzzParse(f *testing.F) {
	seeds := append(goldenInputs(f), goldenStreamInputs(f)...)
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
		checkReadHeader(t, bin)
		checkParseCompact(t, bin)
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

// checkReadHeader checks that ReadHeader agrees with ParseHeader on in, and
// reads exactly the header's bytes.
func checkReadHeader(t *testing.T, in []byte) {
	r := bytes.NewReader(in)
	h, raw, err := ReadHeader(r)
	want, werr := ParseHeader(in)
	if (err == nil) != (werr == nil) {
		t.Fatalf("ReadHeader: %v, ParseHeader: %v", err, werr)
	}
	if err != nil {
		var fe, wfe *Error
		switch {
		case errors.As(err, &fe) && errors.As(werr, &wfe):
			if fe.Field != wfe.Field {
				t.Fatalf("ReadHeader reports %q, ParseHeader %q", fe.Field, wfe.Field)
			}
		case errors.Is(err, ErrNotEncrypted) && errors.Is(werr, ErrNotEncrypted):
		default:
			t.Fatalf("ReadHeader: %v, ParseHeader: %v", err, werr)
		}
		return
	}
	if h.Size != want.Size || !bytes.Equal(raw, in[:want.Size]) || !bytes.Equal(h.KEKID, want.KEKID) || !bytes.Equal(h.Salt, want.Salt) {
		t.Fatalf("ReadHeader and ParseHeader disagree")
	}
	if consumed := len(in) - r.Len(); consumed != h.Size {
		t.Fatalf("ReadHeader read %d bytes of a %d-byte header", consumed, h.Size)
	}
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

func TestParseStreamGolden(t *testing.T) {
	for _, in := range goldenStreamInputs(t) {
		h, err := Parse(in)
		require.NoError(t, err)
		assert.Equal(t, FormStream, h.Form)
		assert.Equal(t, reencode(t, h), in[:h.Size])
		assert.Equal(t, StreamHeaderSize(len(h.KEKID), len(h.Wrapped)), h.Size)
		checkReadHeader(t, in)
	}
}

func TestParseStreamErrors(t *testing.T) {
	st, err := AppendStreamHeader(nil, AES256GCM, "local:k", []byte{1, 2, 3}, make([]byte, 32), 1024, make([]byte, SaltSize))
	require.NoError(t, err)
	hdrLen := len(st)
	require.Equal(t, StreamHeaderSize(7, 3), hdrLen)
	st = append(st, make([]byte, 28)...)
	segAt := hdrLen - SaltSize - 4
	withSegment := func(n uint32) []byte {
		c := bytes.Clone(st)
		c[segAt], c[segAt+1], c[segAt+2], c[segAt+3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		return c
	}
	mut := func(b []byte, i int, v byte) []byte { c := bytes.Clone(b); c[i] = v; return c }
	cases := map[string]struct {
		in    []byte
		field string
	}{
		"siv stream":          {mut(st, 3, byte(AESSIV)), "suite"},
		"kek id len zero":     {mut(mut(st, 4, 0), 5, 0), "kek id length"},
		"kek id truncated":    {st[:8], "kek id"},
		"wrapped truncated":   {st[:16], "wrapped key"},
		"commitment short":    {st[:20], "key commitment"},
		"segment size short":  {st[:segAt+2], "segment size"},
		"segment size small":  {withSegment(MinSegmentSize - 1), "segment size"},
		"segment size large":  {withSegment(MaxSegmentSize + 1), "segment size"},
		"segment size zero":   {withSegment(0), "segment size"},
		"salt short":          {st[:hdrLen-1], "salt"},
		"first segment short": {st[:len(st)-1], "body"},
	}
	for name, c := range cases {
		_, err := Parse(c.in)
		var fe *Error
		if assert.ErrorAs(t, err, &fe, name) {
			assert.Equal(t, c.field, fe.Field, name)
			assert.False(t, errors.Is(err, ErrUnsupportedVersion), name)
		}
		checkReadHeader(t, c.in)
	}
	for _, n := range []uint32{MinSegmentSize, MaxSegmentSize} {
		h, err := Parse(withSegment(n))
		require.NoError(t, err)
		assert.Equal(t, n, h.SegmentSize)
	}
	h, err := ParseHeader(st[:hdrLen])
	require.NoError(t, err, "a stream header parses without its body")
	assert.Equal(t, hdrLen, h.Size)

	for name, f := range map[string]func() ([]byte, error){
		"segment small": func() ([]byte, error) {
			return AppendStreamHeader(nil, AES256GCM, "k", []byte{1}, make([]byte, 32), MinSegmentSize-1, make([]byte, SaltSize))
		},
		"segment large": func() ([]byte, error) {
			return AppendStreamHeader(nil, AES256GCM, "k", []byte{1}, make([]byte, 32), MaxSegmentSize+1, make([]byte, SaltSize))
		},
		"salt": func() ([]byte, error) {
			return AppendStreamHeader(nil, AES256GCM, "k", []byte{1}, make([]byte, 32), 4096, make([]byte, 16))
		},
		"kek id": func() ([]byte, error) {
			return AppendStreamHeader(nil, AES256GCM, "", []byte{1}, make([]byte, 32), 4096, make([]byte, SaltSize))
		},
	} {
		_, err := f()
		var fe *Error
		assert.ErrorAs(t, err, &fe, name)
	}
}

// TestReadHeader checks that ReadHeader stops at the end of the header,
// reports a stream cut anywhere in its header as Parse does, and passes
// read errors through.
func TestReadHeader(t *testing.T) {
	st, err := AppendStreamHeader(nil, XChaCha20Poly1305, "local:k", bytes.Repeat([]byte{7}, 90), make([]byte, 32), MaxSegmentSize, bytes.Repeat([]byte{9}, SaltSize))
	require.NoError(t, err)
	body := []byte("the body follows")
	r := bytes.NewReader(append(bytes.Clone(st), body...))
	h, raw, err := ReadHeader(r)
	require.NoError(t, err)
	assert.Equal(t, st, raw)
	assert.Equal(t, FormStream, h.Form)
	assert.Equal(t, uint32(MaxSegmentSize), h.SegmentSize)
	rest, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, body, rest, "ReadHeader must not read past the header")

	for n := 0; n < len(st); n++ {
		_, _, err := ReadHeader(bytes.NewReader(st[:n]))
		_, perr := ParseHeader(st[:n])
		if n == 0 {
			assert.ErrorIs(t, err, ErrNotEncrypted)
			continue
		}
		var fe, pfe *Error
		require.ErrorAs(t, err, &fe, "cut at %d", n)
		require.ErrorAs(t, perr, &pfe, "cut at %d", n)
		assert.Equal(t, pfe.Field, fe.Field, "cut at %d", n)
		assert.Equal(t, "truncated", fe.Reason, "cut at %d", n)
	}
	_, _, err = ReadHeader(strings.NewReader("plaintext"))
	assert.ErrorIs(t, err, ErrNotEncrypted)

	// A huge KEK id length is refused before it is read.
	_, _, err = ReadHeader(bytes.NewReader([]byte{Magic, Version1, byte(FormStream), byte(AES256GCM), 0xff, 0xff}))
	var fe *Error
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, "kek id length", fe.Field)

	boom := errors.New("disk on fire")
	_, _, err = ReadHeader(io.MultiReader(bytes.NewReader(st[:10]), iotest.ErrReader(boom)))
	assert.ErrorIs(t, err, boom)
}

// checkParseCompact checks that ParseCompact accepts exactly the compact
// ciphertexts that Parse accepts, with the same suite and key version.
func checkParseCompact(t *testing.T, in []byte) {
	t.Helper()
	suite, version, ok := ParseCompact(in)
	h, err := Parse(in)
	want := err == nil && h.Form == FormCompact
	if ok != want {
		t.Fatalf("ParseCompact says %v, Parse says %v (%v) for %x", ok, want, err, in)
	}
	if ok && (suite != h.Suite || version != h.KeyVersion) {
		t.Fatalf("ParseCompact gives suite %d version %d, Parse %d and %d", suite, version, h.Suite, h.KeyVersion)
	}
}

// TestParseCompactAgreesWithParse runs checkParseCompact over the golden
// inputs, each with every byte of its header flipped and every
// truncation: the fast path never accepts what Parse refuses.
func TestParseCompactAgreesWithParse(t *testing.T) {
	accepted := 0
	for _, in := range append(goldenInputs(t), goldenStreamInputs(t)...) {
		bin := in
		if IsArmored(in) {
			var err error
			bin, err = Dearmor(make([]byte, DecodedLen(len(in))), in)
			require.NoError(t, err)
		}
		if _, _, ok := ParseCompact(bin); ok {
			accepted++
		}
		checkParseCompact(t, bin)
		for i := 0; i < min(len(bin), 12); i++ {
			for _, x := range []byte{0x01, 0x80, 0xFF} {
				m := bytes.Clone(bin)
				m[i] ^= x
				checkParseCompact(t, m)
			}
		}
		for n := 0; n <= min(len(bin), 40); n++ {
			checkParseCompact(t, bin[:n])
		}
	}
	assert.Positive(t, accepted, "some golden inputs are compact")
}
