package fhir

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of a path.
const (
	// MaxPathLength is the longest path, in bytes.
	MaxPathLength = 4096
	// maxWhereDepth bounds where() nested in where().
	maxWhereDepth = 8
	// maxIndex bounds an indexer [n].
	maxIndex = 1 << 20
)

// PathError is a path that does not parse, or that a profile cannot use.
// It names the path (configuration, never document data), the byte offset
// of the problem and the reason.
type PathError struct {
	// Resource is the profile's resource type the path is listed under,
	// if any.
	Resource string
	Path     string
	Offset   int
	Reason   string
}

func (e *PathError) Error() string {
	where := ""
	if e.Resource != "" {
		where = " (" + e.Resource + ")"
	}
	return fmt.Sprintf("fhir: invalid path %q%s at offset %d: %s", e.Path, where, e.Offset, e.Reason)
}

// Unwrap returns ErrInvalidPath.
func (e *PathError) Unwrap() error { return ErrInvalidPath }

// Path is a parsed element path of the FHIRPath subset described in the
// package documentation, such as
//
//	Patient.identifier.where(type.coding.code = 'SS').value
//
// A Path is immutable and safe for concurrent use.
type Path struct {
	typ   string // the leading resource type, or ""
	steps []step
}

type stepKind uint8

const (
	stepChild     stepKind = iota + 1 // name
	stepChoice                        // name[x]
	stepIndex                         // [n]
	stepWhere                         // where(criteria)
	stepExtension                     // extension('url')
)

type step struct {
	kind  stepKind
	name  string // element name, choice base, or extension url
	ext   string // for the last step of a profile path, "_"+name: its extensions (_name, _nameType for name[x]) match too
	index int
	where [][]comparison // a disjunction of conjunctions
}

// comparison is "steps = 'literal'".
type comparison struct {
	steps []step
	lit   string
}

// ParsePath parses a path. Errors are *PathError, matching ErrInvalidPath.
func ParsePath(s string) (*Path, error) {
	if len(s) > MaxPathLength {
		return nil, &PathError{Path: s[:64] + "...", Reason: fmt.Sprintf("longer than %d bytes", MaxPathLength)}
	}
	p := &pathParser{src: s}
	p.next()
	out := &Path{}
	if p.tok == tokIdent && isUpper(p.text[0]) {
		out.typ = p.text
		p.next()
		if p.tok != tokDot {
			return nil, p.fail("expected '.' after the resource type")
		}
		p.next()
	}
	steps, err := p.steps(0)
	if err != nil {
		return nil, err
	}
	if p.tok != tokEOF {
		return nil, p.fail("unexpected " + p.tok.String())
	}
	out.steps = steps
	return out, nil
}

// ResourceType returns the resource type the path starts with, or "".
func (p *Path) ResourceType() string { return p.typ }

// String returns the path in canonical form: the same steps, with one
// space around '=', 'and' and 'or', and string literals quoted minimally.
// ParsePath(p.String()) is equal to p.
func (p *Path) String() string {
	var b strings.Builder
	if p.typ != "" {
		b.WriteString(p.typ)
		b.WriteByte('.')
	}
	writeSteps(&b, p.steps)
	return b.String()
}

func writeSteps(b *strings.Builder, steps []step) {
	for i, s := range steps {
		if i > 0 && s.kind != stepIndex {
			b.WriteByte('.')
		}
		switch s.kind {
		case stepChild:
			b.WriteString(s.name)
		case stepChoice:
			b.WriteString(s.name)
			b.WriteString("[x]")
		case stepIndex:
			fmt.Fprintf(b, "[%d]", s.index)
		case stepExtension:
			b.WriteString("extension(")
			writeLiteral(b, s.name)
			b.WriteByte(')')
		case stepWhere:
			b.WriteString("where(")
			for j, conj := range s.where {
				if j > 0 {
					b.WriteString(" or ")
				}
				for k, c := range conj {
					if k > 0 {
						b.WriteString(" and ")
					}
					writeSteps(b, c.steps)
					b.WriteString(" = ")
					writeLiteral(b, c.lit)
				}
			}
			b.WriteByte(')')
		}
	}
}

func writeLiteral(b *strings.Builder, s string) {
	b.WriteByte('\'')
	for _, r := range s {
		switch r {
		case '\'':
			b.WriteString(`\'`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('\'')
}

// The path lexer.

type token uint8

const (
	tokEOF token = iota
	tokIdent
	tokString
	tokNumber
	tokDot
	tokLParen
	tokRParen
	tokLBracket
	tokRBracket
	tokEquals
	tokInvalid
)

func (t token) String() string {
	switch t {
	case tokEOF:
		return "end of path"
	case tokIdent:
		return "name"
	case tokString:
		return "string"
	case tokNumber:
		return "number"
	case tokDot:
		return "'.'"
	case tokLParen:
		return "'('"
	case tokRParen:
		return "')'"
	case tokLBracket:
		return "'['"
	case tokRBracket:
		return "']'"
	case tokEquals:
		return "'='"
	}
	return "character"
}

type pathParser struct {
	src  string
	i    int    // read position
	tok  token  // current token
	at   int    // its offset
	text string // its text (identifier, decoded string, digits)
	err  string // why tok is tokInvalid
}

func (p *pathParser) fail(reason string) error {
	return &PathError{Path: p.src, Offset: p.at, Reason: reason}
}

// next reads the next token into p.tok.
func (p *pathParser) next() {
	for p.i < len(p.src) && (p.src[p.i] == ' ' || p.src[p.i] == '\t' || p.src[p.i] == '\n' || p.src[p.i] == '\r') {
		p.i++
	}
	p.at, p.text = p.i, ""
	if p.i >= len(p.src) {
		p.tok = tokEOF
		return
	}
	c := p.src[p.i]
	switch {
	case isLetter(c):
		j := p.i + 1
		for j < len(p.src) && (isLetter(p.src[j]) || isDigit(p.src[j])) {
			j++
		}
		p.tok, p.text, p.i = tokIdent, p.src[p.i:j], j
	case isDigit(c):
		j := p.i + 1
		for j < len(p.src) && isDigit(p.src[j]) {
			j++
		}
		p.tok, p.text, p.i = tokNumber, p.src[p.i:j], j
	case c == '\'':
		p.lexString()
	default:
		p.i++
		switch c {
		case '.':
			p.tok = tokDot
		case '(':
			p.tok = tokLParen
		case ')':
			p.tok = tokRParen
		case '[':
			p.tok = tokLBracket
		case ']':
			p.tok = tokRBracket
		case '=':
			p.tok = tokEquals
		case '_':
			p.tok, p.err = tokInvalid, "names start with a letter (the _name JSON members of primitive extensions are encrypted with their primitive)"
		case '!', '<', '>', '~':
			p.tok, p.err = tokInvalid, "only '=' comparisons are supported"
		default:
			p.tok, p.err = tokInvalid, "unexpected character"
		}
	}
}

// lexString reads a FHIRPath string literal: single quotes, with the
// escapes \' \" \` \\ \/ \f \n \r \t and \uXXXX.
func (p *pathParser) lexString() {
	var b strings.Builder
	j := p.i + 1
	for j < len(p.src) {
		c := p.src[j]
		switch {
		case c == '\'':
			p.tok, p.text, p.i = tokString, b.String(), j+1
			return
		case c == '\\':
			if j+1 >= len(p.src) {
				j++
				continue
			}
			switch e := p.src[j+1]; e {
			case '\'', '"', '`', '\\', '/':
				b.WriteByte(e)
				j += 2
			case 'f':
				b.WriteByte('\f')
				j += 2
			case 'n':
				b.WriteByte('\n')
				j += 2
			case 'r':
				b.WriteByte('\r')
				j += 2
			case 't':
				b.WriteByte('\t')
				j += 2
			case 'u':
				if j+6 > len(p.src) || !isHex4([]byte(p.src[j+2:j+6])) {
					p.tok, p.err, p.at = tokInvalid, `invalid \u escape in a string`, j
					return
				}
				v, _ := strconv.ParseUint(p.src[j+2:j+6], 16, 16)
				b.WriteRune(rune(v))
				j += 6
			default:
				p.tok, p.err, p.at = tokInvalid, "invalid escape in a string", j
				return
			}
		case c < 0x20:
			p.tok, p.err, p.at = tokInvalid, "control character in a string", j
			return
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(p.src[j:])
			if r == utf8.RuneError && size == 1 {
				p.tok, p.err, p.at = tokInvalid, "invalid UTF-8 in a string", j
				return
			}
			b.WriteString(p.src[j : j+size])
			j += size
		default:
			b.WriteByte(c)
			j++
		}
	}
	p.tok, p.err = tokInvalid, "unterminated string"
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isUpper(c byte) bool  { return 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }

// expect fails unless the current token is want.
func (p *pathParser) expect(want token, what string) error {
	if p.tok == tokInvalid {
		return p.fail(p.err)
	}
	if p.tok != want {
		return p.fail("expected " + what + ", found " + p.tok.String())
	}
	return nil
}

// steps parses step { '.' step | '[' n ']' }.
func (p *pathParser) steps(depth int) ([]step, error) {
	var out []step
	s, err := p.step(depth)
	if err != nil {
		return nil, err
	}
	out = append(out, s...)
	for {
		switch p.tok {
		case tokDot:
			p.next()
			s, err := p.step(depth)
			if err != nil {
				return nil, err
			}
			out = append(out, s...)
		case tokLBracket:
			p.next()
			if err := p.expect(tokNumber, "an index"); err != nil {
				return nil, err
			}
			n, err := strconv.Atoi(p.text)
			if err != nil || n >= maxIndex || (len(p.text) > 1 && p.text[0] == '0') {
				return nil, p.fail(fmt.Sprintf("index must be a decimal number below %d without leading zeros", maxIndex))
			}
			p.next()
			if err := p.expect(tokRBracket, "']'"); err != nil {
				return nil, err
			}
			p.next()
			out = append(out, step{kind: stepIndex, index: n})
		case tokInvalid:
			return nil, p.fail(p.err)
		default:
			return out, nil
		}
	}
}

// step parses a name, name[x], where(...) or extension('url'). The [x]
// of a choice element is read here, after its name: it never follows
// anything else.
func (p *pathParser) step(depth int) ([]step, error) {
	if err := p.expect(tokIdent, "an element name"); err != nil {
		return nil, err
	}
	name, at := p.text, p.at
	p.next()
	if p.tok == tokLParen {
		return p.function(name, at, depth)
	}
	if isUpper(name[0]) {
		p.at = at
		return nil, p.fail("element names start with a lower-case letter (a resource type may only start the path)")
	}
	if p.tok == tokLBracket && p.i < len(p.src) && p.src[p.i] == 'x' {
		// name[x]: look ahead without consuming a numeric index.
		save := *p
		p.next()
		if p.tok == tokIdent && p.text == "x" {
			p.next()
			if err := p.expect(tokRBracket, "']'"); err != nil {
				return nil, err
			}
			p.next()
			return []step{{kind: stepChoice, name: name}}, nil
		}
		*p = save
	}
	return []step{{kind: stepChild, name: name}}, nil
}

func (p *pathParser) function(name string, at, depth int) ([]step, error) {
	p.next() // (
	switch name {
	case "where":
		if depth >= maxWhereDepth {
			p.at = at
			return nil, p.fail(fmt.Sprintf("where() nested deeper than %d", maxWhereDepth))
		}
		cond, err := p.criteria(depth + 1)
		if err != nil {
			return nil, err
		}
		if err := p.expect(tokRParen, "')'"); err != nil {
			return nil, err
		}
		p.next()
		return []step{{kind: stepWhere, where: cond}}, nil
	case "extension":
		if err := p.expect(tokString, "the extension's url as a string"); err != nil {
			return nil, err
		}
		url := p.text
		p.next()
		if err := p.expect(tokRParen, "')'"); err != nil {
			return nil, err
		}
		p.next()
		return []step{{kind: stepExtension, name: url}}, nil
	}
	p.at = at
	return nil, p.fail(fmt.Sprintf("unsupported function %s() (supported: where, extension)", name))
}

// criteria parses conj { 'or' conj }, conj = comparison { 'and' comparison }.
func (p *pathParser) criteria(depth int) ([][]comparison, error) {
	var out [][]comparison
	var conj []comparison
	for {
		c, err := p.comparison(depth)
		if err != nil {
			return nil, err
		}
		conj = append(conj, c)
		if p.tok == tokIdent && p.text == "and" {
			p.next()
			continue
		}
		out = append(out, conj)
		conj = nil
		if p.tok == tokIdent && p.text == "or" {
			p.next()
			continue
		}
		return out, nil
	}
}

func (p *pathParser) comparison(depth int) (comparison, error) {
	steps, err := p.steps(depth)
	if err != nil {
		return comparison{}, err
	}
	if err := p.expect(tokEquals, "'=' and a string"); err != nil {
		return comparison{}, err
	}
	p.next()
	if err := p.expect(tokString, "a string literal"); err != nil {
		return comparison{}, err
	}
	lit := p.text
	p.next()
	return comparison{steps: steps, lit: lit}, nil
}
