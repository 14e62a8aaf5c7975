package fields

import (
	"encoding"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/phicrypt/phicrypt/internal/jsonerr"
)

// The plaintext of an encrypted field is a type tag byte and the value.
// Numbers have a fixed width, so a ciphertext's length does not reveal a
// number's magnitude. These tags are part of the stored data: never change
// one.
const (
	tagString  = 'S'
	tagBytes   = 'B'
	tagBool    = 'b'
	tagInt     = 'i' // int64, big-endian
	tagUint    = 'u' // uint64, big-endian
	tagFloat   = 'f' // float64 bits, big-endian
	tagTime    = 't' // time.Time.MarshalBinary
	tagBinary  = 'm' // encoding.BinaryMarshaler
	tagText    = 'x' // encoding.TextMarshaler
	tagJSON    = 'j' // structs, slices, maps
	tagNil     = 'n' // a nil pointer
	tagPointer = 'p' // a non-nil pointer, followed by its element
)

var (
	timeType              = reflect.TypeFor[time.Time]()
	binaryMarshalerType   = reflect.TypeFor[encoding.BinaryMarshaler]()
	binaryUnmarshalerType = reflect.TypeFor[encoding.BinaryUnmarshaler]()
	textMarshalerType     = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshalerType   = reflect.TypeFor[encoding.TextUnmarshaler]()
	jsonMarshalerType     = reflect.TypeFor[json.Marshaler]()
	jsonUnmarshalerType   = reflect.TypeFor[json.Unmarshaler]()
)

// tagOf returns the tag that values of t are encoded with, or 0 if they
// cannot be encrypted. Encoding, decoding and the plan-time check all
// follow it.
func tagOf(t reflect.Type) byte { return tagRule(t, true) }

// tagRule is tagOf, which finds the marshalers of T on *T (Seal encodes
// an addressable value, so pointer-receiver marshalers count), or, with
// ptrMethods false, the rule of earlier releases, which looked for the
// marshaler on T itself and encoded a T with pointer-receiver marshalers
// as JSON: Open still accepts those values.
func tagRule(t reflect.Type, ptrMethods bool) byte {
	marshals := func(m, u reflect.Type) bool {
		if ptrMethods {
			return reflect.PointerTo(t).Implements(m) && reflect.PointerTo(t).Implements(u)
		}
		return t.Implements(m) && reflect.PointerTo(t).Implements(u)
	}
	switch {
	case t.Kind() == reflect.Pointer:
		if t.Elem().Kind() == reflect.Pointer || tagRule(t.Elem(), ptrMethods) == 0 {
			return 0
		}
		return tagPointer
	case t == timeType:
		return tagTime
	case marshals(binaryMarshalerType, binaryUnmarshalerType):
		return tagBinary
	case marshals(textMarshalerType, textUnmarshalerType):
		return tagText
	}
	switch t.Kind() {
	case reflect.String:
		return tagString
	case reflect.Bool:
		return tagBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return tagInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return tagUint
	case reflect.Float32, reflect.Float64:
		return tagFloat
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return tagBytes
		}
		return tagJSON
	case reflect.Struct, reflect.Map, reflect.Array:
		return tagJSON
	}
	return 0
}

// checkType reports whether values of t can be encrypted, and decrypted
// back: a type holding an Encrypted or a BlindIndex would be encoded as
// "[redacted]", and a JSON-encoded type whose MarshalJSON or MarshalText
// has no matching unmarshaler would not decode.
func checkType(t reflect.Type) error {
	tag := tagOf(t)
	if tag == 0 {
		return fmt.Errorf("%v cannot be encrypted", t)
	}
	if holdsSecret(t, nil) {
		return fmt.Errorf("%v holds an Encrypted value or a BlindIndex, which it would encode as \"[redacted]\": encrypt its plain fields instead", t)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if tagOf(t) != tagJSON {
		return nil
	}
	if h := halfMarshaler(t, map[reflect.Type]bool{}); h != nil {
		if h == t {
			return fmt.Errorf("%v has MarshalJSON or MarshalText without the matching unmarshaler: its values would not decode", t)
		}
		return fmt.Errorf("%v holds %v, which has MarshalJSON or MarshalText without the matching unmarshaler: its values would not decode", t, h)
	}
	return nil
}

// halfMarshaler returns a type that JSON-encoding t reaches (t itself, or
// a struct field's, element's, map key's or value's type, at any depth)
// whose MarshalJSON or MarshalText has no matching unmarshaler, or nil:
// encoding/json would call the marshaler and could not undo it. seen
// guards against recursive types.
func halfMarshaler(t reflect.Type, seen map[reflect.Type]bool) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if seen[t] {
		return nil
	}
	seen[t] = true
	pt := reflect.PointerTo(t)
	switch {
	case pt.Implements(jsonMarshalerType):
		if !pt.Implements(jsonUnmarshalerType) {
			return t
		}
		return nil // its own encoding
	case pt.Implements(textMarshalerType):
		if !pt.Implements(textUnmarshalerType) {
			return t
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return halfMarshaler(t.Elem(), seen)
	case reflect.Map:
		// A key of string kind is written as it is; others through
		// MarshalText, which decoding needs UnmarshalText to undo.
		if k := t.Key(); k.Kind() != reflect.String {
			if h := halfMarshaler(k, seen); h != nil {
				return h
			}
		}
		return halfMarshaler(t.Elem(), seen)
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous || f.Tag.Get("json") == "-" {
				continue // encoding/json skips it
			}
			if h := halfMarshaler(f.Type, seen); h != nil {
				return h
			}
		}
	}
	return nil
}

// holdsSecret reports whether values of t hold an Encrypted value or a
// BlindIndex, at any depth. seen guards against recursive types.
func holdsSecret(t reflect.Type, seen map[reflect.Type]bool) bool {
	if t == blindIndexType || reflect.PointerTo(t).Implements(valueFieldType) {
		return true
	}
	if seen[t] {
		return false
	}
	if seen == nil {
		seen = map[reflect.Type]bool{}
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return holdsSecret(t.Elem(), seen)
	case reflect.Map:
		return holdsSecret(t.Key(), seen) || holdsSecret(t.Elem(), seen)
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if holdsSecret(t.Field(i).Type, seen) {
				return true
			}
		}
	}
	return false
}

// appendTyped appends the tagged encoding of *v.
func appendTyped[T any](dst []byte, v *T) ([]byte, error) {
	switch p := any(v).(type) {
	case *string:
		return append(append(dst, tagString), *p...), nil
	case *[]byte:
		return append(append(dst, tagBytes), *p...), nil
	case *int64:
		return binary.BigEndian.AppendUint64(append(dst, tagInt), uint64(*p)), nil
	case *time.Time:
		return p.AppendBinary(append(dst, tagTime))
	}
	return appendReflect(dst, reflect.ValueOf(v).Elem())
}

// appendReflect is appendTyped for the types without a fast path.
func appendReflect(dst []byte, rv reflect.Value) ([]byte, error) {
	t := rv.Type()
	tag := tagOf(t)
	switch tag {
	case tagPointer:
		if rv.IsNil() {
			return append(dst, tagNil), nil
		}
		return appendReflect(append(dst, tagPointer), rv.Elem())
	case tagTime:
		return rv.Interface().(time.Time).AppendBinary(append(dst, tagTime))
	case tagBinary:
		// rv is addressable (reached through a pointer): its pointer has
		// the value and the pointer receiver methods.
		b, err := rv.Addr().Interface().(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			return dst, encodeErr(t, "MarshalBinary")
		}
		return append(append(dst, tag), b...), nil
	case tagText:
		b, err := rv.Addr().Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return dst, encodeErr(t, "MarshalText")
		}
		return append(append(dst, tag), b...), nil
	case tagString:
		return append(append(dst, tag), rv.String()...), nil
	case tagBool:
		b := byte(0)
		if rv.Bool() {
			b = 1
		}
		return append(dst, tag, b), nil
	case tagInt:
		return binary.BigEndian.AppendUint64(append(dst, tag), uint64(rv.Int())), nil
	case tagUint:
		return binary.BigEndian.AppendUint64(append(dst, tag), rv.Uint()), nil
	case tagFloat:
		return binary.BigEndian.AppendUint64(append(dst, tag), math.Float64bits(rv.Float())), nil
	case tagBytes:
		return append(append(dst, tag), rv.Bytes()...), nil
	case tagJSON:
		// Through its address, so that json.Marshal calls pointer
		// receiver MarshalJSON and MarshalText methods, as
		// json.Unmarshal calls the unmarshalers.
		b, err := json.Marshal(rv.Addr().Interface())
		if err != nil {
			return dst, encodeErr(t, "json.Marshal")
		}
		return append(append(dst, tag), b...), nil
	}
	return dst, fmt.Errorf("fields: %v cannot be encrypted", t)
}

// decodeTyped decodes a tagged encoding into *v, failing with
// ErrTypeMismatch when the tag is not v's type's. It never keeps a
// reference to pt.
func decodeTyped[T any](pt []byte, v *T) error {
	switch p := any(v).(type) {
	case *string:
		if len(pt) > 0 && pt[0] == tagString {
			*p = string(pt[1:])
			return nil
		}
	case *[]byte:
		if len(pt) > 0 && pt[0] == tagBytes {
			*p = append([]byte{}, pt[1:]...)
			return nil
		}
	}
	return decodeReflect(pt, reflect.ValueOf(v).Elem())
}

func decodeReflect(pt []byte, rv reflect.Value) error {
	t := rv.Type()
	want := tagOf(t)
	if len(pt) == 0 {
		return mismatch(t, 0)
	}
	tag, body := pt[0], pt[1:]
	// JSON is also accepted for a type that earlier releases encoded as
	// JSON (tagRule).
	if tag != want && !(want == tagPointer && tag == tagNil) && !(tag == tagJSON && tagRule(t, false) == tagJSON) {
		return mismatch(t, tag)
	}
	fixed := func() (uint64, error) {
		if len(body) != 8 {
			return 0, fmt.Errorf("%w: %v: %d bytes", ErrTypeMismatch, t, len(body))
		}
		return binary.BigEndian.Uint64(body), nil
	}
	switch tag {
	case tagNil:
		rv.SetZero()
	case tagPointer:
		elem := reflect.New(t.Elem())
		if err := decodeReflect(body, elem.Elem()); err != nil {
			return err
		}
		rv.Set(elem)
	case tagTime:
		var tm time.Time
		if err := tm.UnmarshalBinary(body); err != nil {
			return fmt.Errorf("%w: %v", ErrTypeMismatch, t)
		}
		rv.Set(reflect.ValueOf(tm))
	case tagBinary:
		if err := rv.Addr().Interface().(encoding.BinaryUnmarshaler).UnmarshalBinary(body); err != nil {
			return decodeErr(t, "UnmarshalBinary")
		}
	case tagText:
		if err := rv.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText(body); err != nil {
			return decodeErr(t, "UnmarshalText")
		}
	case tagString:
		rv.SetString(string(body))
	case tagBool:
		if len(body) != 1 || body[0] > 1 {
			return mismatch(t, tag)
		}
		rv.SetBool(body[0] == 1)
	case tagInt:
		u, err := fixed()
		if err != nil {
			return err
		}
		if rv.OverflowInt(int64(u)) {
			return fmt.Errorf("%w: value overflows %v", ErrTypeMismatch, t)
		}
		rv.SetInt(int64(u))
	case tagUint:
		u, err := fixed()
		if err != nil {
			return err
		}
		if rv.OverflowUint(u) {
			return fmt.Errorf("%w: value overflows %v", ErrTypeMismatch, t)
		}
		rv.SetUint(u)
	case tagFloat:
		u, err := fixed()
		if err != nil {
			return err
		}
		rv.SetFloat(math.Float64frombits(u))
	case tagBytes:
		rv.SetBytes(append([]byte{}, body...))
	case tagJSON:
		if err := json.Unmarshal(body, rv.Addr().Interface()); err != nil {
			return jsonDecodeErr(t, err)
		}
	default:
		return mismatch(t, tag)
	}
	return nil
}

// encodeErr and decodeErr report a failure of a type's own (third-party)
// marshaling code. They drop its error, whose text may quote the value,
// and keep only the type and the method.
func encodeErr(t reflect.Type, method string) error {
	return fmt.Errorf("%w: %v: %s failed", ErrEncode, t, method)
}

func decodeErr(t reflect.Type, method string) error {
	return fmt.Errorf("%w: %v: %s failed", ErrTypeMismatch, t, method)
}

// jsonDecodeErr describes a json.Unmarshal failure by encoding/json's own
// syntax and type errors (position and field, never a value); any other
// error comes from a type's UnmarshalJSON, and its text is dropped.
func jsonDecodeErr(t reflect.Type, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if errors.As(err, &syn) || errors.As(err, &typ) {
		return fmt.Errorf("%w: %v: %s", ErrTypeMismatch, t, jsonerr.Describe(err))
	}
	return decodeErr(t, "UnmarshalJSON")
}

func mismatch(t reflect.Type, tag byte) error {
	return fmt.Errorf("%w: a %q-tagged value does not decode into %v", ErrTypeMismatch, tag, t)
}

// appendText appends the text that blind indexes are computed over: the
// string itself for strings and byte slices, decimal for numbers,
// "true"/"false", RFC 3339 in UTC with nanoseconds for times, MarshalText
// for text marshalers, JSON otherwise.
func appendText[T any](dst []byte, v *T) ([]byte, error) {
	switch p := any(v).(type) {
	case *string:
		return append(dst, *p...), nil
	case *[]byte:
		return append(dst, *p...), nil
	case *time.Time:
		return p.UTC().AppendFormat(dst, time.RFC3339Nano), nil
	}
	return appendTextReflect(dst, reflect.ValueOf(v).Elem())
}

func appendTextReflect(dst []byte, rv reflect.Value) ([]byte, error) {
	t := rv.Type()
	if t.Kind() == reflect.Pointer {
		// Before any method: *X has X's MarshalText, which a nil *X
		// cannot call.
		if rv.IsNil() {
			return dst, nil
		}
		return appendTextReflect(dst, rv.Elem())
	}
	switch {
	case t == timeType:
		return rv.Interface().(time.Time).UTC().AppendFormat(dst, time.RFC3339Nano), nil
	case t.Implements(textMarshalerType):
		b, err := rv.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return dst, encodeErr(t, "MarshalText")
		}
		return append(dst, b...), nil
	case tagOf(t) == tagText && rv.CanAddr():
		// Pointer receiver text methods, which Seal encodes with.
		b, err := rv.Addr().Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return dst, encodeErr(t, "MarshalText")
		}
		return append(dst, b...), nil
	}
	switch t.Kind() {
	case reflect.String:
		return append(dst, rv.String()...), nil
	case reflect.Bool:
		return strconv.AppendBool(dst, rv.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.AppendInt(dst, rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.AppendUint(dst, rv.Uint(), 10), nil
	case reflect.Float32, reflect.Float64:
		return strconv.AppendFloat(dst, rv.Float(), 'g', -1, 64), nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return append(dst, rv.Bytes()...), nil
		}
	}
	b, err := json.Marshal(rv.Interface())
	if err != nil {
		return dst, encodeErr(t, "json.Marshal")
	}
	return append(dst, b...), nil
}

// decodeLegacy decodes a legacy plaintext (migration mode): raw bytes read
// from a text or binary column, or a value the driver returned (an
// int64, a float64, a bool, a time.Time...).
func decodeLegacy[T any](raw []byte, legacy any, v *T) error {
	rv := reflect.ValueOf(v).Elem()
	if legacy != nil {
		return decodeLegacyValue(reflect.ValueOf(legacy), rv)
	}
	return decodeLegacyText(raw, rv)
}

// decodeLegacyValue stores a driver's value lv in rv. A value of rv's own
// type is stored as it is; a number goes into a number only when it fits
// exactly (no wrap-around, no truncated fraction); anything else is
// parsed from its text (integers in decimal), so that an INTEGER column
// read into a string field gives "12345", never the rune U+3039.
func decodeLegacyValue(lv reflect.Value, rv reflect.Value) error {
	t := rv.Type()
	fail := func() error {
		return fmt.Errorf("%w: a legacy %v does not fit %v", ErrTypeMismatch, lv.Type(), t)
	}
	switch {
	case lv.Type() == t:
		rv.Set(lv)
		return nil
	case t.Kind() == reflect.Pointer:
		elem := reflect.New(t.Elem())
		if err := decodeLegacyValue(lv, elem.Elem()); err != nil {
			return err
		}
		rv.Set(elem)
		return nil
	case t == timeType || reflect.PointerTo(t).Implements(textUnmarshalerType):
		// The type parses its own text.
	case isInt(lv.Kind()) && isInt(t.Kind()):
		if rv.OverflowInt(lv.Int()) {
			return fail()
		}
		rv.SetInt(lv.Int())
		return nil
	case isInt(lv.Kind()) && isUint(t.Kind()):
		if lv.Int() < 0 || rv.OverflowUint(uint64(lv.Int())) {
			return fail()
		}
		rv.SetUint(uint64(lv.Int()))
		return nil
	case isUint(lv.Kind()) && isUint(t.Kind()):
		if rv.OverflowUint(lv.Uint()) {
			return fail()
		}
		rv.SetUint(lv.Uint())
		return nil
	case isUint(lv.Kind()) && isInt(t.Kind()):
		if lv.Uint() > math.MaxInt64 || rv.OverflowInt(int64(lv.Uint())) {
			return fail()
		}
		rv.SetInt(int64(lv.Uint()))
		return nil
	case isFloat(lv.Kind()) && isFloat(t.Kind()):
		f := lv.Float()
		if t.Kind() == reflect.Float32 && float64(float32(f)) != f && !math.IsNaN(f) {
			return fail() // out of range, or not exact in 32 bits
		}
		rv.SetFloat(f)
		return nil
	case isFloat(lv.Kind()) && (isInt(t.Kind()) || isUint(t.Kind())):
		// Parsed from its decimal text: only a whole number in range
		// parses (3.9 is not an int, 1e15 is).
		return decodeLegacyText(strconv.AppendFloat(nil, lv.Float(), 'f', -1, 64), rv)
	case (isInt(lv.Kind()) || isUint(lv.Kind())) && isFloat(t.Kind()):
		// Only if the float holds the integer exactly.
		s := legacyText(lv)
		f, err := strconv.ParseFloat(string(s), t.Bits())
		if err != nil || strconv.FormatFloat(f, 'f', -1, t.Bits()) != string(s) {
			return fail()
		}
		rv.SetFloat(f)
		return nil
	}
	return decodeLegacyText(legacyText(lv), rv)
}

// legacyText is the text of a driver's value: decimal for numbers,
// RFC 3339 for times, fmt's form otherwise (true, false).
func legacyText(lv reflect.Value) []byte {
	switch {
	case lv.Type() == timeType:
		return lv.Interface().(time.Time).AppendFormat(nil, time.RFC3339Nano)
	case isInt(lv.Kind()):
		return strconv.AppendInt(nil, lv.Int(), 10)
	case isUint(lv.Kind()):
		return strconv.AppendUint(nil, lv.Uint(), 10)
	case isFloat(lv.Kind()):
		return strconv.AppendFloat(nil, lv.Float(), 'g', -1, lv.Type().Bits())
	}
	return []byte(fmt.Sprint(lv.Interface()))
}

func isInt(k reflect.Kind) bool   { return reflect.Int <= k && k <= reflect.Int64 }
func isUint(k reflect.Kind) bool  { return reflect.Uint <= k && k <= reflect.Uintptr }
func isFloat(k reflect.Kind) bool { return k == reflect.Float32 || k == reflect.Float64 }

func decodeLegacyText(raw []byte, rv reflect.Value) error {
	t := rv.Type()
	s := string(raw)
	fail := func(error) error {
		return fmt.Errorf("%w: legacy plaintext does not parse as %v", ErrTypeMismatch, t)
	}
	switch {
	case t == timeType:
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05", "2006-01-02"} {
			if tm, err := time.Parse(layout, s); err == nil {
				rv.Set(reflect.ValueOf(tm))
				return nil
			}
		}
		return fail(nil)
	case reflect.PointerTo(t).Implements(textUnmarshalerType):
		if err := rv.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText(raw); err != nil {
			return fail(err)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.String:
		rv.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fail(err)
		}
		rv.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, t.Bits())
		if err != nil {
			return fail(err)
		}
		rv.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, t.Bits())
		if err != nil {
			return fail(err)
		}
		rv.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), t.Bits())
		if err != nil {
			return fail(err)
		}
		rv.SetFloat(f)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			rv.SetBytes(append([]byte{}, raw...))
			return nil
		}
		if err := json.Unmarshal(raw, rv.Addr().Interface()); err != nil {
			return fail(err)
		}
	case reflect.Pointer:
		elem := reflect.New(t.Elem())
		if err := decodeLegacyText(raw, elem.Elem()); err != nil {
			return err
		}
		rv.Set(elem)
	default:
		if err := json.Unmarshal(raw, rv.Addr().Interface()); err != nil {
			return fail(err)
		}
	}
	return nil
}
