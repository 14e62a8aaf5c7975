package aead

import (
	"bytes"
	"crypto/fips140"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/format"
	"github.com/phicrypt/phicrypt/internal/wycheproof"
)

// counts tallies what a Wycheproof file exercised; tests compare it with
// exact expectations, so a file that silently runs no vectors fails.
type counts struct{ valid, invalid, skipped int }

func TestWycheproofAESGCM(t *testing.T) {
	_, groups := wycheproof.Load(t, "aes_gcm_test.json")
	var all, suite counts
	for _, g := range groups {
		if g.IVSize != 96 || g.TagSize != 128 {
			// Other nonce and tag sizes cannot be expressed by a
			// random-nonce AEAD: not applicable.
			all.skipped += len(g.Tests)
			continue
		}
		for _, tc := range g.Tests {
			a, err := newAESGCM(tc.Key)
			require.NoError(t, err, "tc %d", tc.TcID)
			checkOpen(t, a, tc, &all)
			if g.KeySize == 256 {
				s, err := New(format.AES256GCM, tc.Key)
				require.NoError(t, err)
				checkOpen(t, s, tc, &suite)
			}
		}
	}
	assert.Equal(t, counts{valid: 116, invalid: 81, skipped: 119}, all)
	assert.Equal(t, counts{valid: 39, invalid: 27}, suite)
}

func TestWycheproofXChaCha20Poly1305(t *testing.T) {
	_, groups := wycheproof.Load(t, "xchacha20_poly1305_test.json")
	if fips140.Enabled() {
		_, err := New(format.XChaCha20Poly1305, make([]byte, 32))
		require.ErrorIs(t, err, ErrNotApproved)
		t.Skip("XChaCha20-Poly1305 is refused in FIPS mode (checked)")
	}
	var c counts
	for _, g := range groups {
		if g.IVSize != 192 || g.TagSize != 128 || g.KeySize != 256 {
			c.skipped += len(g.Tests)
			continue
		}
		for _, tc := range g.Tests {
			a, err := New(format.XChaCha20Poly1305, tc.Key)
			require.NoError(t, err)
			checkOpen(t, a, tc, &c)
		}
	}
	assert.Equal(t, counts{valid: 246, invalid: 60, skipped: 9}, c)
}

// checkOpen opens nonce || ct || tag and checks the result, then checks that
// Seal round-trips valid vectors.
func checkOpen(t *testing.T, a interface {
	Open(dst, nonce, ciphertext, aad []byte) ([]byte, error)
	Seal(dst, nonce, plaintext, aad []byte) []byte
	Overhead() int
}, tc wycheproof.Test, c *counts) {
	t.Helper()
	in := append(append(append([]byte{}, tc.IV...), tc.CT...), tc.Tag...)
	got, err := a.Open(nil, nil, in, tc.AAD)
	switch tc.Result {
	case "valid":
		c.valid++
		if assert.NoError(t, err, "tc %d %s", tc.TcID, tc.Comment) {
			assert.True(t, bytes.Equal(tc.Msg, got), "tc %d", tc.TcID)
		}
		sealed := a.Seal(nil, nil, tc.Msg, tc.AAD)
		assert.Len(t, sealed, len(tc.Msg)+a.Overhead())
		back, err := a.Open(nil, nil, sealed, tc.AAD)
		assert.NoError(t, err)
		assert.True(t, bytes.Equal(tc.Msg, back), "tc %d round trip", tc.TcID)
	case "invalid":
		c.invalid++
		assert.Error(t, err, "tc %d %s", tc.TcID, tc.Comment)
		assert.Nil(t, got)
	default:
		t.Fatalf("tc %d: unexpected result %q", tc.TcID, tc.Result)
	}
}

func TestWycheproofAESSIV(t *testing.T) {
	_, groups := wycheproof.Load(t, "aes_siv_cmac_test.json")
	if fips140.Enabled() {
		_, err := New(format.AESSIV, make([]byte, 64))
		require.ErrorIs(t, err, ErrNotApproved)
		t.Skip("AES-SIV is refused in FIPS mode (checked)")
	}
	var c counts
	for _, g := range groups {
		if g.KeySize != 512 {
			c.skipped += len(g.Tests)
			continue
		}
		for _, tc := range g.Tests {
			a, err := New(format.AESSIV, tc.Key)
			require.NoError(t, err)
			got, err := a.Open(nil, nil, tc.CT, tc.AAD)
			switch tc.Result {
			case "valid":
				c.valid++
				require.NoError(t, err, "tc %d", tc.TcID)
				assert.True(t, bytes.Equal(tc.Msg, got), "tc %d", tc.TcID)
				// Deterministic: Seal must reproduce the vector exactly.
				assert.Equal(t, []byte(tc.CT), a.Seal(nil, nil, tc.Msg, tc.AAD), "tc %d", tc.TcID)
			case "invalid":
				c.invalid++
				assert.Error(t, err, "tc %d %s", tc.TcID, tc.Comment)
			default:
				t.Fatalf("tc %d: unexpected result %q", tc.TcID, tc.Result)
			}
		}
	}
	assert.Equal(t, counts{valid: 39, invalid: 108, skipped: 295}, c)
}

func TestNewRejects(t *testing.T) {
	_, err := New(format.Suite(0x7f), make([]byte, 32))
	assert.ErrorIs(t, err, ErrUnknownSuite)
	for _, s := range []format.Suite{format.AES256GCM, format.XChaCha20Poly1305, format.AESSIV} {
		_, err := New(s, make([]byte, KeySize(s)-1))
		assert.Error(t, err, "suite %d with a short key", s)
	}
}

func TestRandomNonceAEAD(t *testing.T) {
	if fips140.Enabled() {
		t.Skip("XChaCha20-Poly1305 is refused in FIPS mode")
	}
	a, err := New(format.XChaCha20Poly1305, make([]byte, 32))
	require.NoError(t, err)
	assert.Equal(t, 0, a.NonceSize())
	x := a.Seal(nil, nil, []byte("hello"), []byte("aad"))
	y := a.Seal(nil, nil, []byte("hello"), []byte("aad"))
	assert.NotEqual(t, x, y, "nonces must be random")
	assert.Len(t, x, 5+a.Overhead())
	_, err = a.Open(nil, nil, x[:a.Overhead()-1], nil)
	assert.Error(t, err)
	assert.Panics(t, func() { a.Seal(nil, make([]byte, 24), nil, nil) }, "a caller's nonce is refused")
}
