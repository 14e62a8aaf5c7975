package envelope

import (
	"crypto/cipher"
	"fmt"
	"log/slog"

	"github.com/phicrypt/phicrypt/internal/aead"
	"github.com/phicrypt/phicrypt/internal/format"
	"github.com/phicrypt/phicrypt/internal/kdf"
)

// Suite is an AEAD algorithm. Its values are wire constants.
type Suite uint8

// Suites.
const (
	// AES256GCM is AES-256-GCM with random 96-bit nonces, from the standard
	// library; FIPS 140-3 approved. The default. A data key must not
	// encrypt more than 2^32 values (NIST SP 800-38D, section 8.3).
	AES256GCM = Suite(format.AES256GCM)
	// XChaCha20Poly1305 uses random 192-bit nonces, so a data key may
	// encrypt practically unlimited values. Not FIPS approved: refused in
	// FIPS 140-3 mode.
	XChaCha20Poly1305 = Suite(format.XChaCha20Poly1305)
	// AESSIV is deterministic AES-SIV (RFC 5297, through Tink's daead): the
	// same plaintext under the same key and Binding always gives the same
	// ciphertext, which allows equality lookups and unique constraints but
	// reveals which values are equal. Compact form only. Not FIPS
	// approved: refused in FIPS 140-3 mode.
	AESSIV = Suite(format.AESSIV)
)

// String returns the suite's name.
func (s Suite) String() string {
	switch s {
	case AES256GCM:
		return "AES-256-GCM"
	case XChaCha20Poly1305:
		return "XChaCha20-Poly1305"
	case AESSIV:
		return "AES-SIV"
	}
	return fmt.Sprintf("Suite(%d)", uint8(s))
}

// DEKSize is the size of every data key: 256 bits.
const DEKSize = 32

// A DEK is a data key ready to encrypt values of the compact form. It holds
// the AEAD state derived from the key with HKDF-SHA-256, never the key
// bytes, and never reveals key material: its String, GoString, Format,
// LogValue and MarshalJSON methods print only its suite and version.
//
// A DEK is safe for concurrent use. Keyrings create DEKs with NewDEK after
// unwrapping a key from their store. Its methods have value receivers so
// that a copied DEK is redacted too.
type DEK struct {
	suite   Suite
	version uint32
	aead    cipher.AEAD
}

// NewDEK returns the data key of the given suite and version for key, which
// must be DEKSize bytes. The version must not be zero. NewDEK does not keep
// key: the caller should clear it once NewDEK returns.
func NewDEK(suite Suite, version uint32, key []byte) (*DEK, error) {
	if version == 0 {
		return nil, fmt.Errorf("envelope: data key version must not be zero")
	}
	a, err := deriveAEAD(suite, key)
	if err != nil {
		return nil, err
	}
	return &DEK{suite: suite, version: version, aead: a}, nil
}

// deriveAEAD derives the AEAD key of suite from a data key.
func deriveAEAD(suite Suite, key []byte) (cipher.AEAD, error) {
	if len(key) != DEKSize {
		return nil, fmt.Errorf("envelope: data key is %d bytes, want %d", len(key), DEKSize)
	}
	n := aead.KeySize(format.Suite(suite))
	if n == 0 {
		return nil, fmt.Errorf("%w: %v", aead.ErrUnknownSuite, suite)
	}
	sub, err := kdf.Key(key, kdf.LabelAEAD+string([]byte{byte(suite)}), n)
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	defer clear(sub)
	a, err := aead.New(format.Suite(suite), sub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", err, suite)
	}
	return a, nil
}

// Suite returns the DEK's suite.
func (d DEK) Suite() Suite { return d.suite }

// Version returns the DEK's version.
func (d DEK) Version() uint32 { return d.version }

// String returns the suite and version.
func (d DEK) String() string {
	return fmt.Sprintf("envelope.DEK{Suite: %v, Version: %d}", d.suite, d.version)
}

// GoString is String.
func (d DEK) GoString() string { return d.String() }

// Format prints String for every verb, so no verb reaches the key state.
func (d DEK) Format(f fmt.State, verb rune) { fmt.Fprint(f, d.String()) }

// LogValue logs the suite and version.
func (d DEK) LogValue() slog.Value {
	return slog.GroupValue(slog.String("suite", d.suite.String()), slog.Uint64("version", uint64(d.version)))
}

// MarshalJSON encodes the suite and version.
func (d DEK) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, `{"suite":%q,"version":%d}`, d.suite.String(), d.version), nil
}
