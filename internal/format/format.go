// Package format holds phicrypt's wire formats: the binary header of every
// ciphertext, the text armor, and the canonical encoding of the associated
// data (AAD) that binds a ciphertext to its context. The public description
// of the layout is in the envelope package documentation; this package is
// its single implementation.
//
// Wire constants are forever: a value written by a released version must
// parse in every later version, which the golden vectors in
// envelope/testdata enforce.
//
// The parser is strict. It accepts only canonical encodings (one byte string
// per ciphertext), checks every length against its cap before slicing or
// allocating, never panics, and reports problems as *Error values that name
// the field and offset but never include the input bytes.
package format

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// Magic is the first byte of every binary ciphertext. 0xF5 never occurs in
// valid UTF-8, so text stored in a binary column is never mistaken for a
// ciphertext.
const Magic = 0xF5

// Version1 is the only format version so far.
const Version1 = 0x01

// ArmorPrefix starts every text-armored ciphertext. What follows is the
// binary form in unpadded base64url (RFC 4648 section 5).
const ArmorPrefix = "phicrypt:"

// Form is the kind of ciphertext.
type Form uint8

// Forms. Values are wire constants.
const (
	// FormCompact names its data key by version; the key comes from a
	// keyring, selected by the scope of the bound context.
	FormCompact Form = 0x01
	// FormSelfContained carries its data key inline, wrapped by a KEK.
	FormSelfContained Form = 0x02
)

// Suite identifies the AEAD algorithm. Values are wire constants.
type Suite uint8

// Suites.
const (
	// AES256GCM is AES-256-GCM with a random 96-bit nonce and a 128-bit tag.
	AES256GCM Suite = 0x01
	// XChaCha20Poly1305 is XChaCha20-Poly1305 with a random 192-bit nonce.
	XChaCha20Poly1305 Suite = 0x02
	// AESSIV is deterministic AES-SIV (RFC 5297) with a 512-bit key.
	AESSIV Suite = 0x03
)

// Params are the sizes of a suite's nonce and tag, which the parser needs to
// check a body's minimum length.
func (s Suite) Params() (nonce, tag int, ok bool) {
	switch s {
	case AES256GCM:
		return 12, 16, true
	case XChaCha20Poly1305:
		return 24, 16, true
	case AESSIV:
		return 0, 16, true
	}
	return 0, 0, false
}

// Sizes and caps of header fields.
const (
	// CompactHeaderSize is magic, version, form, suite, key version.
	CompactHeaderSize = 8
	// CommitmentSize is the size of the key commitment of the
	// self-contained form.
	CommitmentSize = 32
	// MaxKEKIDSize caps the KEK id of the self-contained form.
	MaxKEKIDSize = 512
	// MaxWrappedSize caps the wrapped data key of the self-contained form.
	MaxWrappedSize = 4096
)

// Errors. The envelope package exports them under the same names.
var (
	// ErrNotEncrypted means the input has neither the binary magic nor the
	// armor prefix: it is plaintext, not a ciphertext.
	ErrNotEncrypted = errors.New("envelope: value is not encrypted")
	// ErrUnsupportedVersion means the input is a ciphertext of a format
	// version, form or suite that this version of phicrypt does not know,
	// most likely written by a newer one.
	ErrUnsupportedVersion = errors.New("envelope: unsupported format version")
)

// Error is a malformed ciphertext. It says which field is wrong and where,
// never what the bytes were.
type Error struct {
	// Field is the header field or encoding at fault, e.g. "kek id length".
	Field string
	// Offset is the byte offset of the field in the binary form, or -1.
	Offset int
	// Reason says what is wrong.
	Reason string
	// Err is a sentinel that classifies the problem (ErrUnsupportedVersion,
	// or the envelope package's ErrWrongForm), or nil.
	Err error
}

func (e *Error) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("envelope: malformed ciphertext: %s at byte %d: %s", e.Field, e.Offset, e.Reason)
	}
	return fmt.Sprintf("envelope: malformed ciphertext: %s: %s", e.Field, e.Reason)
}

// Unwrap returns the classifying sentinel, if any.
func (e *Error) Unwrap() error { return e.Err }

func errAt(field string, off int, reason string) error {
	return &Error{Field: field, Offset: off, Reason: reason}
}

// Header is a parsed ciphertext header. Its slices alias the input.
type Header struct {
	Form  Form
	Suite Suite
	// KeyVersion is the data key version of the compact form.
	KeyVersion uint32
	// KEKID, Wrapped and Commitment belong to the self-contained form.
	KEKID      []byte
	Wrapped    []byte
	Commitment []byte
	// Size is the header's length: the body starts at Size. The header
	// bytes are the first Size bytes of the input and are authenticated as
	// the start of the AAD.
	Size int
}

// Parse parses the header of a binary ciphertext and checks that the body
// is at least as long as the suite's nonce and tag.
func Parse(b []byte) (Header, error) {
	var h Header
	if len(b) == 0 || b[0] != Magic {
		return h, ErrNotEncrypted
	}
	if len(b) < 4 {
		return h, errAt("header", len(b), "truncated")
	}
	if b[1] != Version1 {
		return h, &Error{Field: "version", Offset: 1, Reason: fmt.Sprintf("version %d", b[1]), Err: ErrUnsupportedVersion}
	}
	h.Form, h.Suite = Form(b[2]), Suite(b[3])
	nonce, tag, ok := h.Suite.Params()
	if !ok {
		return h, &Error{Field: "suite", Offset: 3, Reason: fmt.Sprintf("suite %d", b[3]), Err: ErrUnsupportedVersion}
	}
	switch h.Form {
	case FormCompact:
		if len(b) < CompactHeaderSize {
			return h, errAt("key version", 4, "truncated")
		}
		h.KeyVersion = binary.BigEndian.Uint32(b[4:8])
		if h.KeyVersion == 0 {
			return h, errAt("key version", 4, "must not be zero")
		}
		h.Size = CompactHeaderSize
	case FormSelfContained:
		if h.Suite == AESSIV {
			return h, errAt("suite", 3, "deterministic suite in self-contained form")
		}
		off := 4
		var err error
		if h.KEKID, off, err = lengthPrefixed(b, off, "kek id", MaxKEKIDSize); err != nil {
			return h, err
		}
		for _, c := range h.KEKID {
			if c <= ' ' || c > '~' {
				return h, errAt("kek id", 6, "not printable ASCII")
			}
		}
		if h.Wrapped, off, err = lengthPrefixed(b, off, "wrapped key", MaxWrappedSize); err != nil {
			return h, err
		}
		if len(b)-off < CommitmentSize {
			return h, errAt("key commitment", off, "truncated")
		}
		h.Commitment = b[off : off+CommitmentSize]
		h.Size = off + CommitmentSize
	default:
		return h, &Error{Field: "form", Offset: 2, Reason: fmt.Sprintf("form %d", b[2]), Err: ErrUnsupportedVersion}
	}
	if len(b)-h.Size < nonce+tag {
		return h, errAt("body", h.Size, "shorter than nonce and tag")
	}
	return h, nil
}

// lengthPrefixed reads a big-endian uint16 length at off and the non-empty
// field of that length it prefixes, capped at limit.
func lengthPrefixed(b []byte, off int, field string, limit int) ([]byte, int, error) {
	if len(b)-off < 2 {
		return nil, 0, errAt(field+" length", off, "truncated")
	}
	n := int(binary.BigEndian.Uint16(b[off:]))
	if n == 0 || n > limit {
		return nil, 0, errAt(field+" length", off, fmt.Sprintf("%d is outside 1..%d", n, limit))
	}
	off += 2
	if len(b)-off < n {
		return nil, 0, errAt(field, off, "truncated")
	}
	return b[off : off+n], off + n, nil
}

// AppendCompactHeader appends the header of a compact ciphertext.
func AppendCompactHeader(dst []byte, s Suite, keyVersion uint32) []byte {
	dst = append(dst, Magic, Version1, byte(FormCompact), byte(s))
	return binary.BigEndian.AppendUint32(dst, keyVersion)
}

// SelfContainedHeaderSize returns the header size for a KEK id and wrapped
// key of the given lengths.
func SelfContainedHeaderSize(kekID, wrapped int) int {
	return 4 + 2 + kekID + 2 + wrapped + CommitmentSize
}

// AppendSelfContainedHeader appends the header of a self-contained
// ciphertext. It fails if a field is outside its cap.
func AppendSelfContainedHeader(dst []byte, s Suite, kekID string, wrapped, commitment []byte) ([]byte, error) {
	if len(kekID) == 0 || len(kekID) > MaxKEKIDSize {
		return nil, errAt("kek id length", -1, fmt.Sprintf("%d is outside 1..%d", len(kekID), MaxKEKIDSize))
	}
	if len(wrapped) == 0 || len(wrapped) > MaxWrappedSize {
		return nil, errAt("wrapped key length", -1, fmt.Sprintf("%d is outside 1..%d", len(wrapped), MaxWrappedSize))
	}
	if len(commitment) != CommitmentSize {
		return nil, errAt("key commitment", -1, "wrong size")
	}
	dst = append(dst, Magic, Version1, byte(FormSelfContained), byte(s))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(kekID)))
	dst = append(dst, kekID...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(wrapped)))
	dst = append(dst, wrapped...)
	return append(dst, commitment...), nil
}

var b64 = base64.RawURLEncoding.Strict()

// ArmoredLen returns the length of the armored form of n binary bytes.
func ArmoredLen(n int) int { return len(ArmorPrefix) + b64.EncodedLen(n) }

// AppendArmor appends the text armor of the binary ciphertext bin.
func AppendArmor(dst, bin []byte) []byte {
	dst = append(dst, ArmorPrefix...)
	return b64.AppendEncode(dst, bin)
}

// IsArmored reports whether s starts with the armor prefix.
func IsArmored(s []byte) bool {
	return len(s) >= len(ArmorPrefix) && string(s[:len(ArmorPrefix)]) == ArmorPrefix
}

// DecodedLen returns the binary length of an armored ciphertext of n bytes
// (prefix included), or -1 if n cannot be the length of a canonical
// armoring.
func DecodedLen(n int) int {
	n -= len(ArmorPrefix)
	if n < 0 || n%4 == 1 {
		return -1
	}
	return b64.DecodedLen(n)
}

// Dearmor decodes an armored ciphertext into dst, which must have at least
// DecodedLen(len(s)) bytes, and returns the binary form. It accepts only the
// canonical encoding: the prefix, then unpadded base64url with zero trailing
// bits and nothing else (no padding, whitespace or line breaks).
func Dearmor(dst, s []byte) ([]byte, error) {
	if !IsArmored(s) {
		return nil, ErrNotEncrypted
	}
	body := s[len(ArmorPrefix):]
	// The decoder skips CR and LF; everything else outside the alphabet,
	// padding included, is an error, and Strict rejects non-zero trailing
	// bits.
	if i := bytes.IndexAny(body, "\r\n"); i >= 0 {
		return nil, errAt("armor", len(ArmorPrefix)+i, "line break")
	}
	if DecodedLen(len(s)) < 0 {
		return nil, errAt("armor", -1, "impossible length")
	}
	n, err := b64.Decode(dst, body)
	if err != nil {
		return nil, errAt("armor", -1, "not canonical unpadded base64url")
	}
	return dst[:n], nil
}

// AppendString appends s with its length as a big-endian uint32: the unit of
// the canonical AAD encoding.
func AppendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}
