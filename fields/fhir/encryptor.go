package fhir

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/internal/format"
)

// Cipher encrypts and decrypts element values. *envelope.Compact (data
// keys from a keys.Keyring: the smallest ciphertexts, for documents kept
// next to the keyring) and *envelope.SelfContained (data keys wrapped by
// a KEK inside each ciphertext: documents that travel, such as exports)
// both implement it, in either encoding.
type Cipher interface {
	AppendEncrypt(ctx context.Context, dst, plaintext []byte, b envelope.Binding) ([]byte, error)
	AppendDecrypt(ctx context.Context, dst, ciphertext []byte, b envelope.Binding) ([]byte, error)
}

var (
	_ Cipher = (*envelope.Compact)(nil)
	_ Cipher = (*envelope.SelfContained)(nil)
)

// Resource identifies the resource a value belongs to, for a ScopeFunc.
type Resource struct {
	// Type is the resource type, ID its logical id. A contained resource
	// is identified by its container.
	Type, ID string
	// Patient is the logical id of the patient the resource is about: a
	// Patient's own id; otherwise from the first of subject, patient,
	// beneficiary and for that is a reference ("Patient/<id>", an absolute
	// URL ending in "Patient/<id>", or "urn:uuid:<id>" as in transaction
	// Bundles); "" when there is none, it names another resource type, or
	// the profile encrypts it.
	Patient string
}

// ScopeFunc chooses the scope of a resource's values: who shares a data
// key (see envelope.Binding). It must return the same scope for a resource
// at encryption and decryption, and it sees only elements that are not
// encrypted.
type ScopeFunc func(Resource) (string, error)

// FixedScope returns a ScopeFunc that puts every resource in scope, say a
// tenant.
func FixedScope(scope string) ScopeFunc {
	return func(Resource) (string, error) { return scope, nil }
}

// PatientScope returns a ScopeFunc that gives each patient a scope of its
// own, prefix + "/patient/" + the patient's id, so that destroying it
// (keys.Keyring.Destroy or Shred) crypto-shreds the patient's values in
// every resource about them that was encrypted with the compact form
// (envelope.NewCompact over the keyring). It does not shred
// self-contained or stream ciphertexts: those carry their data key
// wrapped by the KEK, which Destroy cannot reach; delete such documents,
// or give them a KEK of their own and destroy it in the KMS. Blind
// indexes computed under the tenant's index key (Config.IndexScope a
// FixedScope) survive the patient's keys: erase them where they are
// stored (see keys.Keyring.Shred), or use PatientScope as IndexScope too
// when every search is within one patient. Resources about no patient
// (Organization, Practitioner) get prefix.
func PatientScope(prefix string) ScopeFunc {
	return func(r Resource) (string, error) {
		if r.Patient == "" {
			return prefix, nil
		}
		return prefix + "/patient/" + r.Patient, nil
	}
}

// DefaultPadding is the default Config.Padding.
const DefaultPadding = 16

// maxPadding bounds Config.Padding.
const maxPadding = 4096

// Config configures an Encryptor.
type Config struct {
	// Cipher encrypts the values. Required.
	Cipher Cipher
	// Scope chooses each resource's scope. Required.
	Scope ScopeFunc
	// Profile lists the elements to encrypt; USCore() when nil.
	Profile *Profile
	// Padding pads each value, with JSON white space inside the
	// ciphertext, to a multiple of Padding bytes, so that ciphertext
	// lengths do not tell "Mr." from "Mrs." or a short name from a long
	// one. DefaultPadding (16) when zero; 1 turns padding off; at most
	// 4096.
	Padding int
	// AllowPlaintext lets Decrypt accept plaintext in elements the profile
	// encrypts, as in documents written before an element was added to the
	// profile. By default Decrypt refuses them with ErrNotEncrypted, so
	// that a ciphertext swapped for a plaintext value is not trusted.
	AllowPlaintext bool
	// UnknownTypes says what Encrypt and Decrypt do with a resource whose
	// type the profile does not know (see Profile.Resources). The zero
	// value, RefuseUnknown, fails closed.
	UnknownTypes UnknownPolicy

	// Codec computes the blind indexes; required with Indexes.
	Codec *fields.Codec
	// Indexes are the blind indexes to compute, such as SSNIndex and
	// MRNIndex.
	Indexes []Index
	// IndexScope chooses the scope of the index keys. Required with
	// Indexes, and usually wider than Scope: a search covers every
	// resource of an index scope, so per-patient index keys would make
	// search by SSN useless.
	IndexScope ScopeFunc
}

// UnknownPolicy says what to do with a resource of a type that the profile
// does not know. Whatever the policy, a resourceType that is not a
// resource type name fails with ErrInvalidResourceType.
type UnknownPolicy uint8

const (
	// RefuseUnknown fails with ErrUnknownResourceType, naming the
	// resource's path: a type nobody reviewed may hold PHI anywhere. It is
	// the default of the library and of the CLI.
	RefuseUnknown UnknownPolicy = iota
	// EncryptUnknown encrypts every string value of the resource (at any
	// depth, JSON keys excepted) but its resourceType and id; its
	// contained resources follow their own type. Numbers and booleans stay
	// readable. Decrypt then expects every such string to be a
	// ciphertext, unless Config.AllowPlaintext.
	EncryptUnknown
	// PassUnknown leaves the resource as it is but for the "*" paths of
	// the profile, as phicrypt did before it knew types, and counts it in
	// Report (TypeReport.Unknown). The "*" paths are applied without
	// shape checks: the profile does not know the type's elements.
	PassUnknown
)

// String returns the policy's name: refuse, encrypt or pass.
func (p UnknownPolicy) String() string {
	switch p {
	case RefuseUnknown:
		return "refuse"
	case EncryptUnknown:
		return "encrypt"
	case PassUnknown:
		return "pass"
	}
	return fmt.Sprintf("UnknownPolicy(%d)", uint8(p))
}

// ParseUnknownPolicy returns the policy named refuse, encrypt or pass.
func ParseUnknownPolicy(s string) (UnknownPolicy, error) {
	for _, p := range [...]UnknownPolicy{RefuseUnknown, EncryptUnknown, PassUnknown} {
		if s == p.String() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("fhir: unknown-type policy %q: want refuse, encrypt or pass", s)
}

// Encryptor encrypts and decrypts the PHI elements of FHIR resources in
// place. It is safe for concurrent use.
type Encryptor struct {
	cipher         Cipher
	scope          ScopeFunc
	profile        *compiled
	padding        int
	allowPlaintext bool
	unknown        UnknownPolicy
	codec          *fields.Codec
	indexes        []compiledIndex
	indexScope     ScopeFunc
	works          sync.Pool // *work
}

// NewEncryptor returns an Encryptor for cfg. Profile and index paths are
// checked here (*PathError).
func NewEncryptor(cfg Config) (*Encryptor, error) {
	if cfg.Cipher == nil {
		return nil, errors.New("fhir: Config.Cipher is nil")
	}
	if cfg.Scope == nil {
		return nil, errors.New("fhir: Config.Scope is nil")
	}
	if cfg.Profile == nil {
		cfg.Profile = USCore()
	}
	prof, err := cfg.Profile.compile()
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.Padding == 0:
		cfg.Padding = DefaultPadding
	case cfg.Padding < 0 || cfg.Padding > maxPadding:
		return nil, fmt.Errorf("fhir: Config.Padding %d is outside 1..%d", cfg.Padding, maxPadding)
	}
	if cfg.UnknownTypes > PassUnknown {
		return nil, fmt.Errorf("fhir: Config.UnknownTypes %v is not a policy", cfg.UnknownTypes)
	}
	e := &Encryptor{
		cipher:         cfg.Cipher,
		scope:          cfg.Scope,
		profile:        prof,
		padding:        cfg.Padding,
		allowPlaintext: cfg.AllowPlaintext,
		unknown:        cfg.UnknownTypes,
		codec:          cfg.Codec,
		indexScope:     cfg.IndexScope,
	}
	if e.indexes, err = compileIndexes(cfg); err != nil {
		return nil, err
	}
	e.works.New = func() any { return &work{e: e} }
	return e, nil
}

// Value encoding, version 1. A value's plaintext is this byte, the value's
// JSON text exactly as it was in the document, and white space (0x20) up to
// a multiple of the padding. JSON text records the value's type (string,
// number, boolean, object, array) and keeps numbers' digits as written.
const valueFormatV1 = 0x01

// bindingExtras separates the bindings of FHIR element values from those of
// other phicrypt values, and names the value encoding.
// It is never modified.
var bindingExtras = []envelope.Attr{{Key: "phicrypt.fhir", Value: "element/1"}}

// Encrypt encrypts the profile's elements of doc: a resource, or a Bundle
// whose entries are resources (contained resources included). See the
// package documentation for what it guarantees.
func (e *Encryptor) Encrypt(ctx context.Context, doc []byte) ([]byte, error) {
	return e.AppendEncrypt(ctx, nil, doc)
}

// AppendEncrypt is Encrypt that appends the result to dst and returns the
// extended slice; on failure it returns dst unchanged.
func (e *Encryptor) AppendEncrypt(ctx context.Context, dst, doc []byte) ([]byte, error) {
	w := e.getWork()
	defer e.putWork(w)
	out, err := w.encrypt(ctx, dst, doc)
	if err != nil {
		clear(out[len(dst):cap(out)]) // best effort: it may hold plaintext
		return dst, err
	}
	return out, nil
}

// Decrypt restores a document that Encrypt wrote: every phicrypt
// ciphertext in it is decrypted in place and the blind index extensions
// are removed, which gives back the bytes Encrypt was given. Unless
// Config.AllowPlaintext is set, an element of the profile that holds
// plaintext fails with ErrNotEncrypted.
func (e *Encryptor) Decrypt(ctx context.Context, doc []byte) ([]byte, error) {
	return e.AppendDecrypt(ctx, nil, doc)
}

// AppendDecrypt is Decrypt that appends the result to dst and returns the
// extended slice; on failure it returns dst unchanged.
func (e *Encryptor) AppendDecrypt(ctx context.Context, dst, doc []byte) ([]byte, error) {
	w := e.getWork()
	defer e.putWork(w)
	out, err := w.decrypt(ctx, dst, doc)
	if err != nil {
		clear(out[len(dst):cap(out)])
		return dst, err
	}
	return out, nil
}

func (e *Encryptor) getWork() *work { return e.works.Get().(*work) }

func (e *Encryptor) putWork(w *work) {
	clear(w.buf[:cap(w.buf)]) // held plaintext
	w.buf = w.buf[:0]
	w.t.src, w.vt.src = nil, nil
	const keep = 1 << 20 // do not pin the buffers of one huge document
	if cap(w.buf) > keep || cap(w.t.nodes) > keep/32 {
		return
	}
	e.works.Put(w)
}

// work is the state of one Encrypt or Decrypt, pooled.
type work struct {
	e           *Encryptor
	t           tree // the document
	vt          tree // a decrypted value, to validate it
	ev          evaluator
	res         []resource
	roots       []int32 // indexes into res of the binding roots, in document order
	sel         []int32 // selected nodes, then sorted by position
	edits       []edit
	buf         []byte // plaintext scratch
	path        []byte
	ext         []byte                     // inserted index and year extensions
	comp        map[int32]map[string]int32 // the _name members, by object and name (companion)
	compItems   map[int32][]int32          // checked companion arrays, their items by position
	compIndexed bool                       // comp is filled for this document
	checks      int                        // checkKind calls since prepare: tests bound it
	yearExts    map[int32]int32            // Decrypt: the year extension members, to the date before each (findYears)
	years       []bool                     // Safe Harbor: whether each resource's years stay readable (safeharbor.go)
	encrypting  bool
}

// resource is a resource found in the document.
type resource struct {
	node    int32
	typ, id string
	hasID   bool
	info    Resource
	scope   string
	known   bool // info and scope computed
	unknown bool // of a type the profile does not know
	touched bool // a value of it was encrypted or decrypted (for Report)
}

type editKind uint8

const (
	editValue  editKind = iota + 1 // encrypt or decrypt node
	editInsert                     // insert ext[from:to] at start
	editDelete                     // delete src[start:end]
)

// errOverlap is the error of two edits that overlap without one holding
// the other: the document cannot be rewritten without losing bytes, so it
// is refused rather than written wrong.
var errOverlap = fmt.Errorf("%w: overlapping elements to rewrite", ErrUnexpectedShape)

type edit struct {
	start, end int32
	kind       editKind
	node       int32
	from, to   int32
}

// prepare parses doc and finds its resources.
func (w *work) prepare(doc []byte, encrypting bool) error {
	w.encrypting = encrypting
	w.ev.t = &w.t
	w.res, w.roots, w.sel, w.edits, w.ext = w.res[:0], w.roots[:0], w.sel[:0], w.edits[:0], w.ext[:0]
	w.ev.odd = 0
	w.compIndexed, w.checks = false, 0
	clear(w.compItems)
	clear(w.yearExts)
	if err := w.t.parse(doc); err != nil {
		return err
	}
	if w.t.nodes[0].kind != kindObject {
		return ErrNotResource
	}
	return w.findResources(0, false)
}

// findResources records resource n, its contained resources and, for a
// Bundle, its entries' resources.
func (w *work) findResources(n int32, contained bool) error {
	t := &w.t
	rt := t.member(n, "resourceType")
	if rt == none || t.nodes[rt].kind != kindString {
		if n == 0 {
			return ErrNotResource
		}
		return &ElementError{Path: w.docPath(n), Err: ErrNotResource}
	}
	r := resource{node: n, typ: string(t.text(nil, rt))}
	if !isResourceType(r.typ) {
		return &ElementError{Path: w.docPath(rt), Err: ErrInvalidResourceType}
	}
	if id := t.member(n, "id"); id != none && t.nodes[id].kind == kindString {
		r.id, r.hasID = string(t.text(nil, id)), true
	}
	if w.e != nil && !w.e.profile.knows(r.typ) { // ReadIndexes has no profile
		if w.e.unknown == RefuseUnknown {
			path := r.typ // the document itself
			if n != 0 {
				path = w.docPath(n)
			}
			return &ElementError{Path: path, Err: ErrUnknownResourceType}
		}
		r.unknown = true
	}
	w.res = append(w.res, r)
	// The members that hold resources must have their FHIR JSON types:
	// a resource hidden in an odd shape would escape its profile.
	c, entries := t.member(n, "contained"), int32(none)
	if r.typ == "Bundle" {
		entries = t.member(n, "entry")
	}
	if contained {
		for _, m := range [...]int32{c, entries} {
			if m != none && t.nodes[m].kind != kindNull {
				return &ElementError{Path: w.docPath(m), Err: errNested}
			}
		}
		return nil
	}
	w.roots = append(w.roots, int32(len(w.res)-1))
	if err := w.checkArray(c); err != nil {
		return err
	}
	if c != none && t.nodes[c].kind == kindArray {
		for e := t.nodes[c].first; e != none; e = t.nodes[e].next {
			if err := w.checkKind(e, kindObject); err != nil {
				return err
			}
			if t.nodes[e].kind == kindObject {
				if err := w.findResources(e, true); err != nil {
					return err
				}
			}
		}
	}
	if err := w.checkArray(entries); err != nil {
		return err
	}
	if entries != none && t.nodes[entries].kind == kindArray {
		for e := t.nodes[entries].first; e != none; e = t.nodes[e].next {
			if err := w.checkKind(e, kindObject); err != nil {
				return err
			}
			rn := t.member(e, "resource")
			if err := w.checkKind(rn, kindObject); err != nil {
				return err
			}
			if rn != none && t.nodes[rn].kind == kindObject {
				if err := w.findResources(rn, false); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// errNested is the shape error of a contained resource that holds
// resources itself (FHIR's dom-2): they would escape the profile.
var errNested = fmt.Errorf("%w: a contained resource cannot hold resources", ErrUnexpectedShape)

// checkArray checks that member m, if present and not null, is an array.
func (w *work) checkArray(m int32) error { return w.checkKind(m, kindArray) }

// checkKind checks that node n, if present and not null, has kind want.
// A ciphertext is accepted too: the element was encrypted whole (Encrypt
// refuses ciphertexts before it checks shapes).
func (w *work) checkKind(n int32, want kind) error {
	w.checks++
	if n == none || w.t.nodes[n].kind == want || w.t.nodes[n].kind == kindNull || w.t.hasPrefix(n, envelope.ArmorPrefix) {
		return nil
	}
	return w.shapeError(n, want)
}

// shapeError is the error of node n, found where a value of kind want
// belongs. It names the path and the JSON types, never the value.
func (w *work) shapeError(n int32, want kind) error {
	return &ElementError{Path: w.docPath(n), Err: fmt.Errorf("%w: %s where %s is expected", ErrUnexpectedShape, kindName(w.t.nodes[n].kind), kindName(want))}
}

// kindName names a JSON type with its article, for errors.
func kindName(k kind) string {
	switch k {
	case kindNull:
		return "null"
	case kindFalse, kindTrue:
		return "a boolean"
	case kindNumber:
		return "a number"
	case kindString:
		return "a string"
	case kindArray:
		return "an array"
	}
	return "an object"
}

// rootOf returns the index in res of the binding root of node n: the
// innermost top-level or Bundle entry resource that holds it. It walks up
// from n (at most MaxDepth levels), so that it costs the same for every
// node of a Bundle with many entries.
func (w *work) rootOf(n int32) int {
	t := &w.t
	for m := n; m != none; m = t.nodes[m].parent {
		i, ok := slices.BinarySearchFunc(w.roots, m, func(ri int32, m int32) int { return int(w.res[ri].node - m) })
		if ok {
			return int(w.roots[i])
		}
	}
	return int(w.roots[0])
}

// selectProfile puts in w.sel the nodes the profile selects, with their
// primitive extensions (_name members), sorted by position, without nulls,
// duplicates or nodes inside other selected nodes. For a resource of an
// unknown type, it follows the UnknownPolicy. An element the profile
// names that has an odd JSON type fails with ErrUnexpectedShape.
func (w *work) selectProfile() error {
	t := &w.t
	for i := range w.res {
		r := &w.res[i]
		if r.unknown && w.e.unknown == EncryptUnknown {
			w.selectStrings(r.node)
			continue
		}
		own, any := w.e.profile.paths(r.typ)
		w.ev.check = !r.unknown
		for _, p := range own {
			w.sel = w.ev.selectPath(w.sel, r.node, p.steps)
		}
		for _, p := range any {
			w.sel = w.ev.selectPath(w.sel, r.node, p.steps)
		}
		w.ev.check = false
		if odd, want := w.ev.oddNode(); odd != none {
			return w.shapeError(odd, want)
		}
	}
	if w.e.profile.harbor != nil {
		w.selectHarbor(w.e.profile.harbor)
	}
	for _, n := range w.sel {
		c := w.companion(n)
		if _, year := w.yearExts[c]; c == none || year {
			continue
		}
		inArray := t.nodes[t.nodes[n].parent].kind == kindArray
		if k := t.nodes[c].kind; k != kindArray && k != kindNull && inArray {
			// _given must be an array beside the array given: an object
			// would hold the extensions of no value.
			return w.shapeError(c, kindArray)
		}
		if t.nodes[c].kind != kindArray || !inArray {
			w.sel = append(w.sel, c)
			continue
		}
		items, err := w.companionItems(c)
		if err != nil {
			return err
		}
		if pos := t.nodes[n].pos; int(pos) < len(items) {
			w.sel = append(w.sel, items[pos])
		}
	}
	slices.SortFunc(w.sel, func(a, b int32) int { return int(t.nodes[a].start) - int(t.nodes[b].start) })
	out := w.sel[:0]
	end := int32(-1)
	for _, n := range w.sel {
		nd := &t.nodes[n]
		if nd.kind == kindNull || nd.start < end {
			continue // null, a duplicate, or inside the previous node
		}
		out = append(out, n)
		end = nd.end
	}
	w.sel = out
	return nil
}

// companion returns the member that holds the extensions of primitive n
// (FHIR JSON's _name, an array of them when n is an element of an array),
// or none. The _name members of the document are indexed once, so that
// an object with many members costs no scan per member.
func (w *work) companion(n int32) int32 {
	t := &w.t
	nd := &t.nodes[n]
	if nd.kind == kindObject || nd.kind == kindArray || nd.parent == none {
		return none
	}
	member := n
	if t.nodes[nd.parent].kind == kindArray {
		member = nd.parent
	}
	obj := t.nodes[member].parent
	if obj == none || t.nodes[obj].kind != kindObject {
		return none
	}
	if !w.compIndexed {
		w.indexCompanions()
	}
	byName := w.comp[obj]
	if byName == nil {
		return none
	}
	var buf [64]byte
	if c, ok := byName[string(t.key(buf[:0], member))]; ok {
		return c
	}
	return none
}

// indexCompanions fills w.comp with every member whose name starts with
// '_', by object and by the name without the '_'.
func (w *work) indexCompanions() {
	t := &w.t
	clear(w.comp)
	if w.comp == nil {
		w.comp = map[int32]map[string]int32{}
	}
	var buf []byte
	for i := range t.nodes {
		nd := &t.nodes[i]
		if nd.parent == none || t.nodes[nd.parent].kind != kindObject {
			continue
		}
		if !nd.keyEsc && (nd.keyEnd == nd.keyStart || t.src[nd.keyStart] != '_') {
			continue
		}
		buf = t.key(buf[:0], int32(i))
		if len(buf) == 0 || buf[0] != '_' {
			continue
		}
		byName := w.comp[nd.parent]
		if byName == nil {
			byName = map[string]int32{}
			w.comp[nd.parent] = byName
		}
		byName[string(buf[1:])] = int32(i)
	}
	w.compIndexed = true
}

// companionItems checks, once per document, that the items of companion
// array c (a _given) are objects or null, and returns them by position.
func (w *work) companionItems(c int32) ([]int32, error) {
	if items, ok := w.compItems[c]; ok {
		return items, nil
	}
	t := &w.t
	var items []int32
	for e := t.nodes[c].first; e != none; e = t.nodes[e].next {
		if err := w.checkKind(e, kindObject); err != nil {
			return nil, err // an item of _given is an Element: an object, or null
		}
		items = append(items, e)
	}
	if w.compItems == nil {
		w.compItems = map[int32][]int32{}
	}
	w.compItems[c] = items
	return items, nil
}

// selectStrings appends to w.sel every string value of resource node r but
// its resourceType and id, and not inside its contained resources.
func (w *work) selectStrings(r int32) {
	t := &w.t
	end := t.nodes[r].end
	for n := r + 1; int(n) < len(t.nodes) && t.nodes[n].start < end; n++ {
		nd := &t.nodes[n]
		if nd.parent == r && (t.keyIs(n, "resourceType") || t.keyIs(n, "id") || t.keyIs(n, "contained")) {
			if t.keyIs(n, "contained") {
				for n+1 < int32(len(t.nodes)) && t.nodes[n+1].start < nd.end {
					n++ // skip the contained resources: they follow their own type
				}
			}
			continue
		}
		if nd.kind == kindString {
			w.sel = append(w.sel, n)
		}
	}
}

// covered reports whether node n is selected or inside a selected node
// (w.sel sorted).
func (w *work) covered(n int32) bool {
	t := &w.t
	start := t.nodes[n].start
	i, _ := slices.BinarySearchFunc(w.sel, start, func(s int32, start int32) int { return int(t.nodes[s].start) - int(start) })
	if i < len(w.sel) && t.nodes[w.sel[i]].start == start {
		return true
	}
	return i > 0 && t.nodes[w.sel[i-1]].end >= t.nodes[n].end
}

// describe computes the Resource and scope of res[ri] once.
func (w *work) describe(ri int) (*resource, error) {
	r := &w.res[ri]
	if r.known {
		return r, nil
	}
	r.info = Resource{Type: r.typ, ID: r.id, Patient: w.patientOf(r)}
	s, err := w.e.scope(r.info)
	if err != nil {
		return nil, &ElementError{Path: w.docPath(r.node), Err: fmt.Errorf("scope: %w", err)}
	}
	r.scope, r.known = s, true
	return r, nil
}

// patientOf finds the patient a resource is about (see Resource.Patient).
func (w *work) patientOf(r *resource) string {
	if r.typ == "Patient" {
		return r.id
	}
	t := &w.t
	for _, k := range [...]string{"subject", "patient", "beneficiary", "for"} {
		ref := t.member(t.member(r.node, k), "reference")
		if ref == none || t.nodes[ref].kind != kindString {
			continue
		}
		if w.encrypting && w.covered(ref) || !w.encrypting && t.hasPrefix(ref, envelope.ArmorPrefix) {
			return "" // encrypted by the profile: unknown on both sides
		}
		return patientID(string(t.text(nil, ref)))
	}
	return ""
}

// patientID returns the patient id of a reference, or "".
func patientID(ref string) string {
	if id, ok := strings.CutPrefix(ref, "urn:uuid:"); ok {
		return id
	}
	i := strings.Index(ref, "Patient/")
	if i < 0 || (i > 0 && ref[i-1] != '/') {
		return ""
	}
	id, _, _ := strings.Cut(ref[i+len("Patient/"):], "/")
	return id
}

// binding returns the binding of node n.
func (w *work) binding(n int32) (envelope.Binding, error) {
	ri := w.rootOf(n)
	r, err := w.describe(ri)
	if err != nil {
		return envelope.Binding{}, err
	}
	if !r.hasID {
		return envelope.Binding{}, &ElementError{Path: w.docPath(r.node), Err: ErrMissingID}
	}
	w.path = w.t.appendPath(w.path[:0], r.node, n, false)
	return envelope.Binding{
		Scope:    r.scope,
		Table:    r.typ,
		Column:   string(w.path),
		RecordID: r.id,
		Extra:    bindingExtras,
	}, nil
}

// docPath returns the path of node n from the document's root, for errors.
func (w *work) docPath(n int32) string {
	typ := "resource"
	if len(w.res) > 0 {
		typ = w.res[0].typ
	}
	return string(w.t.appendPath([]byte(typ), 0, n, true))
}

// encrypt writes the encrypted document after dst.
func (w *work) encrypt(ctx context.Context, dst, doc []byte) ([]byte, error) {
	if err := w.prepare(doc, true); err != nil {
		return dst, err
	}
	t := &w.t
	for i := range t.nodes {
		if t.hasPrefix(int32(i), envelope.ArmorPrefix) {
			return dst, &ElementError{Path: w.docPath(int32(i)), Err: ErrEncryptedInput}
		}
	}
	if err := w.selectProfile(); err != nil {
		return dst, err
	}
	for _, n := range w.sel {
		w.edits = append(w.edits, edit{start: t.nodes[n].start, end: t.nodes[n].end, kind: editValue, node: n})
	}
	if err := w.addYears(); err != nil {
		return dst, err
	}
	if err := w.addIndexes(ctx); err != nil {
		return dst, err
	}
	slices.SortStableFunc(w.edits, func(a, b edit) int { return int(a.start) - int(b.start) })

	out, prev := dst, int32(0)
	for _, ed := range w.edits {
		if ed.start < prev {
			return out, &ElementError{Path: w.docPath(ed.node), Err: errOverlap}
		}
		out = append(out, doc[prev:ed.start]...)
		switch ed.kind {
		case editInsert:
			out = append(out, w.ext[ed.from:ed.to]...)
		case editValue:
			var err error
			if out, err = w.encryptValue(ctx, out, ed.node); err != nil {
				return out, err
			}
		}
		prev = ed.end
	}
	return append(out, doc[prev:]...), nil
}

// encryptValue appends node n's value, encrypted and armored, as a JSON
// string.
func (w *work) encryptValue(ctx context.Context, out []byte, n int32) ([]byte, error) {
	b, err := w.binding(n)
	if err != nil {
		return out, err
	}
	nd := &w.t.nodes[n]
	w.buf = append(append(w.buf[:0], valueFormatV1), w.t.src[nd.start:nd.end]...)
	for len(w.buf)%w.e.padding != 0 {
		w.buf = append(w.buf, ' ')
	}
	// A Cipher may grow dst to the exact size it needs; the closing quote's
	// append then grows it geometrically, so the output is copied O(log n)
	// times, not once per value.
	out = append(out, '"')
	mark := len(out)
	out, err = w.e.cipher.AppendEncrypt(ctx, out, w.buf, b)
	if err != nil {
		return out, &ElementError{Path: w.docPath(n), Err: err}
	}
	if !format.IsArmored(out[mark:]) {
		// A Cipher configured for the binary encoding: armor it here.
		bin := append([]byte(nil), out[mark:]...)
		out = format.AppendArmor(out[:mark], bin)
	}
	return append(out, '"'), nil
}

// decrypt writes the decrypted document after dst.
func (w *work) decrypt(ctx context.Context, dst, doc []byte) ([]byte, error) {
	if err := w.prepare(doc, false); err != nil {
		return dst, err
	}
	t := &w.t
	if err := w.findYears(); err != nil {
		return dst, err
	}
	if !w.e.allowPlaintext {
		if err := w.selectProfile(); err != nil {
			return dst, err
		}
		for _, n := range w.sel {
			if !t.hasPrefix(n, envelope.ArmorPrefix) && !w.inOwnExtension(n) {
				return dst, &ElementError{Path: w.docPath(n), Err: ErrNotEncrypted}
			}
		}
	}
	for i := range t.nodes {
		if t.hasPrefix(int32(i), envelope.ArmorPrefix) {
			w.edits = append(w.edits, edit{start: t.nodes[i].start, end: t.nodes[i].end, kind: editValue, node: int32(i)})
		}
	}
	for _, ri := range w.roots {
		w.removeIndexes(w.res[ri].node)
	}
	w.removeYears()
	slices.SortStableFunc(w.edits, func(a, b edit) int { return int(a.start) - int(b.start) })

	out, prev := dst, int32(0)
	for _, ed := range w.edits {
		if ed.start < prev {
			if ed.end <= prev {
				continue // inside a removed extension
			}
			return out, &ElementError{Path: w.docPath(ed.node), Err: errOverlap}
		}
		out = append(out, doc[prev:ed.start]...)
		if ed.kind == editValue {
			var err error
			if out, err = w.decryptValue(ctx, out, ed.node); err != nil {
				return out, err
			}
		}
		prev = ed.end
	}
	return append(out, doc[prev:]...), nil
}

// decryptValue appends the value that the ciphertext in string node n holds.
func (w *work) decryptValue(ctx context.Context, out []byte, n int32) ([]byte, error) {
	b, err := w.binding(n)
	if err != nil {
		return out, err
	}
	nd := &w.t.nodes[n]
	var ct []byte
	if nd.esc {
		ct = w.t.text(nil, n)
	} else {
		ct = w.t.src[nd.start+1 : nd.end-1]
	}
	w.buf, err = w.e.cipher.AppendDecrypt(ctx, w.buf[:0], ct, b)
	if err != nil {
		return out, &ElementError{Path: w.docPath(n), Err: err}
	}
	v, ok := w.value(w.buf)
	if !ok {
		return out, &ElementError{Path: w.docPath(n), Err: ErrMalformedValue}
	}
	return append(out, v...), nil
}

// value checks a decrypted plaintext and returns the JSON value it holds.
func (w *work) value(pt []byte) ([]byte, bool) {
	if len(pt) < 2 || pt[0] != valueFormatV1 {
		return nil, false
	}
	v := pt[1:]
	for len(v) > 0 && v[len(v)-1] == ' ' {
		v = v[:len(v)-1]
	}
	if len(v) == 0 || v[0] == ' ' || v[0] == '\t' || v[0] == '\n' || v[0] == '\r' {
		return nil, false
	}
	if err := w.vt.parse(v); err != nil {
		return nil, false
	}
	return v, true
}
