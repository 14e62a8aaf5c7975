package fhir

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits of the JSON scanner.
const (
	// MaxDocumentSize is the largest document, in bytes, that Encrypt and
	// Decrypt accept: 1 GiB minus one byte (offsets are 32-bit).
	MaxDocumentSize = 1<<30 - 1
	// MaxDepth is the deepest nesting of objects and arrays a document may
	// have. FHIR resources nest about 10 levels, Bundles about 15.
	MaxDepth = 128
)

// SyntaxError is a malformed JSON document. It gives the byte offset and
// what was wrong, never the document's bytes.
type SyntaxError struct {
	Offset int64
	Reason string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("fhir: invalid JSON at offset %d: %s", e.Offset, e.Reason)
}

// Unwrap returns ErrSyntax.
func (e *SyntaxError) Unwrap() error { return ErrSyntax }

// kind is the type of a JSON value.
type kind uint8

const (
	kindNull kind = iota + 1
	kindFalse
	kindTrue
	kindNumber
	kindString
	kindArray
	kindObject
)

// none is the index of no node.
const none = -1

// node is one JSON value of a parsed document: its position in the source
// and its links in the tree. Nodes are kept in one slice (tree.nodes) in
// document order, so a parse allocates nothing once the slice is grown.
type node struct {
	start, end       int32 // the value's bytes: src[start:end] (quotes included)
	keyStart, keyEnd int32 // for an object member, its key's bytes between the quotes
	parent           int32
	first, next      int32 // first child and next sibling, or none
	pos              int32 // index in the parent array, or member number in the parent object
	kind             kind
	esc              bool // a string value with escape sequences
	keyEsc           bool // a member key with escape sequences
}

// tree is a parsed JSON document. Node 0 is the top-level value.
type tree struct {
	src   []byte
	nodes []node
	scans int // members visited by member since parse: tests bound it
}

// parse parses src, which must hold exactly one JSON value (RFC 8259, UTF-8)
// with optional white space around it. Object keys must be distinct:
// parsers disagree on which of two equal keys wins, and FHIR forbids them.
func (t *tree) parse(src []byte) error {
	t.src = src
	t.nodes = t.nodes[:0]
	t.scans = 0
	if len(src) > MaxDocumentSize {
		return &SyntaxError{Offset: 0, Reason: fmt.Sprintf("document larger than %d bytes", MaxDocumentSize)}
	}
	p := parser{t: t, src: src}
	p.space()
	if _, err := p.value(none, 0, 0); err != nil {
		return err
	}
	p.space()
	if p.i != len(src) {
		return p.fail("data after the top-level value")
	}
	return nil
}

type parser struct {
	t    *tree
	src  []byte
	i    int
	keys []int32 // members of the objects being parsed, for the duplicate check
}

func (p *parser) fail(reason string) error {
	return &SyntaxError{Offset: int64(p.i), Reason: reason}
}

func (p *parser) space() {
	for p.i < len(p.src) {
		switch p.src[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) add(n node) int32 {
	p.t.nodes = append(p.t.nodes, n)
	return int32(len(p.t.nodes) - 1)
}

// value parses one value at p.i and returns its node.
func (p *parser) value(parent, pos int32, depth int) (int32, error) {
	if p.i >= len(p.src) {
		return none, p.fail("unexpected end of input")
	}
	start := int32(p.i)
	n := node{start: start, parent: parent, first: none, next: none, pos: pos}
	switch c := p.src[p.i]; {
	case c == '{':
		return p.object(n, depth+1)
	case c == '[':
		return p.array(n, depth+1)
	case c == '"':
		esc, err := p.str()
		if err != nil {
			return none, err
		}
		n.kind, n.esc = kindString, esc
	case c == '-' || ('0' <= c && c <= '9'):
		if err := p.number(); err != nil {
			return none, err
		}
		n.kind = kindNumber
	case c == 't':
		if err := p.literal("true"); err != nil {
			return none, err
		}
		n.kind = kindTrue
	case c == 'f':
		if err := p.literal("false"); err != nil {
			return none, err
		}
		n.kind = kindFalse
	case c == 'n':
		if err := p.literal("null"); err != nil {
			return none, err
		}
		n.kind = kindNull
	default:
		return none, p.fail("expected a value")
	}
	n.end = int32(p.i)
	return p.add(n), nil
}

func (p *parser) literal(lit string) error {
	if len(p.src)-p.i < len(lit) || string(p.src[p.i:p.i+len(lit)]) != lit {
		return p.fail("invalid literal")
	}
	p.i += len(lit)
	return nil
}

func (p *parser) object(n node, depth int) (int32, error) {
	if depth > MaxDepth {
		return none, p.fail(fmt.Sprintf("nesting deeper than %d", MaxDepth))
	}
	n.kind = kindObject
	self := p.add(n)
	p.i++ // {
	p.space()
	if p.i < len(p.src) && p.src[p.i] == '}' {
		p.i++
		p.t.nodes[self].end = int32(p.i)
		return self, nil
	}
	mark := len(p.keys)
	defer func() { p.keys = p.keys[:mark] }()
	var seen map[string]struct{} // the keys of a wide object
	last := int32(none)
	for pos := int32(0); ; pos++ {
		if p.i >= len(p.src) || p.src[p.i] != '"' {
			return none, p.fail("expected a member name")
		}
		keyStart := p.i + 1
		keyEsc, err := p.str()
		if err != nil {
			return none, err
		}
		keyEnd := p.i - 1
		p.space()
		if p.i >= len(p.src) || p.src[p.i] != ':' {
			return none, p.fail("expected ':' after a member name")
		}
		p.i++
		p.space()
		child, err := p.value(self, pos, depth)
		if err != nil {
			return none, err
		}
		c := &p.t.nodes[child]
		c.keyStart, c.keyEnd, c.keyEsc = int32(keyStart), int32(keyEnd), keyEsc
		if p.duplicate(child, p.keys[mark:], &seen) {
			p.i = keyStart - 1
			return none, p.fail("duplicate member name")
		}
		if last == none {
			p.t.nodes[self].first = child
		} else {
			p.t.nodes[last].next = child
		}
		last = child
		p.space()
		if p.i >= len(p.src) {
			return none, p.fail("unexpected end of input in an object")
		}
		switch p.src[p.i] {
		case ',':
			p.i++
			p.space()
		case '}':
			p.i++
			p.t.nodes[self].end = int32(p.i)
			return self, nil
		default:
			return none, p.fail("expected ',' or '}' in an object")
		}
	}
}

// duplicate reports whether member child's key equals the key of one of
// the object's earlier members, and records it. Narrow objects (all of
// FHIR's) are checked by comparing raw bytes, decoding only keys with
// escapes; from maxLinearMembers members on, through a set, so that a
// wide adversarial object costs linear time.
func (p *parser) duplicate(child int32, members []int32, seen *map[string]struct{}) bool {
	t := p.t
	if *seen != nil {
		k := string(t.key(nil, child))
		_, dup := (*seen)[k]
		(*seen)[k] = struct{}{}
		return dup
	}
	c := &t.nodes[child]
	for _, m := range members {
		if t.sameKey(m, child, c) {
			return true
		}
	}
	p.keys = append(p.keys, child)
	if len(members)+1 >= maxLinearMembers {
		*seen = make(map[string]struct{}, 2*maxLinearMembers)
		for _, m := range p.keys[len(p.keys)-len(members)-1:] {
			(*seen)[string(t.key(nil, m))] = struct{}{}
		}
	}
	return false
}

const maxLinearMembers = 32

func (t *tree) sameKey(a, b int32, nb *node) bool {
	na := &t.nodes[a]
	if !na.keyEsc && !nb.keyEsc {
		return string(t.src[na.keyStart:na.keyEnd]) == string(t.src[nb.keyStart:nb.keyEnd])
	}
	return string(t.key(nil, a)) == string(t.key(nil, b))
}

func (p *parser) array(n node, depth int) (int32, error) {
	if depth > MaxDepth {
		return none, p.fail(fmt.Sprintf("nesting deeper than %d", MaxDepth))
	}
	n.kind = kindArray
	self := p.add(n)
	p.i++ // [
	p.space()
	if p.i < len(p.src) && p.src[p.i] == ']' {
		p.i++
		p.t.nodes[self].end = int32(p.i)
		return self, nil
	}
	last := int32(none)
	for pos := int32(0); ; pos++ {
		child, err := p.value(self, pos, depth)
		if err != nil {
			return none, err
		}
		if last == none {
			p.t.nodes[self].first = child
		} else {
			p.t.nodes[last].next = child
		}
		last = child
		p.space()
		if p.i >= len(p.src) {
			return none, p.fail("unexpected end of input in an array")
		}
		switch p.src[p.i] {
		case ',':
			p.i++
			p.space()
		case ']':
			p.i++
			p.t.nodes[self].end = int32(p.i)
			return self, nil
		default:
			return none, p.fail("expected ',' or ']' in an array")
		}
	}
}

// str scans a string at p.i (on its opening quote) and reports whether it
// holds escape sequences. It checks the escapes and that the string is
// UTF-8 without control characters.
func (p *parser) str() (esc bool, err error) {
	p.i++ // opening quote
	for p.i < len(p.src) {
		c := p.src[p.i]
		switch {
		case c == '"':
			p.i++
			return esc, nil
		case c == '\\':
			esc = true
			if p.i+1 >= len(p.src) {
				return esc, p.fail("unexpected end of input in a string")
			}
			switch p.src[p.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i += 2
			case 'u':
				if p.i+6 > len(p.src) || !isHex4(p.src[p.i+2:p.i+6]) {
					return esc, p.fail(`invalid \u escape`)
				}
				p.i += 6
			default:
				return esc, p.fail("invalid escape sequence")
			}
		case c < 0x20:
			return esc, p.fail("control character in a string")
		case c < utf8.RuneSelf:
			p.i++
		default:
			r, size := utf8.DecodeRune(p.src[p.i:])
			if r == utf8.RuneError && size == 1 {
				return esc, p.fail("invalid UTF-8 in a string")
			}
			p.i += size
		}
	}
	return esc, p.fail("unexpected end of input in a string")
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// number scans a number with RFC 8259's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *parser) number() error {
	s, i := p.src, p.i
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
	default:
		p.i = i
		return p.fail("invalid number")
	}
	if i < len(s) && s[i] == '.' {
		i++
		d := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		if i == d {
			p.i = i
			return p.fail("invalid number: no digit after the decimal point")
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		d := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		if i == d {
			p.i = i
			return p.fail("invalid number: no digit in the exponent")
		}
	}
	p.i = i
	return nil
}

// key appends the decoded key of member n to dst.
func (t *tree) key(dst []byte, n int32) []byte {
	nd := &t.nodes[n]
	raw := t.src[nd.keyStart:nd.keyEnd]
	if !nd.keyEsc {
		return append(dst, raw...)
	}
	return unescape(dst, raw)
}

// keyIs reports whether member n's key is k.
func (t *tree) keyIs(n int32, k string) bool {
	nd := &t.nodes[n]
	if !nd.keyEsc {
		return string(t.src[nd.keyStart:nd.keyEnd]) == k
	}
	var buf [64]byte
	return string(unescape(buf[:0], t.src[nd.keyStart:nd.keyEnd])) == k
}

// text appends the decoded value of string node n to dst.
func (t *tree) text(dst []byte, n int32) []byte {
	nd := &t.nodes[n]
	raw := t.src[nd.start+1 : nd.end-1]
	if !nd.esc {
		return append(dst, raw...)
	}
	return unescape(dst, raw)
}

// textIs reports whether n is a string node whose value is s.
func (t *tree) textIs(n int32, s string) bool {
	if n == none {
		return false
	}
	nd := &t.nodes[n]
	if nd.kind != kindString {
		return false
	}
	if !nd.esc {
		return string(t.src[nd.start+1:nd.end-1]) == s
	}
	var buf [128]byte
	return string(unescape(buf[:0], t.src[nd.start+1:nd.end-1])) == s
}

// hasPrefix reports whether n is a string node whose value starts with s.
func (t *tree) hasPrefix(n int32, s string) bool {
	if n == none {
		return false
	}
	nd := &t.nodes[n]
	if nd.kind != kindString {
		return false
	}
	raw := t.src[nd.start+1 : nd.end-1]
	if !nd.esc {
		return len(raw) >= len(s) && string(raw[:len(s)]) == s
	}
	var buf [64]byte
	v := unescapeN(buf[:0], raw, len(s))
	return len(v) >= len(s) && string(v[:len(s)]) == s
}

// member returns the member of object node obj named k, or none.
func (t *tree) member(obj int32, k string) int32 {
	if obj == none || t.nodes[obj].kind != kindObject {
		return none
	}
	for c := t.nodes[obj].first; c != none; c = t.nodes[c].next {
		t.scans++
		if t.keyIs(c, k) {
			return c
		}
	}
	return none
}

// unescape appends the decoded form of the string body raw (already
// validated by the parser) to dst. Unpaired surrogates become U+FFFD, as
// in encoding/json.
func unescape(dst, raw []byte) []byte { return unescapeN(dst, raw, len(raw)) }

// unescapeN is unescape that stops once it has appended at least n bytes.
func unescapeN(dst, raw []byte, n int) []byte {
	n += len(dst)
	for i := 0; i < len(raw) && len(dst) < n; {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(raw[i+2 : i+6])
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if r2 := utf16.DecodeRune(r, hex4(raw[i+2:i+6])); r2 != utf8.RuneError {
						dst = utf8.AppendRune(dst, r2)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst
}

func hex4(b []byte) rune {
	v, _ := strconv.ParseUint(string(b), 16, 16)
	return rune(v)
}

// appendQuoted appends s as a JSON string, escaping only what RFC 8259
// requires (quotes, backslashes, control characters).
func appendQuoted(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
