package fhir

import (
	"context"
	"maps"
	"slices"
)

// Report tells what Encrypt or Decrypt did, per resource type: which
// elements were encrypted (or decrypted) and how often, and which
// resources were left without any encrypted value. Compliance reviews
// read it to check that a profile covers an export; tests assert on it.
//
// A Report holds element paths and counts, never values or resource ids.
// The zero Report is ready to use. It is not safe for concurrent use:
// give each goroutine its own and Add them up.
type Report struct {
	// Types maps a resource type ("Patient") to what was done to the
	// resources of that type.
	Types map[string]*TypeReport `json:"types"`
}

// TypeReport is what was done to the resources of one type.
type TypeReport struct {
	// Resources counts the resources of the type: documents, Bundle
	// entries and contained resources alike.
	Resources int64 `json:"resources"`
	// Untouched counts those in which no value was encrypted (or
	// decrypted). For a type that holds PHI, each one deserves a look.
	Untouched int64 `json:"untouched"`
	// Unknown counts those of a type the profile does not know, handled by
	// Config.UnknownTypes (EncryptUnknown or PassUnknown).
	Unknown int64 `json:"unknown,omitempty"`
	// Paths counts the values encrypted (or decrypted) per element path
	// from the resource, array indexes left out: "name.family",
	// "identifier.value", "_birthDate", "deceasedDateTime". An element
	// encrypted whole counts once. A contained resource's values count
	// under its own type.
	Paths map[string]int64 `json:"paths"`
}

// Add adds the counts of o to r.
func (r *Report) Add(o *Report) {
	if o == nil {
		return
	}
	for typ, ot := range o.Types {
		t := r.typ(typ)
		t.Resources += ot.Resources
		t.Untouched += ot.Untouched
		t.Unknown += ot.Unknown
		for p, n := range ot.Paths {
			t.Paths[p] += n
		}
	}
}

// TypeNames returns the resource types of the report, sorted.
func (r *Report) TypeNames() []string { return slices.Sorted(maps.Keys(r.Types)) }

// Untouched returns, per resource type, how many resources had no value
// encrypted (or decrypted); types with none are left out.
func (r *Report) Untouched() map[string]int64 {
	out := map[string]int64{}
	for typ, t := range r.Types {
		if t.Untouched > 0 {
			out[typ] = t.Untouched
		}
	}
	return out
}

// typ returns the TypeReport of typ, created if needed.
func (r *Report) typ(typ string) *TypeReport {
	if r.Types == nil {
		r.Types = map[string]*TypeReport{}
	}
	t := r.Types[typ]
	if t == nil {
		t = &TypeReport{Paths: map[string]int64{}}
		r.Types[typ] = t
	}
	return t
}

// reset empties r and keeps its maps for reuse.
func (r *Report) reset() {
	for _, t := range r.Types {
		t.Resources, t.Untouched, t.Unknown = 0, 0, 0
		clear(t.Paths)
	}
}

// AppendEncryptReport is AppendEncrypt that also adds to r what it
// encrypted. On failure, r is left as it was.
func (e *Encryptor) AppendEncryptReport(ctx context.Context, dst, doc []byte, r *Report) ([]byte, error) {
	w := e.getWork()
	defer e.putWork(w)
	out, err := w.encrypt(ctx, dst, doc)
	if err != nil {
		clear(out[len(dst):cap(out)]) // best effort: it may hold plaintext
		return dst, err
	}
	w.report(r)
	return out, nil
}

// AppendDecryptReport is AppendDecrypt that also adds to r what it
// decrypted. On failure, r is left as it was.
func (e *Encryptor) AppendDecryptReport(ctx context.Context, dst, doc []byte, r *Report) ([]byte, error) {
	w := e.getWork()
	defer e.putWork(w)
	out, err := w.decrypt(ctx, dst, doc)
	if err != nil {
		clear(out[len(dst):cap(out)])
		return dst, err
	}
	w.report(r)
	return out, nil
}

// report adds to r the values edited by the last encrypt or decrypt.
func (w *work) report(r *Report) {
	if r == nil {
		return
	}
	t := &w.t
	// The resources by position, to find the owner of each value: the
	// innermost resource that holds it.
	byNode := make([]int32, len(w.res))
	for i := range w.res {
		byNode[i] = int32(i)
		w.res[i].touched = false
	}
	slices.SortFunc(byNode, func(a, b int32) int { return int(w.res[a].node) - int(w.res[b].node) })
	owner := func(n int32) int {
		for m := n; m != none; m = t.nodes[m].parent {
			i, ok := slices.BinarySearchFunc(byNode, m, func(ri, m int32) int { return int(w.res[ri].node) - int(m) })
			if ok {
				return int(byNode[i])
			}
		}
		return 0
	}
	var path []byte
	for _, ed := range w.edits {
		if ed.kind != editValue {
			continue
		}
		ri := owner(ed.node)
		res := &w.res[ri]
		res.touched = true
		path = t.appendPath(path[:0], res.node, ed.node, false)
		r.typ(res.typ).Paths[string(stripIndexes(path))]++
	}
	for i := range w.res {
		res := &w.res[i]
		tr := r.typ(res.typ)
		tr.Resources++
		if !res.touched {
			tr.Untouched++
		}
		if res.unknown {
			tr.Unknown++
		}
	}
}

// stripIndexes removes the array indexes ("[2]") from a path, in place.
// Quoted names (["a.b"]) are kept.
func stripIndexes(p []byte) []byte {
	out := p[:0]
	for i := 0; i < len(p); i++ {
		if p[i] == '[' && i+1 < len(p) && p[i+1] >= '0' && p[i+1] <= '9' {
			for i < len(p) && p[i] != ']' {
				i++
			}
			continue
		}
		if p[i] == '[' && i+1 < len(p) && p[i+1] == '"' {
			// A quoted name: copy it to its closing bracket, escapes and all.
			j := i + 2
			for j < len(p) && p[j] != '"' {
				if p[j] == '\\' {
					j++
				}
				j++
			}
			out = append(out, p[i:min(j+2, len(p))]...)
			i = j + 1
			continue
		}
		out = append(out, p[i])
	}
	return out
}
