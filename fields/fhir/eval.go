package fhir

import (
	"strconv"

	"github.com/phicrypt/phicrypt/envelope"
)

// evaluator evaluates paths over a tree. It keeps its collections between
// calls, so that evaluating a profile allocates nothing once warm.
//
// With check set, it records the first node met where a path needs an
// object (to select a member of it) and finds another JSON type: FHIR
// JSON has no such element, and a path that skipped it would let its
// value through unencrypted. null (no value) and a phicrypt ciphertext
// (an element encrypted whole, on decryption) are not odd.
type evaluator struct {
	t       *tree
	free    [][]int32 // spare collections
	check   bool
	odd     int32 // 1 + the first odd node, 0 if none
	oddWant kind  // the JSON type expected where odd was found
}

// unexpected records node n as odd, if it is the first, unless it is an
// object (or what may stand for one).
func (ev *evaluator) unexpected(n int32) {
	if !ev.check || ev.odd != 0 {
		return
	}
	switch nd := &ev.t.nodes[n]; {
	case nd.kind == kindNull, nd.kind == kindObject:
		return
	case nd.kind == kindString && ev.t.hasPrefix(n, envelope.ArmorPrefix):
		return
	}
	ev.odd, ev.oddWant = n+1, kindObject
}

// notString records node n as odd, if it is the first, unless it is a
// string or null: a value compared with a string literal (a where()
// criterion, an extension's url), which in another JSON type would match
// nothing and let the value it guards through.
func (ev *evaluator) notString(n int32) {
	if !ev.check || ev.odd != 0 {
		return
	}
	if k := ev.t.nodes[n].kind; k == kindString || k == kindNull {
		return
	}
	ev.odd, ev.oddWant = n+1, kindString
}

// oddNode returns the first odd node met since the last reset, or none,
// and the JSON type expected there.
func (ev *evaluator) oddNode() (int32, kind) { return ev.odd - 1, ev.oddWant }

func (ev *evaluator) get() []int32 {
	if n := len(ev.free); n > 0 {
		c := ev.free[n-1]
		ev.free = ev.free[:n-1]
		return c[:0]
	}
	return make([]int32, 0, 16)
}

func (ev *evaluator) put(c []int32) { ev.free = append(ev.free, c) }

// selectPath appends to dst the nodes that steps select from the
// collection {start}, in document order within each step.
func (ev *evaluator) selectPath(dst []int32, start int32, steps []step) []int32 {
	cur := append(ev.get(), start)
	cur = ev.apply(cur, steps)
	dst = append(dst, cur...)
	ev.put(cur)
	return dst
}

// apply applies steps to the collection cur and returns the result, which
// may reuse cur's storage.
func (ev *evaluator) apply(cur []int32, steps []step) []int32 {
	t := ev.t
	for i := range steps {
		if len(cur) == 0 {
			return cur
		}
		s := &steps[i]
		switch s.kind {
		case stepIndex:
			if s.index < len(cur) {
				cur = append(cur[:0], cur[s.index])
			} else {
				cur = cur[:0]
			}
			continue
		case stepWhere:
			out := cur[:0]
			for _, n := range cur {
				if ev.matches(n, s.where) {
					out = append(out, n)
				}
			}
			cur = out
			continue
		}
		next := ev.get()
		for _, n := range cur {
			if t.nodes[n].kind != kindObject {
				ev.unexpected(n)
				continue
			}
			for c := t.nodes[n].first; c != none; c = t.nodes[c].next {
				switch s.kind {
				case stepChild:
					if !t.keyIs(c, s.name) && (s.ext == "" || !t.keyIs(c, s.ext)) {
						continue
					}
				case stepChoice:
					if !t.isChoice(c, s.name) && (s.ext == "" || !t.isChoice(c, s.ext)) {
						continue
					}
				case stepExtension:
					if !t.keyIs(c, "extension") {
						continue
					}
				}
				next = t.flatten(next, c)
			}
		}
		if s.kind == stepExtension {
			out := next[:0]
			for _, n := range next {
				if t.nodes[n].kind != kindObject {
					ev.unexpected(n) // an extension is an object
					continue
				}
				url := t.member(n, "url")
				if url != none {
					ev.notString(url)
				}
				if t.textIs(url, s.name) {
					out = append(out, n)
				}
			}
			next = out
		}
		ev.put(cur)
		cur = next
	}
	return cur
}

// flatten appends member value c to dst, or its elements if it is an array:
// FHIRPath traverses arrays implicitly.
func (t *tree) flatten(dst []int32, c int32) []int32 {
	if t.nodes[c].kind != kindArray {
		return append(dst, c)
	}
	for e := t.nodes[c].first; e != none; e = t.nodes[e].next {
		dst = append(dst, e)
	}
	return dst
}

// isChoice reports whether member c is the choice element base[x]: its key
// is base followed by a type name (an upper-case letter, then letters and
// digits: valueBase64Binary).
func (t *tree) isChoice(c int32, base string) bool {
	var buf [64]byte
	k := t.key(buf[:0], c)
	if len(k) <= len(base) || string(k[:len(base)]) != base || !isUpper(k[len(base)]) {
		return false
	}
	for _, b := range k[len(base):] {
		if !isLetter(b) && !isDigit(b) {
			return false
		}
	}
	return true
}

// matches evaluates where() criteria on node n: a disjunction of
// conjunctions of comparisons. A comparison is true when some string of
// the collection its path selects from n equals the literal.
func (ev *evaluator) matches(n int32, cond [][]comparison) bool {
	for _, conj := range cond {
		all := true
		for i := range conj {
			if !ev.compare(n, &conj[i]) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func (ev *evaluator) compare(n int32, c *comparison) bool {
	col := append(ev.get(), n)
	col = ev.apply(col, c.steps)
	found := false
	for _, m := range col {
		ev.notString(m)
		if ev.t.textIs(m, c.lit) {
			found = true
			break
		}
	}
	ev.put(col)
	return found
}

// appendPath appends the path of node n relative to node root: member
// names joined by dots, array elements as [i]. A name that is not a plain
// identifier is written ["..."], so that no two locations share a path.
// dot tells whether a name at the start needs a dot before it.
func (t *tree) appendPath(dst []byte, root, n int32, dot bool) []byte {
	var stack [MaxDepth + 2]int32
	depth := 0
	for m := n; m != root && m != none && depth < len(stack); m = t.nodes[m].parent {
		stack[depth] = m
		depth++
	}
	for i := depth - 1; i >= 0; i-- {
		m := stack[i]
		nd := &t.nodes[m]
		if t.nodes[nd.parent].kind == kindArray {
			dst = append(dst, '[')
			dst = strconv.AppendInt(dst, int64(nd.pos), 10)
			dst = append(dst, ']')
			dot = true
			continue
		}
		var buf [64]byte
		k := t.key(buf[:0], m)
		if isPlainName(k) {
			if dot {
				dst = append(dst, '.')
			}
			dst = append(dst, k...)
		} else {
			dst = append(appendQuoted(append(dst, '['), string(k)), ']')
		}
		dot = true
	}
	return dst
}

func isPlainName(b []byte) bool {
	if len(b) == 0 || !(isLetter(b[0]) || b[0] == '_') {
		return false
	}
	for _, c := range b[1:] {
		if !(isLetter(c) || isDigit(c) || c == '_') {
			return false
		}
	}
	return true
}
