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
	"io"
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
	// FormStream is a segmented stream: the self-contained form's key
	// fields, a segment size and a per-stream salt, then the segments.
	FormStream Form = 0x03
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
	// MaxWrappedSize caps the wrapped data key of the self-contained and
	// stream forms.
	MaxWrappedSize = 4096
	// SaltSize is the size of a stream's salt.
	SaltSize = 32
	// MinSegmentSize and MaxSegmentSize bound the plaintext size of a
	// stream's segments. The upper bound caps what a reader allocates for
	// a segment whatever the header says.
	MinSegmentSize = 256
	MaxSegmentSize = 1 << 20
	// MaxStreamHeaderSize is the largest stream header.
	MaxStreamHeaderSize = 4 + 2 + MaxKEKIDSize + 2 + MaxWrappedSize + CommitmentSize + 4 + SaltSize
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
	// KEKID, Wrapped and Commitment belong to the self-contained and
	// stream forms.
	KEKID      []byte
	Wrapped    []byte
	Commitment []byte
	// SegmentSize and Salt belong to the stream form.
	SegmentSize uint32
	Salt        []byte
	// Size is the header's length: the body starts at Size. The header
	// bytes are the first Size bytes of the input and are authenticated as
	// the start of the AAD.
	Size int
}

// Parse parses the header of a binary ciphertext and checks that the body
// is at least as long as the suite's nonce and tag (for a stream, the first
// segment).
func Parse(b []byte) (Header, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return h, err
	}
	nonce, tag, _ := h.Suite.Params()
	if len(b)-h.Size < nonce+tag {
		return h, errAt("body", h.Size, "shorter than nonce and tag")
	}
	return h, nil
}

// ParseCompact is Parse for the common case, without building a Header:
// it reports whether b is a binary compact ciphertext that Parse accepts,
// and its suite and key version. For anything else it reports false, and
// the caller calls Parse, whose error says what is wrong.
func ParseCompact(b []byte) (suite Suite, version uint32, ok bool) {
	if len(b) < CompactHeaderSize || b[0] != Magic || b[1] != Version1 || Form(b[2]) != FormCompact {
		return 0, 0, false
	}
	suite, version = Suite(b[3]), binary.BigEndian.Uint32(b[4:8])
	nonce, tag, known := suite.Params()
	if !known || version == 0 || len(b)-CompactHeaderSize < nonce+tag {
		return 0, 0, false
	}
	return suite, version, true
}

// ParseHeader parses the header at the start of b, which may hold more
// bytes (the body) or none.
func ParseHeader(b []byte) (Header, error) {
	h, _, err := parseHeader(b)
	return h, err
}

// ReadHeader reads a header from r, one field at a time: it reads no byte
// past the header, so r is left at the body. It returns the header and its
// bytes, to which the header's slices point. An input that ends before the
// header does is an *Error, except an empty one, which is plaintext
// (ErrNotEncrypted) like the empty value; so is an armored value (streams
// are binary only), whose *Error wraps ErrArmored. Any other read error is
// returned as it is.
func ReadHeader(r io.Reader) (Header, []byte, error) {
	buf := make([]byte, 0, 128)
	for {
		h, need, err := parseHeader(buf)
		if err == nil {
			return h, buf, nil
		}
		if need == 0 {
			if errors.Is(err, ErrNotEncrypted) && armoredAhead(r, buf) {
				err = &Error{Field: "armor", Offset: 0, Reason: "an armored value, and streams are binary only", Err: ErrArmored}
			}
			return h, nil, err
		}
		if cap(buf) < need {
			grown := make([]byte, len(buf), need)
			copy(grown, buf)
			buf = grown
		}
		n, rerr := io.ReadFull(r, buf[len(buf):need])
		buf = buf[:len(buf)+n]
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF):
			_, _, err = parseHeader(buf)
			return Header{}, nil, err
		default:
			return Header{}, nil, rerr
		}
	}
}

// ErrArmored classifies the *Error of ReadHeader given an armored value.
var ErrArmored = errors.New("format: armored value where a stream was expected")

// armoredAhead reports whether read, which lacks the magic byte, and the
// bytes r holds next begin with the armor prefix. It reads up to the
// prefix's length from r: the caller fails anyway.
func armoredAhead(r io.Reader, read []byte) bool {
	prefix := []byte(ArmorPrefix)
	if len(read) >= len(prefix) {
		return bytes.HasPrefix(read, prefix)
	}
	if !bytes.HasPrefix(prefix, read) {
		return false
	}
	rest := make([]byte, len(prefix)-len(read))
	_, err := io.ReadFull(r, rest)
	return err == nil && bytes.Equal(rest, prefix[len(read):])
}

// parseHeader parses the header at the start of b. When b is too short but
// every field it holds is valid, err is a truncation error and need is the
// length b must reach for parsing to go on; otherwise need is 0.
func parseHeader(b []byte) (h Header, need int, err error) {
	if len(b) == 0 {
		return h, 4, ErrNotEncrypted
	}
	if b[0] != Magic {
		return h, 0, ErrNotEncrypted
	}
	if len(b) < 4 {
		return h, 4, errAt("header", len(b), "truncated")
	}
	if b[1] != Version1 {
		return h, 0, &Error{Field: "version", Offset: 1, Reason: fmt.Sprintf("version %d", b[1]), Err: ErrUnsupportedVersion}
	}
	h.Form, h.Suite = Form(b[2]), Suite(b[3])
	if _, _, ok := h.Suite.Params(); !ok {
		return h, 0, &Error{Field: "suite", Offset: 3, Reason: fmt.Sprintf("suite %d", b[3]), Err: ErrUnsupportedVersion}
	}
	switch h.Form {
	case FormCompact:
		if len(b) < CompactHeaderSize {
			return h, CompactHeaderSize, errAt("key version", 4, "truncated")
		}
		h.KeyVersion = binary.BigEndian.Uint32(b[4:8])
		if h.KeyVersion == 0 {
			return h, 0, errAt("key version", 4, "must not be zero")
		}
		h.Size = CompactHeaderSize
	case FormSelfContained:
		if h.Suite == AESSIV {
			return h, 0, errAt("suite", 3, "deterministic suite in self-contained form")
		}
		off, need, err := parseKeyFields(b, &h)
		if err != nil {
			return h, need, err
		}
		h.Size = off
	case FormStream:
		if h.Suite == AESSIV {
			return h, 0, errAt("suite", 3, "deterministic suite in stream form")
		}
		off, need, err := parseKeyFields(b, &h)
		if err != nil {
			return h, need, err
		}
		if len(b)-off < 4 {
			return h, off + 4, errAt("segment size", off, "truncated")
		}
		h.SegmentSize = binary.BigEndian.Uint32(b[off:])
		if h.SegmentSize < MinSegmentSize || h.SegmentSize > MaxSegmentSize {
			return h, 0, errAt("segment size", off, fmt.Sprintf("%d is outside %d..%d", h.SegmentSize, MinSegmentSize, MaxSegmentSize))
		}
		off += 4
		if len(b)-off < SaltSize {
			return h, off + SaltSize, errAt("salt", off, "truncated")
		}
		h.Salt = b[off : off+SaltSize]
		h.Size = off + SaltSize
	default:
		return h, 0, &Error{Field: "form", Offset: 2, Reason: fmt.Sprintf("form %d", b[2]), Err: ErrUnsupportedVersion}
	}
	return h, 0, nil
}

// parseKeyFields parses the KEK id, wrapped key and key commitment that
// follow the first four bytes of the self-contained and stream forms, and
// returns the offset past them.
func parseKeyFields(b []byte, h *Header) (off, need int, err error) {
	if h.KEKID, off, need, err = lengthPrefixed(b, 4, "kek id", MaxKEKIDSize); err != nil {
		return 0, need, err
	}
	for _, c := range h.KEKID {
		if c <= ' ' || c > '~' {
			return 0, 0, errAt("kek id", 6, "not printable ASCII")
		}
	}
	if h.Wrapped, off, need, err = lengthPrefixed(b, off, "wrapped key", MaxWrappedSize); err != nil {
		return 0, need, err
	}
	if len(b)-off < CommitmentSize {
		return 0, off + CommitmentSize, errAt("key commitment", off, "truncated")
	}
	h.Commitment = b[off : off+CommitmentSize]
	return off + CommitmentSize, 0, nil
}

// lengthPrefixed reads a big-endian uint16 length at off and the non-empty
// field of that length it prefixes, capped at limit. On truncation, need is
// the length b must reach.
func lengthPrefixed(b []byte, off int, field string, limit int) (v []byte, end, need int, err error) {
	if len(b)-off < 2 {
		return nil, 0, off + 2, errAt(field+" length", off, "truncated")
	}
	n := int(binary.BigEndian.Uint16(b[off:]))
	if n == 0 || n > limit {
		return nil, 0, 0, errAt(field+" length", off, fmt.Sprintf("%d is outside 1..%d", n, limit))
	}
	off += 2
	if len(b)-off < n {
		return nil, 0, off + n, errAt(field, off, "truncated")
	}
	return b[off : off+n], off + n, 0, nil
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
	return appendKeyHeader(dst, FormSelfContained, s, kekID, wrapped, commitment)
}

// StreamHeaderSize returns the stream header size for a KEK id and wrapped
// key of the given lengths.
func StreamHeaderSize(kekID, wrapped int) int {
	return SelfContainedHeaderSize(kekID, wrapped) + 4 + SaltSize
}

// AppendStreamHeader appends the header of a stream. It fails if a field is
// outside its cap.
func AppendStreamHeader(dst []byte, s Suite, kekID string, wrapped, commitment []byte, segmentSize uint32, salt []byte) ([]byte, error) {
	if segmentSize < MinSegmentSize || segmentSize > MaxSegmentSize {
		return nil, errAt("segment size", -1, fmt.Sprintf("%d is outside %d..%d", segmentSize, MinSegmentSize, MaxSegmentSize))
	}
	if len(salt) != SaltSize {
		return nil, errAt("salt", -1, "wrong size")
	}
	dst, err := appendKeyHeader(dst, FormStream, s, kekID, wrapped, commitment)
	if err != nil {
		return nil, err
	}
	dst = binary.BigEndian.AppendUint32(dst, segmentSize)
	return append(dst, salt...), nil
}

func appendKeyHeader(dst []byte, f Form, s Suite, kekID string, wrapped, commitment []byte) ([]byte, error) {
	if len(kekID) == 0 || len(kekID) > MaxKEKIDSize {
		return nil, errAt("kek id length", -1, fmt.Sprintf("%d is outside 1..%d", len(kekID), MaxKEKIDSize))
	}
	if len(wrapped) == 0 || len(wrapped) > MaxWrappedSize {
		return nil, errAt("wrapped key length", -1, fmt.Sprintf("%d is outside 1..%d", len(wrapped), MaxWrappedSize))
	}
	if len(commitment) != CommitmentSize {
		return nil, errAt("key commitment", -1, "wrong size")
	}
	dst = append(dst, Magic, Version1, byte(f), byte(s))
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
	// Past the prefix, the value is a ciphertext or malformed: never
	// plaintext (ErrNotEncrypted), which callers may let through.
	if n == 0 || dst[0] != Magic {
		return nil, errAt("magic", 0, "the armored bytes are not a ciphertext")
	}
	return dst[:n], nil
}

// AppendString appends s with its length as a big-endian uint32: the unit of
// the canonical AAD encoding.
func AppendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}
