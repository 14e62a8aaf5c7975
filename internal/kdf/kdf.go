// Package kdf derives phicrypt's subkeys and computes its MACs with the
// standard library's HKDF-SHA-256 and HMAC-SHA-256, both FIPS 140-3
// approved. The info labels are wire constants: changing one makes every
// stored ciphertext undecryptable.
package kdf

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
)

// HKDF info labels. Each use of a key has its own label (domain separation).
const (
	// LabelAEAD derives the AEAD key of a data key; the suite id byte is
	// appended.
	LabelAEAD = "phicrypt/v1/aead-key/"
	// LabelStreamKey derives the key of one stream from a data key, with
	// the stream's random salt as the HKDF salt; the suite id byte is
	// appended.
	LabelStreamKey = "phicrypt/v1/stream-key/"
	// LabelCommitment derives the key commitment of the self-contained
	// form.
	LabelCommitment = "phicrypt/v1/key-commitment"
	// LabelBlindIndex derives the HMAC key of a blind index key.
	LabelBlindIndex = "phicrypt/v1/blind-index-key"
	// LabelBlindIndexParams derives, from the HMAC key of a blind index
	// key version, the key of one index definition: HKDF-Expand with this
	// label and the index's parameters (normalizer chains, bits) as info.
	LabelBlindIndexParams = "phicrypt/v1/blind-index-params/"
	// LabelAuditChain derives the HMAC key of the audit log's chain.
	LabelAuditChain = "phicrypt/v1/audit-chain-key"
	// LabelKeyMetadata derives the HMAC key that authenticates the key
	// store's metadata (key states, minimum decryption versions, message
	// budgets).
	LabelKeyMetadata = "phicrypt/v1/key-metadata-key"
)

// Key derives n bytes from secret and info with HKDF-SHA-256 and no salt
// (RFC 5869 section 3.1: the secret is already uniformly random).
func Key(secret []byte, info string, n int) ([]byte, error) {
	return KeySalt(secret, nil, info, n)
}

// KeySalt is Key with a salt.
func KeySalt(secret, salt []byte, info string, n int) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, secret, salt, info, n)
	if err != nil {
		return nil, fmt.Errorf("kdf: %w", err)
	}
	return k, nil
}

// ErrMACSize means a MAC was asked to be longer than SHA-256 or shorter
// than a byte.
var ErrMACSize = errors.New("kdf: MAC size must be 1 to 32 bytes")

// ErrMACKeySize means a MAC key is shorter than 128 bits.
var ErrMACKeySize = errors.New("kdf: MAC key must be at least 128 bits")

// MAC returns HMAC-SHA-256 of msg under key, truncated to its first size
// bytes (RFC 2104 section 5). The key must be at least 128 bits (FIPS 140-3
// mode refuses keys under 112).
func MAC(key, msg []byte, size int) ([]byte, error) {
	if size < 1 || size > sha256.Size {
		return nil, ErrMACSize
	}
	if len(key) < 16 {
		return nil, ErrMACKeySize
	}
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)[:size], nil
}
