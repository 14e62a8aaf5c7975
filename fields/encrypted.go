package fields

import (
	"bytes"
	"database/sql/driver"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"unsafe"

	"github.com/phicrypt/phicrypt/envelope"
)

// state is where an Encrypted value stands. The zero state is Null.
type state uint8

const (
	stateNull    state = iota // no value: stored as SQL NULL
	statePlain                // plaintext set, not sealed: no driver value
	stateSealed               // plaintext and its ciphertext agree
	stateScanned              // ciphertext (or legacy plaintext) read, not opened
)

// Encrypted holds a PHI value of type T and its ciphertext, and keeps them
// apart: code reads and writes the plaintext with Get and Set, a database
// driver only ever sees the ciphertext. Its driver.Valuer refuses to
// produce a value while the plaintext has not been sealed (ErrNotSealed),
// so plaintext cannot reach a database even through a raw query or an ORM
// path that skips hooks; its sql.Scanner accepts ciphertext in text or
// binary form, which Codec.Open then decrypts.
//
// T may be string, []byte, bool, any integer or float type, time.Time, a
// type whose pointer implements encoding.BinaryMarshaler or
// encoding.TextMarshaler and the matching unmarshaler (value or pointer
// receivers), a struct, slice or map (encoded as JSON, through the
// value's address, so pointer-receiver MarshalJSON methods count), or a
// pointer to any of these. A T that holds an Encrypted or a BlindIndex,
// which would encode as "[redacted]", or whose MarshalJSON or MarshalText
// lacks the matching unmarshaler (its own, or at any depth: a field's, an
// element's, a map key's), is a *TagError. The type is part of the
// plaintext: a value decrypts only into the type it was encrypted from
// (ErrTypeMismatch otherwise).
//
// An Encrypted that was never Set is NULL in the database, which reveals
// that the field is empty. Set(nil) on an Encrypted[*T] encrypts a null, so
// an absent value looks like any other ciphertext.
//
// Printing an Encrypted (String, GoString, Format, slog, JSON) shows
// neither the plaintext nor the ciphertext: MarshalJSON writes
// "[redacted]", and UnmarshalJSON accepts only null. To show plaintext in
// an API response, copy it into a response type explicitly.
//
// Printers that bypass those methods (fmt's bad-verb path, an Encrypted in
// an unexported field, go-spew and testify's diffs, which walk raw struct
// fields and follow pointers) find no plaintext or ciphertext either: the
// value holds them behind unsafe.Pointers, which those printers show as
// addresses; they show the lengths too, which a ciphertext reveals anyway.
// For the same reason reflect.DeepEqual, and so testify's assert.Equal,
// compare two Encrypted values by identity: a copy equals its original,
// but two values holding equal plaintexts need not be equal. Compare Get
// instead. Encrypted is not comparable with ==. Copies are independent:
// Set, Scan or Clear on one does not change another.
type Encrypted[T any] struct {
	// _ is always nil. ORMs infer a Valuer's column type from its first
	// field (GORM does): this one gives them T's.
	_ *T
	_ [0]func() // not comparable: compare Get, not the values
	// pt is the plaintext: for string and []byte T, its first byte (ptn
	// bytes), else a *T; while scanned, nil or a *any holding a scanned
	// value that is neither text nor bytes (legacy plaintext). ct is the
	// first byte of the ciphertext (or of legacy plaintext bytes), ctn
	// bytes long. What they point to is never changed once stored:
	// copies of an Encrypted share it safely, and every change stores
	// new pointers. The layout keeps the struct at 40 bytes on 64-bit
	// platforms: records hold many, and ORMs copy and grow slices of
	// records.
	pt    unsafe.Pointer
	ptn   int
	ct    unsafe.Pointer
	ctn   uint32
	state state
}

// plainKind says how an Encrypted[T] holds its plaintext.
type plainKind uint8

const (
	kindOther  plainKind = iota // pt is a *T
	kindString                  // pt, ptn are a string's data
	kindBytes                   // pt, ptn are a []byte's data
)

var (
	stringType = reflect.TypeFor[string]()
	bytesType  = reflect.TypeFor[[]byte]()
)

func kindOf[T any]() plainKind {
	switch reflect.TypeFor[T]() {
	case stringType:
		return kindString
	case bytesType:
		return kindBytes
	}
	return kindOther
}

// setPlain stores v as the plaintext, without a copy for strings and
// byte slices: the caller hands over a byte slice that nothing else
// writes (Set copies the caller's).
func (e *Encrypted[T]) setPlain(v T) {
	switch kindOf[T]() {
	case kindString:
		s := *(*string)(unsafe.Pointer(&v))
		e.pt, e.ptn = unsafe.Pointer(unsafe.StringData(s)), len(s)
	case kindBytes:
		b := *(*[]byte)(unsafe.Pointer(&v))
		e.pt, e.ptn = unsafe.Pointer(unsafe.SliceData(b)), len(b)
	default:
		p := new(T)
		*p = v
		e.pt, e.ptn = unsafe.Pointer(p), 0
	}
}

// plain returns the stored plaintext (T's zero value if none): for byte
// slices a copy, so that the stored plaintext never changes.
func (e *Encrypted[T]) plain() T {
	var v T
	switch kindOf[T]() {
	case kindString:
		*(*string)(unsafe.Pointer(&v)) = unsafe.String((*byte)(e.pt), e.ptn)
	case kindBytes:
		if e.pt != nil {
			*(*[]byte)(unsafe.Pointer(&v)) = bytes.Clone(unsafe.Slice((*byte)(e.pt), e.ptn))
		}
	default:
		if e.pt != nil {
			v = *(*T)(e.pt)
		}
	}
	return v
}

// ctBytes returns the scanned or sealed bytes, nil if none.
func (e *Encrypted[T]) ctBytes() []byte {
	if e.ct == nil {
		return nil
	}
	return unsafe.Slice((*byte)(e.ct), e.ctn)
}

// setCT stores ct, at most maxCiphertext bytes (Scan checks; sealed
// values are far smaller).
func (e *Encrypted[T]) setCT(ct []byte) {
	if ct == nil {
		e.ct, e.ctn = nil, 0
		return
	}
	e.ct, e.ctn = unsafe.Pointer(unsafe.SliceData(ct)), uint32(len(ct))
}

// maxCiphertext is the largest value Scan keeps: a ciphertext's length
// is held in 32 bits. Sealed values are at most
// envelope.MaxPlaintextSizeLimit (1 GiB) and a few bytes of overhead.
const maxCiphertext = math.MaxUint32

// New returns an Encrypted holding v, to be sealed.
func New[T any](v T) Encrypted[T] {
	var e Encrypted[T]
	e.Set(v)
	return e
}

// Aliases for the common types.
type (
	// String is an encrypted string.
	String = Encrypted[string]
	// Bytes is an encrypted byte slice.
	Bytes = Encrypted[[]byte]
)

// Set replaces the plaintext. The value must be sealed again before it can
// be written to a database. A []byte is copied: the caller may reuse its
// buffer. Other T are copied as Go assigns them: what a T points to (a
// slice in a struct, a *T's target) is shared, and must not change.
func (e *Encrypted[T]) Set(v T) {
	if kindOf[T]() == kindBytes {
		b := bytes.Clone(*(*[]byte)(unsafe.Pointer(&v)))
		v = *(*T)(unsafe.Pointer(&b))
	}
	*e = Encrypted[T]{state: statePlain}
	e.setPlain(v)
}

// Get returns the plaintext, or T's zero value when there is none: the
// value is NULL, or was read from a database and not opened yet. A []byte
// is a copy: writing to it changes neither the value nor its copies.
func (e Encrypted[T]) Get() T {
	if e.state == statePlain || e.state == stateSealed {
		return e.plain()
	}
	var zero T
	return zero
}

// IsNull reports whether the value is NULL (never set, or scanned from a
// NULL).
func (e Encrypted[T]) IsNull() bool { return e.state == stateNull }

// Clear sets the value to NULL.
func (e *Encrypted[T]) Clear() { *e = Encrypted[T]{} }

// Sealed reports whether the value can be written to a database: it is
// NULL, sealed, or read from a database and not changed since.
func (e Encrypted[T]) Sealed() bool { return e.state != statePlain }

// Opened reports whether the plaintext is available.
func (e Encrypted[T]) Opened() bool { return e.state == statePlain || e.state == stateSealed }

// Value implements driver.Valuer: the ciphertext (a string when text
// armored, []byte when binary), nil for NULL, and ErrNotSealed while the
// plaintext has not been sealed.
func (e Encrypted[T]) Value() (driver.Value, error) {
	switch e.state {
	case stateNull:
		return nil, nil
	case statePlain:
		return nil, ErrNotSealed
	}
	ct := e.ctBytes()
	switch {
	case isArmored(ct):
		return string(ct), nil
	case len(ct) > 0 && ct[0] == envelopeMagic:
		return ct, nil
	}
	// Legacy plaintext read in migration mode goes back only once sealed.
	return nil, ErrNotSealed
}

// envelopeMagic is the first byte of a binary ciphertext.
const envelopeMagic = 0xF5

func isArmored(b []byte) bool {
	return len(b) >= len(envelope.ArmorPrefix) && string(b[:len(envelope.ArmorPrefix)]) == envelope.ArmorPrefix
}

// Scan implements sql.Scanner. It keeps the ciphertext, text or binary, for
// Codec.Open to decrypt; NULL scans as NULL. Any other value (an integer
// from a legacy plaintext column, say) is kept as legacy plaintext, which
// Open accepts only in migration mode.
func (e *Encrypted[T]) Scan(src any) error {
	*e = Encrypted[T]{state: stateScanned}
	switch s := src.(type) {
	case nil:
		e.state = stateNull
	case []byte:
		if uint64(len(s)) > maxCiphertext {
			*e = Encrypted[T]{}
			return fmt.Errorf("%w: a value of %d bytes", envelope.ErrTooLarge, len(s))
		}
		e.setCT(bytes.Clone(s))
	case string:
		if uint64(len(s)) > maxCiphertext {
			*e = Encrypted[T]{}
			return fmt.Errorf("%w: a value of %d bytes", envelope.ErrTooLarge, len(s))
		}
		e.setCT([]byte(s))
	default:
		l := new(any)
		*l = src
		e.pt = unsafe.Pointer(l)
	}
	return nil
}

// ScanBytes is Scan for drivers that lend their own memory, such as pgx
// (its pgtype.BytesScanner): it copies v, nil being NULL, so that a bytea
// or text column is copied once instead of twice.
func (e *Encrypted[T]) ScanBytes(v []byte) error {
	if v == nil {
		return e.Scan(nil)
	}
	return e.Scan(v)
}

// MarshalJSON writes the JSON string "[redacted]", or null for NULL: never
// the plaintext, the ciphertext or anything derived from them. JSON is how
// records reach logs (slog's JSON handler), API responses and caches by
// accident; to send a value, copy its plaintext into a response type, or
// its ciphertext (Value) into a transport type, explicitly.
func (e Encrypted[T]) MarshalJSON() ([]byte, error) {
	if e.state == stateNull {
		return []byte("null"), nil
	}
	return []byte(`"[redacted]"`), nil
}

// UnmarshalJSON accepts null only: an encrypted value is never read from
// JSON (see MarshalJSON), so JSON can neither smuggle plaintext in nor
// restore a redacted value.
func (e *Encrypted[T]) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) != "null" {
		return ErrJSON
	}
	*e = Encrypted[T]{}
	return nil
}

// String returns a placeholder: never the plaintext or the ciphertext.
func (e Encrypted[T]) String() string {
	return "fields.Encrypted[" + reflect.TypeFor[T]().String() + "](" + e.state.String() + ")"
}

// GoString is String.
func (e Encrypted[T]) GoString() string { return e.String() }

// Format prints String for every verb.
func (e Encrypted[T]) Format(f fmt.State, verb rune) { fmt.Fprint(f, e.String()) }

// LogValue logs the placeholder.
func (e Encrypted[T]) LogValue() slog.Value { return slog.StringValue(e.String()) }

func (s state) String() string {
	switch s {
	case stateNull:
		return "null"
	case statePlain:
		return "unsealed"
	case stateSealed:
		return "sealed"
	}
	return "encrypted"
}

// valueField is what a Codec sees of an Encrypted field, whatever its T.
type valueField interface {
	fieldState() state
	// appendPlain appends the typed plaintext encoding.
	appendPlain(dst []byte) ([]byte, error)
	// indexText appends the plaintext's text form for blind indexes.
	indexText(dst []byte) ([]byte, error)
	// sealWith stores ct as the ciphertext of the current plaintext.
	sealWith(ct []byte)
	// ciphertext returns the scanned bytes, or the legacy value.
	ciphertext() ([]byte, any)
	// openWith decodes a typed plaintext encoding into the value.
	openWith(pt []byte) error
	// openLegacy decodes legacy plaintext (migration mode); the value
	// becomes unsealed.
	openLegacy(raw []byte, v any) error
	elemType() reflect.Type
	// fieldAt returns the field of this type at p.
	fieldAt(p unsafe.Pointer) valueField
}

func (e *Encrypted[T]) fieldState() state { return e.state }

func (e *Encrypted[T]) appendPlain(dst []byte) ([]byte, error) {
	switch kindOf[T]() {
	case kindString, kindBytes:
		dst = append(dst, tagString)
		if kindOf[T]() == kindBytes {
			dst[len(dst)-1] = tagBytes
		}
		return append(dst, unsafe.Slice((*byte)(e.pt), e.ptn)...), nil
	}
	if e.pt == nil {
		return appendTyped(dst, new(T))
	}
	return appendTyped(dst, (*T)(e.pt))
}

func (e *Encrypted[T]) indexText(dst []byte) ([]byte, error) {
	switch kindOf[T]() {
	case kindString, kindBytes:
		return append(dst, unsafe.Slice((*byte)(e.pt), e.ptn)...), nil
	}
	if e.pt == nil {
		return appendText(dst, new(T))
	}
	return appendText(dst, (*T)(e.pt))
}

// sealWith stores ct as the ciphertext of the current plaintext.
func (e *Encrypted[T]) sealWith(ct []byte) {
	e.setCT(ct)
	e.state = stateSealed
}

func (e *Encrypted[T]) ciphertext() ([]byte, any) {
	if e.state == stateScanned && e.pt != nil {
		return e.ctBytes(), *(*any)(e.pt)
	}
	return e.ctBytes(), nil
}

func (e *Encrypted[T]) elemType() reflect.Type { return reflect.TypeFor[T]() }

func (*Encrypted[T]) fieldAt(p unsafe.Pointer) valueField { return (*Encrypted[T])(p) }

// openWith decodes a typed plaintext encoding; it keeps the ciphertext.
// On failure the value is left as it was.
func (e *Encrypted[T]) openWith(pt []byte) error {
	switch k := kindOf[T](); {
	case k == kindString && len(pt) > 0 && pt[0] == tagString:
		s := string(pt[1:])
		e.pt, e.ptn = unsafe.Pointer(unsafe.StringData(s)), len(s)
	case k == kindBytes && len(pt) > 0 && pt[0] == tagBytes:
		b := append([]byte{}, pt[1:]...)
		e.pt, e.ptn = unsafe.Pointer(unsafe.SliceData(b)), len(b)
	default:
		p := new(T)
		if err := decodeTyped(pt, p); err != nil {
			return err
		}
		e.setDecoded(p)
	}
	e.state = stateSealed
	return nil
}

func (e *Encrypted[T]) openLegacy(raw []byte, legacy any) error {
	p := new(T)
	if err := decodeLegacy(raw, legacy, p); err != nil {
		return err
	}
	*e = Encrypted[T]{state: statePlain}
	e.setDecoded(p)
	return nil
}

// setDecoded stores a freshly decoded plaintext, keeping p itself when
// the plaintext is held as a *T.
func (e *Encrypted[T]) setDecoded(p *T) {
	if kindOf[T]() == kindOther {
		e.pt, e.ptn = unsafe.Pointer(p), 0
		return
	}
	e.setPlain(*p)
}
