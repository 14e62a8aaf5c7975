package fields

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/phicrypt/phicrypt/keys"
)

// MaxIndexBits is the longest blind index, in bits.
const MaxIndexBits = 64

// BlindIndex is the value of a blind index: a truncated HMAC-SHA-256 of
// the normalized plaintext of one or more encrypted fields, under an index
// key of the keyring, prefixed by the key's version (a uvarint). Equal
// plaintexts give equal index values, so a database finds rows by value
// without decrypting; the truncation makes many plaintexts share each
// value, so the index alone does not identify one (see SuggestIndexBits),
// and searches post-filter with Codec.Match.
//
// It is a driver.Valuer and sql.Scanner ([]byte, or base64url text with
// the index tag's text option); printing it shows nothing of its value.
// Like Encrypted, it holds its value behind an unsafe.Pointer, so that
// go-spew, testify's diffs and fmt's raw struct printing show an address
// and a length, and reflect.DeepEqual (assert.Equal) compares two
// BlindIndex values by identity: use Equal to compare index values.
type BlindIndex struct {
	// _ is always nil. ORMs infer a Valuer's column type from its first
	// field (GORM does): this one makes it binary.
	_ *[]byte
	_ [0]func() // not comparable: use Equal
	// p is the first byte of the value, nil when NULL; n its length. The
	// bytes are never changed once stored.
	p    unsafe.Pointer
	n    int
	text bool
}

// newBlindIndex returns an index holding b, which it keeps.
func newBlindIndex(b []byte, text bool) BlindIndex {
	if b == nil {
		return BlindIndex{}
	}
	return BlindIndex{p: unsafe.Pointer(unsafe.SliceData(b)), n: len(b), text: text}
}

// bytes returns the value, nil when NULL. Its capacity is its length.
func (x BlindIndex) bytes() []byte {
	if x.p == nil {
		return nil
	}
	return unsafe.Slice((*byte)(x.p), x.n)
}

// Value implements driver.Valuer: NULL when not computed.
func (x BlindIndex) Value() (driver.Value, error) {
	switch {
	case x.p == nil:
		return nil, nil
	case x.text:
		return base64.RawURLEncoding.EncodeToString(x.bytes()), nil
	}
	return x.bytes(), nil
}

// Scan implements sql.Scanner.
func (x *BlindIndex) Scan(src any) error {
	switch s := src.(type) {
	case nil:
		*x = BlindIndex{}
	case []byte:
		*x = newBlindIndex(bytes.Clone(s), false)
	case string:
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return fmt.Errorf("fields: blind index is not base64url")
		}
		*x = newBlindIndex(b, true)
	default:
		return fmt.Errorf("fields: cannot scan %T into a blind index", src)
	}
	return nil
}

// IsNull reports whether the index has no value.
func (x BlindIndex) IsNull() bool { return x.p == nil }

// Equal reports whether two index values are equal.
func (x BlindIndex) Equal(y BlindIndex) bool { return bytes.Equal(x.bytes(), y.bytes()) }

// Version returns the index key version that computed the value, or 0.
func (x BlindIndex) Version() uint32 {
	v, n := binary.Uvarint(x.bytes())
	if n <= 0 || v > math.MaxUint32 {
		return 0
	}
	return uint32(v)
}

// String returns a placeholder, never the value.
func (x BlindIndex) String() string {
	if x.p == nil {
		return "fields.BlindIndex(null)"
	}
	return fmt.Sprintf("fields.BlindIndex(version %d)", x.Version())
}

// GoString is String.
func (x BlindIndex) GoString() string { return x.String() }

// Format prints String for every verb.
func (x BlindIndex) Format(f fmt.State, verb rune) { fmt.Fprint(f, x.String()) }

// LogValue logs the placeholder.
func (x BlindIndex) LogValue() slog.Value { return slog.StringValue(x.String()) }

// MarshalJSON writes "[redacted]", or null: index values stay out of logs
// and API responses, like the values they index.
func (x BlindIndex) MarshalJSON() ([]byte, error) {
	if x.p == nil {
		return []byte("null"), nil
	}
	return []byte(`"[redacted]"`), nil
}

// UnmarshalJSON accepts null only.
func (x *BlindIndex) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) != "null" {
		return ErrJSON
	}
	*x = BlindIndex{}
	return nil
}

// A normalizer appends a normalized form of s to dst.
type normalizer func(dst []byte, s []byte) []byte

var normalizers = map[string]normalizer{
	// trim removes leading and trailing white space.
	"trim": func(dst, s []byte) []byte { return append(dst, bytes.TrimSpace(s)...) },
	// lower lower-cases (Unicode simple mapping).
	"lower": func(dst, s []byte) []byte {
		if isASCII(s) {
			for _, c := range s {
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				dst = append(dst, c)
			}
			return dst
		}
		return append(dst, bytes.ToLower(s)...)
	},
	// fold applies Unicode full case folding, for caseless matching
	// ("Straße" and "STRASSE" fold alike).
	"fold": func(dst, s []byte) []byte { return append(dst, cases.Fold().Bytes(s)...) },
	// digits keeps the decimal digits only, as ASCII ("999-12-3456" →
	// "999123456"): every Unicode decimal digit (category Nd) becomes the
	// ASCII digit of its value, so a full-width "９９９-１２-３４５６"
	// normalizes like "999-12-3456".
	"digits": func(dst, s []byte) []byte {
		// ASCII first, written in place: no rune decoding, no append.
		n := len(dst)
		dst = slices.Grow(dst, len(s))[:n+len(s)]
		i := 0
		for ; i < len(s) && s[i] < utf8.RuneSelf; i++ {
			c := s[i]
			dst[n] = c
			if '0' <= c && c <= '9' {
				n++
			}
		}
		if n < len(dst) {
			dst[n] = 0 // the last byte written, if not a digit: plaintext
		}
		dst, s = dst[:n], s[i:]
		for len(s) > 0 {
			if c := s[0]; c < utf8.RuneSelf {
				if '0' <= c && c <= '9' {
					dst = append(dst, c)
				}
				s = s[1:]
				continue
			}
			r, n := utf8.DecodeRune(s)
			if d, ok := digitValue(r); ok {
				dst = append(dst, '0'+d)
			}
			s = s[n:]
		}
		return dst
	},
	// alnum keeps letters and digits only.
	"alnum": func(dst, s []byte) []byte {
		for len(s) > 0 {
			r, n := utf8.DecodeRune(s)
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				dst = append(dst, s[:n]...)
			}
			s = s[n:]
		}
		return dst
	},
	// nfc puts the text in Unicode Normalization Form C, so composed and
	// decomposed accents match.
	"nfc": func(dst, s []byte) []byte { return norm.NFC.Append(dst, s...) },
	// collapse turns every run of white space into one space.
	"collapse": func(dst, s []byte) []byte {
		space := false
		for _, f := range bytes.Fields(s) {
			if space {
				dst = append(dst, ' ')
			}
			dst, space = append(dst, f...), true
		}
		return dst
	},
}

// digitValue returns the value of a Unicode decimal digit. Unicode encodes
// decimal digits (Nd) in runs of ten from zero to nine, and unicode.Nd's
// ranges start at a zero (TestDigitsNormalizer checks both).
func digitValue(r rune) (byte, bool) {
	if !unicode.Is(unicode.Nd, r) {
		return 0, false
	}
	for _, rg := range unicode.Nd.R16 {
		if rune(rg.Lo) <= r && r <= rune(rg.Hi) {
			return byte((r - rune(rg.Lo)) % 10), true
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if rune(rg.Lo) <= r && r <= rune(rg.Hi) {
			return byte((r - rune(rg.Lo)) % 10), true
		}
	}
	return 0, false
}

func normalizerNames() string {
	var names []string
	for n := range normalizers {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func isASCII(s []byte) bool {
	for _, c := range s {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// SuggestIndexBits returns the blind index length for a table of rows rows
// whose indexed value carries about entropyBits bits (e.g. 30 for an SSN;
// pass 0 if unknown). It follows CipherSweet's planning rule: with L bits,
// each index value is shared by C = rows/2^L rows on average, and C must
// stay at least 2 so an index value never singles out one row, while C
// below sqrt(rows) keeps searches selective. It returns the largest safe L,
// also kept at least one bit under the value's entropy, and an error when
// no length is safe (fewer than 4 rows or bits).
func SuggestIndexBits(rows int64, entropyBits float64) (int, error) {
	if rows < 4 {
		return 0, fmt.Errorf("fields: %d rows are too few for a blind index that does not single out rows", rows)
	}
	l := int(math.Floor(math.Log2(float64(rows)))) - 1
	if entropyBits > 0 {
		l = min(l, int(math.Floor(entropyBits))-1)
	}
	l = min(l, MaxIndexBits)
	if l < 1 {
		return 0, fmt.Errorf("fields: no safe blind index length for %d rows of %.0f bits", rows, entropyBits)
	}
	return l, nil
}

// indexInput appends the MAC input of an index to dst: each source's
// normalized text as a uint32 length and bytes. tmp is scratch space. It
// reports false when a source is NULL, whatever the others hold, and
// fails with ErrNotOpened when none is NULL and one is not opened.
func indexInput(dst []byte, tmp *[2][]byte, p *plan, ip *indexPlan, rv reflect.Value) ([]byte, bool, error) {
	base := recordBase(rv)
	var notOpened error
	for _, s := range ip.sources {
		switch p.fields[s].field(base).fieldState() {
		case stateNull:
			return dst, false, nil
		case stateScanned:
			notOpened = ErrNotOpened
		}
	}
	if notOpened != nil {
		return dst, false, notOpened
	}
	for i, s := range ip.sources {
		vf := p.fields[s].field(base)
		text, err := vf.indexText(tmp[0][:0])
		if err != nil {
			return dst, false, err
		}
		tmp[0] = text
		for _, n := range ip.chain(i) {
			tmp[1] = n(tmp[1][:0], tmp[0])
			tmp[0], tmp[1] = tmp[1], tmp[0]
		}
		if len(text) > 0 && len(tmp[0]) == 0 {
			// Normalized away ("N/A" under digits): indexing it would
			// make every such value match every other.
			return dst, false, nil
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(tmp[0])))
		dst = append(dst, tmp[0]...)
	}
	return dst, true, nil
}

// scratch is pooled working memory for one Seal, Open or index
// computation; it is cleared before it returns to the pool, since it held
// plaintext.
type scratch struct {
	buf [3][]byte
	mac [64]byte
	// ct is where Seal builds a record's ciphertexts, one after the
	// other, and each one's AAD past them, before copying them out.
	ct []byte
}

func (c *Codec) getScratch() *scratch { return c.scratches.Get().(*scratch) }

// maxPooledScratch is the largest buffer a scratch keeps in the pool: a
// larger one (from a large value) is cleared once and dropped, so that
// later calls do not clear it again on every return.
const maxPooledScratch = 64 << 10

func (c *Codec) putScratch(s *scratch) {
	for i := range s.buf {
		clearScratch(&s.buf[i])
	}
	clear(s.mac[:])
	clearScratch(&s.ct)
	c.scratches.Put(s)
}

// clearScratch clears *b up to its capacity (scratch space past its
// length may hold plaintext or an AAD too), and drops it when it is too
// large to keep. It leaves a kept slice as it is, length included: every
// user starts from b[:0], and storing the same slice back would cost a
// write barrier per buffer while the GC runs.
func clearScratch(b *[]byte) {
	clear((*b)[:cap(*b)])
	if cap(*b) > maxPooledScratch {
		*b = nil
	}
}

func (s *scratch) tmp() *[2][]byte { return (*[2][]byte)(s.buf[1:3]) }

// indexValue computes the index value of msg under key: the key version as
// a uvarint and the first bits of the HMAC, the unused low bits of the
// last byte cleared. mac is scratch space for the full HMAC.
func indexValue(dst, mac []byte, key *keys.IndexKey, msg []byte, bits int) []byte {
	sum := key.Sum(mac[:0], msg)
	n := (bits + 7) / 8
	dst = binary.AppendUvarint(dst, uint64(key.Version()))
	dst = append(dst, sum[:n]...)
	if r := bits % 8; r != 0 {
		dst[len(dst)-1] &= byte(0xFF << (8 - r))
	}
	return dst
}

// indexScope returns the scope of index ip's key for record rv: the
// index's scope field, or else the record's scope. Neither may be empty
// (ErrMissingRecordID): an index key of the empty scope would belong to no
// one, and could never be shredded.
func (p *plan) indexScope(ip *indexPlan, rv reflect.Value, recordScope string) (string, error) {
	if ip.scope == nil {
		if recordScope == "" {
			return "", fmt.Errorf("%w (%s)", ErrMissingRecordID, p.scope.name)
		}
		return recordScope, nil
	}
	s, err := ip.scope.read(rv)
	if err == nil && s == "" {
		err = fmt.Errorf("%w (%s)", ErrMissingRecordID, ip.scope.name)
	}
	return s, err
}

// computeIndex computes a blind index from its sources' plaintext, for
// Seal to store once the whole record is sealed. A NULL source makes the
// index NULL. When a source was read and not opened, keep reports that
// the stored index stays as it is: only if it has a value and no other
// source changed (holds plaintext not sealed yet), else the index would
// go stale, and computeIndex fails with ErrNotOpened.
func (c *Codec) computeIndex(ctx context.Context, p *plan, ip *indexPlan, rv reflect.Value, scope string, sc *scratch) (v BlindIndex, keep bool, err error) {
	v, err = c.indexValue(ctx, p, ip, rv, scope, sc)
	if errors.Is(err, ErrNotOpened) && !ip.index(recordBase(rv)).IsNull() && !p.sourceChanged(ip, rv) {
		return BlindIndex{}, true, nil
	}
	if err != nil {
		return BlindIndex{}, false, &FieldError{Type: p.typ.String(), Field: ip.name, Column: ip.column, Err: err}
	}
	return v, false, nil
}

// sourceChanged reports whether a source of index ip holds plaintext not
// sealed yet.
func (p *plan) sourceChanged(ip *indexPlan, rv reflect.Value) bool {
	base := recordBase(rv)
	for _, s := range ip.sources {
		if p.fields[s].field(base).fieldState() == statePlain {
			return true
		}
	}
	return false
}

// indexValue computes the value of index ip for record rv with the active
// index key; a NULL source gives a NULL index.
func (c *Codec) indexValue(ctx context.Context, p *plan, ip *indexPlan, rv reflect.Value, scope string, sc *scratch) (BlindIndex, error) {
	msg, ok, err := indexInput(sc.buf[0][:0], sc.tmp(), p, ip, rv)
	sc.buf[0] = msg
	if err != nil || !ok {
		return BlindIndex{}, err
	}
	iscope, err := p.indexScope(ip, rv, scope)
	if err != nil {
		return BlindIndex{}, err
	}
	key, err := c.cfg.Keyring.IndexKey(ctx, iscope, p.table, ip.column)
	if err != nil {
		return BlindIndex{}, err
	}
	out := indexValue(make([]byte, 0, binary.MaxVarintLen32+(ip.bits+7)/8), sc.mac[:0], key.For(ip.params), msg, ip.bits)
	return newBlindIndex(out, ip.text), nil
}

// IndexValue returns the value that blind index index (the Go name of a
// BlindIndex field) of template's type takes for the plaintext in
// template's source fields, under the active index key: what Seal stores.
// To search, use IndexTerms, which also covers index key versions being
// retired. An empty scope fails with ErrMissingRecordID.
func (c *Codec) IndexValue(ctx context.Context, template any, index string) (BlindIndex, error) {
	p, ip, rv, err := c.indexOf(template, index)
	if err != nil {
		return BlindIndex{}, err
	}
	scope, err := p.scope.read(rv)
	if err != nil {
		return BlindIndex{}, err
	}
	sc := c.getScratch()
	defer c.putScratch(sc)
	return c.indexValue(ctx, p, ip, rv, scope, sc)
}

// IndexTerms returns the values to search for in blind index index (the Go
// name of a BlindIndex field) of template's type, for the plaintext in
// template's source fields: one value per live index key version, the
// active one first, so a search keeps working while an index rotation is
// under way. Use them in WHERE column IN (...), then decrypt the rows and
// keep those for which Match is true: a truncated index also matches other
// plaintexts. template must have its scope (or the index's scope field)
// set, or the call fails with ErrMissingRecordID; its record id is not
// needed. Warm searches make no key store call (see keys.Keyring.IndexKeys).
func (c *Codec) IndexTerms(ctx context.Context, template any, index string) ([]BlindIndex, error) {
	p, ip, rv, err := c.indexOf(template, index)
	if err != nil {
		return nil, err
	}
	scope, err := p.scope.read(rv)
	if err != nil {
		return nil, err
	}
	if scope, err = p.indexScope(ip, rv, scope); err != nil {
		return nil, err
	}
	sc := c.getScratch()
	defer c.putScratch(sc)
	msg, ok, err := indexInput(sc.buf[0][:0], sc.tmp(), p, ip, rv)
	sc.buf[0] = msg
	if err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%w: the search term's source fields of %s are empty or normalized away", ErrEmptyTerm, ip.name)
		}
		return nil, err
	}
	var arr [4]*keys.IndexKey
	ks, err := c.cfg.Keyring.AppendIndexKeys(ctx, arr[:0], scope, p.table, ip.column)
	if err != nil {
		return nil, err
	}
	return indexTerms(ks, ip.params, sc.mac[:0], msg, ip.bits, ip.text), nil
}

// oneTerm is the result of a search with one live index key version (the
// usual case) in a single allocation: the BlindIndex and the bytes it
// points to.
type oneTerm struct {
	x [1]BlindIndex
	b [binary.MaxVarintLen32 + MaxIndexBits/8]byte
}

// indexTerms computes the index value of msg under each key in ks (for
// the index definition params, see IndexKey.For), in two allocations (one
// when ks holds one key): the values share one array.
func indexTerms(ks []*keys.IndexKey, params string, mac, msg []byte, bits int, text bool) []BlindIndex {
	if len(ks) == 1 {
		t := new(oneTerm)
		t.x[0] = newBlindIndex(indexValue(t.b[:0], mac, ks[0].For(params), msg, bits), text)
		return t.x[:]
	}
	out := make([]BlindIndex, len(ks))
	buf := make([]byte, 0, len(ks)*(binary.MaxVarintLen32+(bits+7)/8))
	for i, k := range ks {
		at := len(buf)
		buf = indexValue(buf, mac, k.For(params), msg, bits)
		out[i] = newBlindIndex(buf[at:len(buf):len(buf)], text)
	}
	return out
}

// Match reports whether the opened record rec has the template's scope
// (the scope that keys the index: the index's scope field, or the
// record's) and, in the sources of blind index index, the same normalized
// plaintext as template: the post-filter that removes the false
// positives of a truncated index, and the rows of other scopes, whose
// index values under their own keys may equal a term by chance.
func (c *Codec) Match(rec, template any, index string) (bool, error) {
	p, ip, rv, err := c.indexOf(rec, index)
	if err != nil {
		return false, err
	}
	_, _, tv, err := c.indexOf(template, index)
	if err != nil {
		return false, err
	}
	if tv.Type() != rv.Type() {
		return false, fmt.Errorf("fields: record and template are of different types")
	}
	scope := &p.scope
	if ip.scope != nil {
		scope = ip.scope
	}
	rs, err := scope.read(rv)
	if err != nil {
		return false, err
	}
	ts, err := scope.read(tv)
	if err != nil || rs != ts {
		return false, err
	}
	sa, sb := c.getScratch(), c.getScratch()
	defer c.putScratch(sa)
	defer c.putScratch(sb)
	a, okA, err := indexInput(sa.buf[0][:0], sa.tmp(), p, ip, rv)
	sa.buf[0] = a
	if err != nil {
		return false, err
	}
	b, okB, err := indexInput(sb.buf[0][:0], sb.tmp(), p, ip, tv)
	sb.buf[0] = b
	if err != nil {
		return false, err
	}
	return okA && okB && bytes.Equal(a, b), nil
}

func (c *Codec) indexOf(v any, index string) (*plan, *indexPlan, reflect.Value, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return nil, nil, rv, ErrUnsupported
	}
	rv = rv.Elem()
	p, err := c.plan(rv.Type())
	if err != nil {
		return nil, nil, rv, err
	}
	for i := range p.indexes {
		if p.indexes[i].name == index {
			return p, &p.indexes[i], rv, nil
		}
	}
	return nil, nil, rv, fmt.Errorf("fields: %v has no blind index %q", rv.Type(), index)
}

// IndexSpec describes a blind index outside a struct: over values of JSON
// documents or files, say, for code that builds on this package (the FHIR
// encryptor does). Normalize is as in the index tag, e.g. "trim+fold".
type IndexSpec struct {
	Table, Column string
	Bits          int
	Normalize     string
	// Text stores the value as base64url text.
	Text bool
}

// ErrInvalidIndexSpec means an IndexSpec lacks a table or column, has bits
// outside 1..MaxIndexBits, or names an unknown normalizer.
var ErrInvalidIndexSpec = errors.New("fields: invalid IndexSpec")

// ErrEmptyTerm means a search term has nothing to search for: a source
// field of the index is NULL in the template, or its normalizers reduce
// it to nothing (a blank name under trim, "N/A" under digits), as Seal
// leaves such a value out of the index. It is the caller's input that is
// at fault: a service answers it as a bad request.
var ErrEmptyTerm = errors.New("fields: empty search term")

// Validate checks the spec as IndexFor and TermsFor do, without computing
// anything, so that code building on IndexSpec can refuse a bad one at
// startup. Its errors match ErrInvalidIndexSpec.
func (s IndexSpec) Validate() error {
	_, err := s.chain()
	return err
}

// chain checks the spec and returns its normalizer chain.
func (s IndexSpec) chain() (normChain, error) {
	if s.Table == "" || s.Column == "" {
		return normChain{}, fmt.Errorf("%w: it needs a table and a column", ErrInvalidIndexSpec)
	}
	if s.Bits < 1 || s.Bits > MaxIndexBits {
		return normChain{}, fmt.Errorf("%w: bits must be 1 to %d", ErrInvalidIndexSpec, MaxIndexBits)
	}
	chains, err := parseNormalize(s.Normalize, 1)
	if err != nil {
		return normChain{}, fmt.Errorf("%w: %v", ErrInvalidIndexSpec, err)
	}
	return chains[0], nil
}

// indexParams is the canonical description of an index definition that
// new index key versions bind (keys.IndexKey.For): its bit length and its
// normalizer chains, one per source ("-" for none), as a struct's index
// with one chain for every source would give them.
func indexParams(bits int, chains []string) string {
	return "bits=" + strconv.Itoa(bits) + ";normalize=" + strings.Join(chains, "|")
}

// specParams is indexParams of the spec's chain over n parts.
func specParams(bits int, c normChain, n int) string {
	name := "-"
	if len(c.names) > 0 {
		name = strings.Join(c.names, "+")
	}
	chains := make([]string, max(n, 1))
	for i := range chains {
		chains[i] = name
	}
	return indexParams(bits, chains)
}

// specInput appends the MAC input of parts, normalized, as indexInput does
// for struct fields.
func specInput(dst []byte, sc *scratch, norm []normalizer, parts []string) []byte {
	tmp := sc.tmp()
	for _, p := range parts {
		tmp[0] = append(tmp[0][:0], p...)
		for _, n := range norm {
			tmp[1] = n(tmp[1][:0], tmp[0])
			tmp[0], tmp[1] = tmp[1], tmp[0]
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(tmp[0])))
		dst = append(dst, tmp[0]...)
	}
	return dst
}

// IndexFor computes the blind index of spec over parts (one for a simple
// index, several for a compound one) in scope, with the active index key:
// the same value a struct's index with the same table, column, bits and
// normalizers would hold. An empty scope fails with ErrMissingRecordID.
func (c *Codec) IndexFor(ctx context.Context, scope string, spec IndexSpec, parts ...string) (BlindIndex, error) {
	if err := c.ready(); err != nil {
		return BlindIndex{}, err
	}
	chain, err := spec.chain()
	if err != nil {
		return BlindIndex{}, err
	}
	if scope == "" {
		return BlindIndex{}, fmt.Errorf("%w (IndexFor scope)", ErrMissingRecordID)
	}
	key, err := c.cfg.Keyring.IndexKey(ctx, scope, spec.Table, spec.Column)
	if err != nil {
		return BlindIndex{}, err
	}
	sc := c.getScratch()
	defer c.putScratch(sc)
	sc.buf[0] = specInput(sc.buf[0][:0], sc, chain.fns, parts)
	return newBlindIndex(indexValue(nil, sc.mac[:0], key.For(specParams(spec.Bits, chain, len(parts))), sc.buf[0], spec.Bits), spec.Text), nil
}

// TermsFor is IndexTerms for an IndexSpec: the values to search for, one
// per live index key version. An empty scope fails with
// ErrMissingRecordID.
func (c *Codec) TermsFor(ctx context.Context, scope string, spec IndexSpec, parts ...string) ([]BlindIndex, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	chain, err := spec.chain()
	if err != nil {
		return nil, err
	}
	if scope == "" {
		return nil, fmt.Errorf("%w (TermsFor scope)", ErrMissingRecordID)
	}
	var arr [4]*keys.IndexKey
	ks, err := c.cfg.Keyring.AppendIndexKeys(ctx, arr[:0], scope, spec.Table, spec.Column)
	if err != nil {
		return nil, err
	}
	sc := c.getScratch()
	defer c.putScratch(sc)
	sc.buf[0] = specInput(sc.buf[0][:0], sc, chain.fns, parts)
	return indexTerms(ks, specParams(spec.Bits, chain, len(parts)), sc.mac[:0], sc.buf[0], spec.Bits, spec.Text), nil
}
