// Package aead constructs the AEAD of each wire suite. Every AEAD it returns
// draws its own nonce: Seal(dst, nil, plaintext, aad) appends
// nonce || ciphertext || tag, and Open takes the same layout with a nil
// nonce. No caller ever chooses a nonce.
//
// AES-256-GCM uses crypto/cipher.NewGCMWithRandomNonce, which is FIPS 140-3
// approved. XChaCha20-Poly1305 (golang.org/x/crypto) and AES-SIV (Tink) are
// not, and New refuses them when the program runs in FIPS 140-3 mode.
package aead

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/fips140"
	"crypto/rand"
	"errors"
	"fmt"

	daead "github.com/tink-crypto/tink-go/v2/daead/subtle"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/phicrypt/phicrypt/internal/format"
)

// ErrNotApproved means the suite is not FIPS 140-3 approved and the program
// runs in FIPS mode (GODEBUG=fips140=on or only).
var ErrNotApproved = errors.New("envelope: suite is not FIPS 140-3 approved and FIPS mode is on")

// ErrUnknownSuite means the suite id is not one this version knows.
var ErrUnknownSuite = errors.New("envelope: unknown suite")

// KeySize returns the key size of suite s, or 0 if s is unknown.
func KeySize(s format.Suite) int {
	switch s {
	case format.AES256GCM, format.XChaCha20Poly1305:
		return 32
	case format.AESSIV:
		return 64
	}
	return 0
}

// Approved reports whether s is FIPS 140-3 approved.
func Approved(s format.Suite) bool { return s == format.AES256GCM }

// New returns the AEAD of suite s under key, which must be KeySize(s) bytes.
func New(s format.Suite, key []byte) (cipher.AEAD, error) {
	if KeySize(s) == 0 {
		return nil, ErrUnknownSuite
	}
	if len(key) != KeySize(s) {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(key), KeySize(s))
	}
	if fips140.Enabled() && !Approved(s) {
		return nil, ErrNotApproved
	}
	switch s {
	case format.AES256GCM:
		return newAESGCM(key)
	case format.XChaCha20Poly1305:
		x, err := chacha20poly1305.NewX(key)
		if err != nil {
			return nil, err
		}
		return randomNonce{x}, nil
	default: // format.AESSIV
		d, err := daead.NewAESSIV(key)
		if err != nil {
			return nil, err
		}
		return siv{d}, nil
	}
}

// newAESGCM returns AES-GCM with random 96-bit nonces for a 128, 192 or
// 256-bit key (the suite uses 256; the tests run every Wycheproof key size
// through this one constructor).
func newAESGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(b)
}

// randomNonce prepends a random nonce to an AEAD with explicit nonces.
type randomNonce struct{ cipher.AEAD }

func (r randomNonce) NonceSize() int { return 0 }
func (r randomNonce) Overhead() int  { return r.AEAD.NonceSize() + r.AEAD.Overhead() }

func (r randomNonce) Seal(dst, nonce, plaintext, aad []byte) []byte {
	if len(nonce) != 0 {
		panic("aead: non-empty nonce passed to a random-nonce AEAD")
	}
	ns := r.AEAD.NonceSize()
	var n [chacha20poly1305.NonceSizeX]byte
	rand.Read(n[:ns]) // never returns an error (crypto/rand)
	dst = append(dst, n[:ns]...)
	return r.AEAD.Seal(dst, n[:ns], plaintext, aad)
}

func (r randomNonce) Open(dst, nonce, ciphertext, aad []byte) ([]byte, error) {
	if len(nonce) != 0 {
		panic("aead: non-empty nonce passed to a random-nonce AEAD")
	}
	ns := r.AEAD.NonceSize()
	if len(ciphertext) < ns+r.AEAD.Overhead() {
		return nil, errOpen
	}
	return r.AEAD.Open(dst, ciphertext[:ns], ciphertext[ns:], aad)
}

var errOpen = errors.New("aead: message authentication failed")

// siv adapts Tink's deterministic AES-SIV to cipher.AEAD with no nonce:
// Seal appends SIV || ciphertext.
type siv struct{ d *daead.AESSIV }

func (s siv) NonceSize() int { return 0 }
func (s siv) Overhead() int  { return 16 } // the SIV

func (s siv) Seal(dst, nonce, plaintext, aad []byte) []byte {
	ct, err := s.d.EncryptDeterministically(plaintext, aad)
	if err != nil {
		// Tink fails only on plaintexts above 2^31 bytes, which callers
		// reject long before (envelope's maximum plaintext size).
		panic("aead: AES-SIV: " + err.Error())
	}
	return append(dst, ct...)
}

func (s siv) Open(dst, nonce, ciphertext, aad []byte) ([]byte, error) {
	pt, err := s.d.DecryptDeterministically(ciphertext, aad)
	if err != nil {
		return nil, errOpen
	}
	return append(dst, pt...), nil
}
