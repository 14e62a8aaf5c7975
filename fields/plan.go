package fields

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unsafe"
)

// A plan is what the Codec knows about a struct type, built once from its
// tags and cached, as encoding/json does.
type plan struct {
	typ     reflect.Type
	table   string
	id      accessor
	scope   accessor
	fields  []fieldPlan
	indexes []indexPlan
}

// accessor reads a string from a record: a field (by index path) or a
// method.
type accessor struct {
	path   []int
	method string
	name   string // the Go field or method name, for errors
	// plain is set for a string field of the record itself (id and
	// scope fields are), read at offset without reflection or conversion.
	plain  bool
	offset uintptr
}

// newAccessor returns the accessor of field sf at path.
func newAccessor(sf reflect.StructField, path []int, name string) accessor {
	t := sf.Type
	plain := len(path) == 1 && t.Kind() == reflect.String && !t.Implements(textMarshalerType) && !t.Implements(stringerType)
	return accessor{path: path, name: name, plain: plain, offset: sf.Offset}
}

type fieldPlan struct {
	path []int
	// offset is the field's offset in the record: the walk descends only
	// into struct values, never through pointers, so it is a sum of
	// field offsets. at turns the field's address into its valueField
	// without reflection (a method value of the field type's zero value).
	offset        uintptr
	at            func(unsafe.Pointer) valueField
	name          string // Go path, e.g. "Contact.Phone"
	column        string
	deterministic bool
	migrate       bool
}

type indexPlan struct {
	path        []int
	offset      uintptr // as fieldPlan.offset
	name        string
	column      string
	sources     []int // into plan.fields
	normalizers []normalizer
	bits        int
	text        bool
	scope       *accessor // nil: the record's scope

	// chains holds the parsed normalizer chains: one for every source,
	// or one per source (transform.go).
	chains []normChain
	// params describes the index definition (bits and chains) that new
	// index key versions bind (keys.IndexKey.For).
	params string
}

var (
	valueFieldType = reflect.TypeFor[valueField]()
	blindIndexType = reflect.TypeFor[BlindIndex]()
	plans          sync.Map // reflect.Type -> *planResult
)

type planResult struct {
	p   *plan
	err error
}

// planFor returns the cached plan of struct type t, building it on first
// use. A type whose tags are wrong always fails with the same *TagError.
func planFor(t reflect.Type) (*plan, error) {
	if r, ok := plans.Load(t); ok {
		r := r.(*planResult)
		return r.p, r.err
	}
	p, err := buildPlan(t)
	r, _ := plans.LoadOrStore(t, &planResult{p, err})
	return r.(*planResult).p, r.(*planResult).err
}

// tag is a parsed `phi:"..."` tag.
type tag struct {
	kind string // id, scope, encrypt, index
	opts map[string]string
}

func parseTag(s string) (tag, error) {
	parts := strings.Split(s, ",")
	t := tag{kind: strings.TrimSpace(parts[0]), opts: map[string]string{}}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if k == "" {
			return t, fmt.Errorf("empty option")
		}
		if _, dup := t.opts[k]; dup {
			return t, fmt.Errorf("option %q given twice", k)
		}
		t.opts[k] = v
	}
	return t, nil
}

// allowed lists the options of each tag kind, and whether they take a
// value.
var allowed = map[string]map[string]bool{
	"id":      {"table": true},
	"scope":   {},
	"encrypt": {"column": true, "deterministic": false, "migrate": false},
	"index":   {"of": true, "column": true, "normalize": true, "bits": true, "text": false, "scope": true},
}

func buildPlan(t reflect.Type) (*plan, error) {
	if t.Kind() != reflect.Struct {
		return nil, &TagError{Type: t.String(), Reason: "not a struct"}
	}
	p := &plan{typ: t}
	tagErr := func(field, tg, reason string) error {
		return &TagError{Type: t.String(), Field: field, Tag: tg, Reason: reason}
	}
	type pendingIndex struct {
		ip   indexPlan
		of   string
		norm string
		scp  string
		tag  string
	}
	var pending []pendingIndex
	var walk func(st reflect.Type, path []int, prefix, colPrefix string, top bool) error
	walk = func(st reflect.Type, path []int, prefix, colPrefix string, top bool) error {
		for i := 0; i < st.NumField(); i++ {
			sf := st.Field(i)
			fpath := append(append([]int{}, path...), i)
			name := prefix + sf.Name
			raw, hasTag := sf.Tag.Lookup("phi")
			if raw == "-" {
				continue
			}
			isValue := reflect.PointerTo(sf.Type).Implements(valueFieldType)
			if !hasTag {
				switch {
				case isValue || sf.Type == blindIndexType:
					return tagErr(name, "", "an encrypted or index field needs a phi tag")
				case sf.Type.Kind() == reflect.Pointer && (reflect.PointerTo(sf.Type.Elem()).Implements(valueFieldType) || sf.Type.Elem() == blindIndexType):
					return tagErr(name, "", "use a value, not a pointer, for an encrypted or index field")
				case sf.Type.Kind() == reflect.Struct && !sf.IsExported() && hasPhiTags(sf.Type):
					// reflect cannot hand out its fields' addresses.
					return tagErr(name, "", "an unexported struct field holds phi-tagged fields: export it")
				case sf.Type.Kind() != reflect.Struct && holdsPHI(sf.Type, nil):
					// The walk descends into struct values only: Seal
					// would leave these fields plaintext.
					return tagErr(name, "", fmt.Sprintf("%v holds phi-tagged, encrypted or index fields that Seal never reaches (it descends into struct values only): hold the struct by value", sf.Type))
				case sf.Type.Kind() == reflect.Struct && sf.IsExported() && sf.Type != timeType:
					col := colPrefix + columnName(sf) + "."
					if sf.Anonymous {
						col = colPrefix
					}
					if err := walk(sf.Type, fpath, name+".", col, false); err != nil {
						return err
					}
				}
				continue
			}
			if !sf.IsExported() {
				return tagErr(name, raw, "field is not exported")
			}
			tg, err := parseTag(raw)
			if err != nil {
				return tagErr(name, raw, err.Error())
			}
			opts, ok := allowed[tg.kind]
			if !ok {
				return tagErr(name, raw, fmt.Sprintf("unknown kind %q (want id, scope, encrypt or index)", tg.kind))
			}
			for k, v := range tg.opts {
				takesValue, known := opts[k]
				switch {
				case !known:
					return tagErr(name, raw, fmt.Sprintf("unknown option %q for %s", k, tg.kind))
				case takesValue && v == "":
					return tagErr(name, raw, fmt.Sprintf("option %q needs a value", k))
				case !takesValue && v != "":
					return tagErr(name, raw, fmt.Sprintf("option %q takes no value", k))
				}
			}
			switch tg.kind {
			case "id", "scope":
				if !top {
					return tagErr(name, raw, tg.kind+" must be a field of the record itself, not of a nested struct")
				}
				if !stringable(sf.Type) {
					return tagErr(name, raw, fmt.Sprintf("%s field of type %v: want a string, []byte, integer, or a type with String or MarshalText", tg.kind, sf.Type))
				}
				acc := &p.id
				if tg.kind == "scope" {
					acc = &p.scope
				}
				if acc.name != "" {
					return tagErr(name, raw, fmt.Sprintf("a second %s field (the first is %s)", tg.kind, acc.name))
				}
				*acc = newAccessor(sf, fpath, name)
				if table, ok := tg.opts["table"]; ok {
					p.table = table
				}
			case "encrypt":
				if !isValue {
					return tagErr(name, raw, fmt.Sprintf("encrypt needs a fields.Encrypted type, not %v", sf.Type))
				}
				proto := reflect.New(sf.Type).Interface().(valueField)
				elem := proto.elemType()
				if err := checkType(elem); err != nil {
					return tagErr(name, raw, err.Error())
				}
				col := colPrefix + columnName(sf)
				if c, ok := tg.opts["column"]; ok {
					col = colPrefix + c
				}
				_, det := tg.opts["deterministic"]
				_, mig := tg.opts["migrate"]
				p.fields = append(p.fields, fieldPlan{path: fpath, offset: offsetOf(t, fpath), at: proto.fieldAt,
					name: name, column: col, deterministic: det, migrate: mig})
			case "index":
				if sf.Type != blindIndexType {
					return tagErr(name, raw, fmt.Sprintf("index needs a fields.BlindIndex, not %v", sf.Type))
				}
				col := colPrefix + columnName(sf)
				if c, ok := tg.opts["column"]; ok {
					col = colPrefix + c
				}
				_, text := tg.opts["text"]
				pi := pendingIndex{ip: indexPlan{path: fpath, offset: offsetOf(t, fpath), name: name, column: col, text: text}, of: tg.opts["of"], norm: tg.opts["normalize"], scp: tg.opts["scope"], tag: raw}
				if pi.of == "" {
					return tagErr(name, raw, "index needs of=Field or of=Field1+Field2")
				}
				bits, ok := tg.opts["bits"]
				if !ok {
					return tagErr(name, raw, "index needs bits=N (see SuggestIndexBits)")
				}
				n, err := strconv.Atoi(bits)
				if err != nil || n < 1 || n > MaxIndexBits {
					return tagErr(name, raw, fmt.Sprintf("bits must be 1 to %d", MaxIndexBits))
				}
				pi.ip.bits = n
				pending = append(pending, pi)
			}
		}
		return nil
	}
	if err := walk(t, nil, "", "", true); err != nil {
		return nil, err
	}

	// The table and scope may come from methods instead of tags. A type
	// that names no table is checked all the same: its plan is returned
	// with errNoTable, for a Codec that binds it to a table (BindTable).
	if p.table == "" {
		m, ok, err := stringMethod(t, "PHITable")
		if err != nil {
			return nil, tagErr("PHITable", "", err.Error())
		}
		if ok {
			p.table = m
		}
	}
	if p.id.name == "" {
		return nil, tagErr("", "", `no record id: tag one field phi:"id"`)
	}
	if p.scope.name == "" {
		ok, err := hasStringMethod(t, "PHIScope")
		switch {
		case err != nil:
			return nil, tagErr("PHIScope", "", err.Error())
		case ok:
			p.scope = accessor{method: "PHIScope", name: "PHIScope()"}
		default:
			return nil, tagErr("", "", `no scope: tag one field phi:"scope", or add a PHIScope() string method`)
		}
	}
	if len(p.fields) == 0 {
		return nil, tagErr("", "", `no field is tagged phi:"encrypt"`)
	}
	seen := map[string]string{}
	for _, f := range p.fields {
		if other, dup := seen[f.column]; dup {
			return nil, tagErr(f.name, "", fmt.Sprintf("column %q is also %s's", f.column, other))
		}
		seen[f.column] = f.name
	}

	for _, pi := range pending {
		ip := pi.ip
		if other, dup := seen[ip.column]; dup {
			return nil, tagErr(ip.name, pi.tag, fmt.Sprintf("column %q is also %s's", ip.column, other))
		}
		seen[ip.column] = ip.name
		for _, src := range strings.Split(pi.of, "+") {
			j := -1
			for k, f := range p.fields {
				if f.name == src {
					j = k
				}
			}
			if j < 0 {
				return nil, tagErr(ip.name, pi.tag, fmt.Sprintf("of=%s: no encrypted field %q", pi.of, src))
			}
			ip.sources = append(ip.sources, j)
		}
		if err := ip.setNormalize(t, p, pi.norm); err != nil {
			return nil, tagErr(ip.name, pi.tag, err.Error())
		}
		ip.params = indexParams(ip.bits, strings.Split(ip.chainsString(), "|"))
		if pi.scp != "" {
			f, ok := t.FieldByName(pi.scp)
			if !ok || len(f.Index) != 1 || !stringable(f.Type) {
				return nil, tagErr(ip.name, pi.tag, fmt.Sprintf("scope=%s: no top-level string field %q", pi.scp, pi.scp))
			}
			a := newAccessor(f, f.Index, pi.scp)
			ip.scope = &a
		}
		p.indexes = append(p.indexes, ip)
	}
	if p.table == "" {
		return p, tagErr("", "", noTableReason)
	}
	return p, nil
}

// offsetOf returns the offset in struct type t of the field at path, which
// goes through struct values only.
func offsetOf(t reflect.Type, path []int) uintptr {
	var off uintptr
	for _, i := range path {
		sf := t.Field(i)
		off += sf.Offset
		t = sf.Type
	}
	return off
}

// recordBase returns the address of the record rv, a struct value that is
// addressable (reached through a pointer or a slice). UnsafeAddr reads the
// address the value holds, where Addr would first look up the pointer type.
func recordBase(rv reflect.Value) unsafe.Pointer { return unsafe.Pointer(rv.UnsafeAddr()) }

// field returns the field f of the record at base.
func (f *fieldPlan) field(base unsafe.Pointer) valueField { return f.at(unsafe.Add(base, f.offset)) }

// index returns the blind index ip of the record at base.
func (ip *indexPlan) index(base unsafe.Pointer) *BlindIndex {
	return (*BlindIndex)(unsafe.Add(base, ip.offset))
}

// hasPhiTags reports whether struct type t has phi-tagged fields, at any
// depth.
func hasPhiTags(t reflect.Type) bool {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if _, ok := sf.Tag.Lookup("phi"); ok {
			return true
		}
		if sf.Type.Kind() == reflect.Struct && sf.Type != t && hasPhiTags(sf.Type) {
			return true
		}
	}
	return false
}

// holdsPHI reports whether values of t hold, at any depth and through
// pointers, slices, arrays and maps, an Encrypted value, a BlindIndex or
// a phi-tagged field. seen guards against recursive types.
func holdsPHI(t reflect.Type, seen map[reflect.Type]bool) bool {
	for {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array:
			t = t.Elem()
			continue
		case reflect.Map:
			if holdsPHI(t.Key(), seen) {
				return true
			}
			t = t.Elem()
			continue
		}
		break
	}
	if t == blindIndexType || reflect.PointerTo(t).Implements(valueFieldType) {
		return true
	}
	if t.Kind() != reflect.Struct || t == timeType || seen[t] {
		return false
	}
	if seen == nil {
		seen = map[reflect.Type]bool{}
	}
	seen[t] = true
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if tg, ok := sf.Tag.Lookup("phi"); (ok && tg != "-") || holdsPHI(sf.Type, seen) {
			return true
		}
	}
	return false
}

// columnName is a field's default column: snake_case of its name.
func columnName(sf reflect.StructField) string {
	var b strings.Builder
	rs := []rune(sf.Name)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]))) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

var (
	stringerType = reflect.TypeFor[fmt.Stringer]()
)

// stringable reports whether a record id or scope of type t can be read
// as a string.
func stringable(t reflect.Type) bool {
	if t.Implements(textMarshalerType) || t.Implements(stringerType) {
		return true
	}
	switch t.Kind() {
	case reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.Uint8
	}
	return false
}

// asString reads a record id or scope. A nil pointer or interface is
// errNilID, never a method call on nil; the type's own MarshalText error,
// which may quote the id, is replaced by one naming only the type.
func asString(v reflect.Value) (string, error) {
	t := v.Type()
	switch t.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return "", errNilID
		}
		if t.Kind() == reflect.Interface {
			// A fmt.Stringer or encoding.TextMarshaler interface: read
			// the value it holds, which may be a nil pointer.
			return asString(v.Elem())
		}
	}
	switch {
	case t.Implements(textMarshalerType):
		b, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return "", encodeErr(t, "MarshalText")
		}
		return string(b), nil
	case t.Implements(stringerType):
		return v.Interface().(fmt.Stringer).String(), nil
	}
	switch t.Kind() {
	case reflect.String:
		return v.String(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10), nil
	}
	return string(v.Bytes()), nil
}

// errNilID is asString's error for a nil id or scope; read turns it into
// ErrMissingRecordID naming the field.
var errNilID = errors.New("nil")

// read returns the accessor's string for the record rv (a struct value
// that is addressable). A nil id or scope is ErrMissingRecordID.
func (a *accessor) read(rv reflect.Value) (string, error) {
	switch {
	case a.plain:
		return *(*string)(unsafe.Add(recordBase(rv), a.offset)), nil
	case a.method != "":
		return rv.Addr().MethodByName(a.method).Call(nil)[0].String(), nil
	}
	s, err := asString(rv.FieldByIndex(a.path))
	if err == errNilID {
		return "", fmt.Errorf("%w (%s is nil)", ErrMissingRecordID, a.name)
	}
	return s, err
}

// stringMethod calls the method func() string of t's zero value (value
// or pointer receiver) named name, if t has one; a method of that name
// with another signature is an error.
func stringMethod(t reflect.Type, name string) (string, bool, error) {
	ok, err := hasStringMethod(t, name)
	if !ok {
		return "", false, err
	}
	return reflect.New(t).MethodByName(name).Call(nil)[0].String(), true, nil
}

// hasStringMethod reports whether t has a method func() string named name
// (value or pointer receiver). A method of that name with another
// signature is an error, never a method ignored or called wrongly: a
// PHIScope() int would put every record in one scope.
func hasStringMethod(t reflect.Type, name string) (bool, error) {
	m, ok := reflect.PointerTo(t).MethodByName(name)
	if !ok {
		return false, nil
	}
	mt := m.Type // the receiver is its first argument
	if mt.NumIn() != 1 || mt.NumOut() != 1 || mt.Out(0).Kind() != reflect.String {
		return false, fmt.Errorf("method %s is %v: want func() string", name, methodSig(mt))
	}
	return true, nil
}

// methodSig is the signature of method type mt without its receiver.
func methodSig(mt reflect.Type) string {
	in := make([]reflect.Type, 0, mt.NumIn())
	for i := 1; i < mt.NumIn(); i++ {
		in = append(in, mt.In(i))
	}
	out := make([]reflect.Type, mt.NumOut())
	for i := range out {
		out[i] = mt.Out(i)
	}
	return reflect.FuncOf(in, out, mt.IsVariadic()).String()
}
