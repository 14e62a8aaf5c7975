package fhir

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"

	"github.com/phicrypt/phicrypt/fields"
)

// IndexExtensionURL is the url of the extension in which Encrypt writes a
// resource's blind indexes, and which Decrypt removes:
//
//	{"url": IndexExtensionURL, "extension": [
//	  {"url": "ssn", "valueBase64Binary": "AYrE"}, ...]}
//
// One sub-extension per indexed value, its url the index's Name, its value
// the blind index (fields.BlindIndex bytes: the index key version as a
// uvarint, then the truncated HMAC) in standard base64.
const IndexExtensionURL = "https://github.com/phicrypt/phicrypt/fhir/StructureDefinition/blind-index"

// Index is a blind index over string elements of one resource type. Its
// values equal those of a struct's `phi:"index"` field with the same
// table, column, bits and normalizers, in the same scope: the same row can
// be found from a FHIR document or a database table.
type Index struct {
	// Name is the sub-extension's url and the name Terms takes: ASCII
	// letters, digits, '-' and '_'.
	Name string
	// Resource is the resource type indexed, such as "Patient".
	Resource string
	// Path selects the values to index; each string value gives one
	// index value.
	Path string
	// Spec is the index: its table and column name its key, Bits its
	// length (plan it with fields.SuggestIndexBits), Normalize its
	// normalizers. Spec.Text is ignored.
	Spec fields.IndexSpec
}

// SSNIndex returns the blind index of US Social Security Numbers: the
// values of Patient identifiers of system http://hl7.org/fhir/sid/us-ssn
// or type SS, digits only, in column "ssn_index" of table "Patient".
func SSNIndex(bits int) Index {
	return Index{
		Name:     "ssn",
		Resource: "Patient",
		Path:     "identifier.where(system = 'http://hl7.org/fhir/sid/us-ssn' or type.coding.code = 'SS').value",
		Spec:     fields.IndexSpec{Table: "Patient", Column: "ssn_index", Bits: bits, Normalize: "digits"},
	}
}

// MRNIndex returns the blind index of medical record numbers: the values
// of Patient identifiers of type MR, trimmed, in column "mrn_index" of
// table "Patient".
func MRNIndex(bits int) Index {
	return Index{
		Name:     "mrn",
		Resource: "Patient",
		Path:     "identifier.where(type.coding.code = 'MR').value",
		Spec:     fields.IndexSpec{Table: "Patient", Column: "mrn_index", Bits: bits, Normalize: "trim"},
	}
}

type compiledIndex struct {
	Index
	path *Path
}

func compileIndexes(cfg Config) ([]compiledIndex, error) {
	if len(cfg.Indexes) == 0 {
		return nil, nil
	}
	if cfg.Codec == nil {
		return nil, errors.New("fhir: Config.Indexes need a Config.Codec")
	}
	if cfg.IndexScope == nil {
		return nil, errors.New("fhir: Config.Indexes need a Config.IndexScope")
	}
	var out []compiledIndex
	for _, x := range cfg.Indexes {
		if !isIndexName(x.Name) {
			return nil, fmt.Errorf("fhir: index name %q: want ASCII letters, digits, '-' and '_'", x.Name)
		}
		if slices.ContainsFunc(out, func(c compiledIndex) bool { return c.Name == x.Name }) {
			return nil, fmt.Errorf("fhir: two indexes are named %q", x.Name)
		}
		if !isResourceType(x.Resource) {
			return nil, fmt.Errorf("fhir: index %q: %q is not a resource type", x.Name, x.Resource)
		}
		p, err := ParsePath(x.Path)
		if err != nil {
			err.(*PathError).Resource = x.Resource
			return nil, err
		}
		if p.typ != "" && p.typ != x.Resource {
			return nil, &PathError{Resource: x.Resource, Path: x.Path, Reason: "the path starts with another resource type"}
		}
		x.Spec.Text = false
		if err := x.Spec.Validate(); err != nil {
			return nil, fmt.Errorf("fhir: index %q: %w", x.Name, err)
		}
		out = append(out, compiledIndex{Index: x, path: p})
	}
	return out, nil
}

func isIndexName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(isLetter(c) || isDigit(c) || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// addIndexes computes the blind indexes of each resource and adds the
// edits that insert their extensions. It refuses a document that has
// index extensions already. A resource inside a value the profile
// encrypts whole gets no index: nothing of it stays readable.
func (w *work) addIndexes(ctx context.Context) error {
	t := &w.t
	for _, ri := range w.roots {
		r := &w.res[ri]
		if _, n := w.indexExtensions(r.node); n > 0 {
			return &ElementError{Path: w.docPath(r.node), Err: ErrEncryptedInput}
		}
		if !slices.ContainsFunc(w.e.indexes, func(x compiledIndex) bool { return x.Resource == r.typ }) {
			continue
		}
		if w.covered(r.node) {
			// The profile encrypts the resource whole (Bundle.entry): its
			// values are inside one ciphertext, and an extension inserted
			// in it would overlap that ciphertext.
			continue
		}
		from := int32(len(w.ext))
		count := 0
		for _, x := range w.e.indexes {
			if x.Resource != r.typ {
				continue
			}
			nodes := w.ev.selectPath(w.ev.get(), r.node, x.path.steps)
			for _, n := range nodes {
				if t.nodes[n].kind != kindString {
					continue
				}
				v, err := w.indexValue(ctx, int(ri), &x, n)
				if err != nil {
					w.ev.put(nodes)
					return err
				}
				if count == 0 {
					w.ext = append(w.ext, `{"url":"`+IndexExtensionURL+`","extension":[`...)
				} else {
					w.ext = append(w.ext, ',')
				}
				w.ext = append(w.ext, `{"url":"`...)
				w.ext = append(w.ext, x.Name...)
				w.ext = append(w.ext, `","valueBase64Binary":"`...)
				w.ext = base64.StdEncoding.AppendEncode(w.ext, v)
				w.ext = append(w.ext, `"}`...)
				count++
			}
			w.ev.put(nodes)
		}
		if count == 0 {
			continue
		}
		w.ext = append(w.ext, "]}"...)
		if err := w.insertExtension(r.node, from); err != nil {
			return err
		}
	}
	return nil
}

// indexValue computes index x over string node n of resource res[ri].
func (w *work) indexValue(ctx context.Context, ri int, x *compiledIndex, n int32) ([]byte, error) {
	r, err := w.describe(ri)
	if err != nil {
		return nil, err
	}
	scope, err := w.e.indexScope(r.info)
	if err != nil {
		return nil, &ElementError{Path: w.docPath(r.node), Err: fmt.Errorf("index scope: %w", err)}
	}
	w.buf = w.t.text(w.buf[:0], n)
	bi, err := w.e.codec.IndexFor(ctx, scope, x.Spec, string(w.buf))
	if err != nil {
		return nil, &ElementError{Path: w.docPath(n), Err: fmt.Errorf("blind index %s: %w", x.Name, err)}
	}
	v, err := bi.Value()
	b, ok := v.([]byte)
	if err != nil || !ok {
		return nil, &ElementError{Path: w.docPath(n), Err: fmt.Errorf("blind index %s has no value", x.Name)}
	}
	return b, nil
}

// insertExtension adds the edit that inserts the extension w.ext[from:] in
// resource node r: appended to its extension array, or in a new extension
// member after its last member. Decrypt removes exactly these bytes: the
// member when nothing else is left in it.
func (w *work) insertExtension(r int32, from int32) error {
	t := &w.t
	to := int32(len(w.ext))
	if ext := t.member(r, "extension"); ext != none {
		nd := &t.nodes[ext]
		if nd.kind != kindArray {
			return &ElementError{Path: w.docPath(ext), Err: fmt.Errorf("%w: extension is not an array", ErrNotResource)}
		}
		last := t.lastChild(ext)
		if last == none {
			// FHIR JSON has no empty arrays, and Decrypt could not tell
			// this array from one that Encrypt added.
			return &ElementError{Path: w.docPath(ext), Err: fmt.Errorf("%w: empty extension array", ErrNotResource)}
		}
		at := t.nodes[last].end
		w.ext = slices.Insert(w.ext, int(from), ',')
		w.edits = append(w.edits, edit{start: at, end: at, kind: editInsert, from: from, to: to + 1})
		return nil
	}
	last := t.lastChild(r) // resourceType at least
	at := t.nodes[last].end
	const head = `,"extension":[`
	w.ext = slices.Insert(w.ext, int(from), []byte(head)...)
	w.ext = append(w.ext, ']')
	w.edits = append(w.edits, edit{start: at, end: at, kind: editInsert, from: from, to: int32(len(w.ext))})
	return nil
}

func (t *tree) lastChild(n int32) int32 {
	last := int32(none)
	for c := t.nodes[n].first; c != none; c = t.nodes[c].next {
		last = c
	}
	return last
}

// indexExtensions returns the extension member of resource node r and how
// many of its elements are blind index extensions.
func (w *work) indexExtensions(r int32) (int32, int) {
	t := &w.t
	ext := t.member(r, "extension")
	if ext == none || t.nodes[ext].kind != kindArray {
		return ext, 0
	}
	n := 0
	for e := t.nodes[ext].first; e != none; e = t.nodes[e].next {
		if t.isIndexExtension(e) {
			n++
		}
	}
	return ext, n
}

func (t *tree) isIndexExtension(e int32) bool {
	return t.textIs(t.member(e, "url"), IndexExtensionURL)
}

// removeIndexes adds the edits that delete the blind index extensions of
// resource node r, and the extension member if nothing else is left in it,
// together with the separators Encrypt inserted.
func (w *work) removeIndexes(r int32) {
	t := &w.t
	ext, n := w.indexExtensions(r)
	if n == 0 {
		return
	}
	total := 0
	for e := t.nodes[ext].first; e != none; e = t.nodes[e].next {
		total++
	}
	del := func(start, end int32) { w.edits = append(w.edits, edit{start: start, end: end, kind: editDelete}) }
	if n == total {
		// Remove the member with the separator before it (or after it,
		// when it comes first).
		var prev int32 = none
		for c := t.nodes[r].first; c != ext; c = t.nodes[c].next {
			prev = c
		}
		switch {
		case prev != none:
			del(t.nodes[prev].end, t.nodes[ext].end)
		case t.nodes[ext].next != none:
			del(t.nodes[ext].keyStart-1, t.nodes[t.nodes[ext].next].keyStart-1)
		default:
			del(t.nodes[ext].keyStart-1, t.nodes[ext].end)
		}
		return
	}
	// Remove the elements: a leading run together with the separator that
	// follows it, any other with the separator before it.
	var prev int32 = none
	leading := true
	var runStart int32 = none
	for e := t.nodes[ext].first; e != none; e = t.nodes[e].next {
		isIndex := t.isIndexExtension(e)
		switch {
		case isIndex && leading:
			if runStart == none {
				runStart = t.nodes[e].start
			}
		case !isIndex && leading:
			if runStart != none {
				del(runStart, t.nodes[e].start)
			}
			leading = false
		case isIndex:
			del(t.nodes[prev].end, t.nodes[e].end)
		}
		prev = e
	}
}

// Terms returns the values to look for in index name's extensions to find
// resources whose indexed element equals value after normalization: one
// per live index key version (see fields.Codec.TermsFor). The extension
// holds base64.StdEncoding of each value's bytes (its driver.Value);
// ReadIndexes returns them as fields.BlindIndex, to compare with Equal.
// scope is the index scope (Config.IndexScope) of the resources searched.
// A truncated index also matches other values: decrypt the candidates and
// compare.
func (e *Encryptor) Terms(ctx context.Context, scope, name, value string) ([]fields.BlindIndex, error) {
	i := slices.IndexFunc(e.indexes, func(x compiledIndex) bool { return x.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("fhir: no index named %q", name)
	}
	return e.codec.TermsFor(ctx, scope, e.indexes[i].Spec, value)
}

// IndexValue is one blind index value of an encrypted document. Like every
// fields.BlindIndex, Value prints as a placeholder and is a driver.Valuer,
// ready for the column of a search table.
type IndexValue struct {
	// ResourceType and ID identify the resource.
	ResourceType, ID string
	// Name is the index's name.
	Name  string
	Value fields.BlindIndex
}

// ReadIndexes returns the blind index values of an encrypted document, in
// document order, for a store that searches them in a table of its own.
// It decrypts nothing and needs no key. A value that is not base64 is an
// *ElementError.
func ReadIndexes(doc []byte) ([]IndexValue, error) {
	w := &work{}
	if err := w.prepare(doc, false); err != nil {
		return nil, err
	}
	t := &w.t
	var out []IndexValue
	for _, ri := range w.roots {
		r := &w.res[ri]
		ext := t.member(r.node, "extension")
		if ext == none || t.nodes[ext].kind != kindArray {
			continue
		}
		for e := t.nodes[ext].first; e != none; e = t.nodes[e].next {
			if !t.isIndexExtension(e) {
				continue
			}
			subs := t.member(e, "extension")
			if subs == none || t.nodes[subs].kind != kindArray {
				continue
			}
			for s := t.nodes[subs].first; s != none; s = t.nodes[s].next {
				name, val := t.member(s, "url"), t.member(s, "valueBase64Binary")
				if name == none || val == none || t.nodes[name].kind != kindString || t.nodes[val].kind != kindString {
					continue
				}
				b, err := base64.StdEncoding.Strict().DecodeString(string(t.text(nil, val)))
				if err != nil || len(b) == 0 {
					return nil, &ElementError{Path: w.docPath(val), Err: errors.New("blind index value is not base64")}
				}
				iv := IndexValue{ResourceType: r.typ, ID: r.id, Name: string(t.text(nil, name))}
				if err := iv.Value.Scan(b); err != nil {
					return nil, err
				}
				out = append(out, iv)
			}
		}
	}
	return out, nil
}
