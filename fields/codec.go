package fields

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/keys"
)

// Errors. Test for them with errors.Is; decryption failures also match
// envelope's errors (envelope.ErrDecrypt, envelope.ErrNotEncrypted, ...).
var (
	// ErrNotSealed means an Encrypted value holds plaintext that has not
	// been sealed: it has no ciphertext to give a database or JSON.
	ErrNotSealed = errors.New("fields: value not sealed: call Codec.Seal before writing it")
	// ErrNotEncrypted means a field in strict mode holds plaintext where a
	// ciphertext belongs. It is envelope.ErrNotEncrypted.
	ErrNotEncrypted = envelope.ErrNotEncrypted
	// ErrTypeMismatch means a value decrypted into another type than the
	// one it was encrypted from, or a legacy plaintext that does not parse.
	// When the type's own UnmarshalBinary, UnmarshalText or UnmarshalJSON
	// failed, its error is dropped (it may quote the plaintext): the error
	// names only the type and the method.
	ErrTypeMismatch = errors.New("fields: value does not decode into the field's type")
	// ErrEncode means a value's own marshaling code (MarshalBinary,
	// MarshalText, or json.Marshal for structs, slices and maps) failed.
	// Its error is dropped, since it may quote the value: the error names
	// only the type and the method.
	ErrEncode = errors.New("fields: value does not encode")
	// ErrMissingRecordID means a record's id (or scope) is empty: every
	// value is bound to both, so they must exist before sealing.
	ErrMissingRecordID = errors.New("fields: record id or scope is empty")
	// ErrInvalidTag means a struct's phi tags are wrong; the error is a
	// *TagError.
	ErrInvalidTag = errors.New("fields: invalid phi tag")
	// ErrNotOpened means a blind index could not be computed because its
	// source fields were read from a database and not opened.
	ErrNotOpened = errors.New("fields: source field not opened")
	// ErrJSON means JSON tried to set an encrypted value or blind index:
	// they marshal to "[redacted]" and unmarshal only from null.
	ErrJSON = errors.New("fields: encrypted values and blind indexes are not read from JSON")
	// ErrNoCodec means a method was called on a nil *Codec or on a Codec
	// not made by NewCodec (the zero Codec), which has no keyring.
	ErrNoCodec = errors.New("fields: nil or zero Codec: make one with NewCodec")
	// ErrUnsupported means a value is not a pointer to a tagged struct or a
	// slice of them.
	ErrUnsupported = errors.New("fields: want a pointer to a struct, or a slice of structs or pointers")
)

// TagError is a mistake in a struct's phi tags, found when the type's plan
// is built: the first Seal, Open or Plan of the type.
type TagError struct {
	Type, Field, Tag, Reason string
}

func (e *TagError) Error() string {
	s := "fields: " + e.Type
	if e.Field != "" {
		s += "." + e.Field
	}
	if e.Tag != "" {
		s += fmt.Sprintf(" `phi:%q`", e.Tag)
	}
	return s + ": " + e.Reason
}

// Unwrap returns ErrInvalidTag.
func (e *TagError) Unwrap() error { return ErrInvalidTag }

// FieldError is a failure to seal or open one field. It names the field and
// column, never the value.
type FieldError struct {
	Type, Field, Column string
	Err                 error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("fields: %s.%s (column %s): %v", e.Type, e.Field, e.Column, e.Err)
}

// Unwrap returns the cause.
func (e *FieldError) Unwrap() error { return e.Err }

// Config configures a Codec.
type Config struct {
	// Keyring supplies data keys, deterministic keys and index keys.
	// Required.
	Keyring *keys.Keyring
	// Binary stores ciphertexts in the binary form, for bytea and BLOB
	// columns. By default they are text armored ("phicrypt:…"), which fits
	// text columns, JSON and CSV.
	Binary bool
	// MaxPlaintextSize bounds one field's encoded value
	// (envelope.DefaultMaxPlaintextSize when zero).
	MaxPlaintextSize int
	// ExpectedRows is the size of the real table (not a test table) that
	// blind indexes are planned for; DefaultExpectedRows when zero. The
	// planner refuses a record type whose indexes over one field,
	// compound ones included, would together leave fewer than
	// MinCandidates rows sharing a row's index values, with a *LeakError
	// (ErrIndexLeak, ErrInvalidTag): see the package documentation,
	// "Planning blind indexes". Codec.PlanReport shows its figures.
	ExpectedRows int64
	// MinCandidates is the fewest rows that the indexes over one field
	// may narrow a value down to (DefaultMinCandidates, 2, when zero):
	// 2^k rows to keep k bits of doubt.
	MinCandidates int64
	// SourceBits declares the domain of encrypted fields, in bits (log2
	// of the number of distinct values), by "table.column", column or Go
	// field name: 30 for an SSN, about 17 for US last names. The planner
	// caps what indexes over the field reveal at its domain; a declared
	// domain looser than the truth makes the planner too permissive.
	// Undeclared fields are unbounded, except as the transforms bound
	// them (last4, prefix:N, nysiis, year, yearmonth, date).
	SourceBits map[string]float64
	// OnPlanWarning receives the planner's warnings about low-cardinality
	// index sources, once per record type; by default they are logged
	// with slog.Warn. Warnings name types, indexes and columns, never
	// values.
	OnPlanWarning func(PlanWarning)
	// InsecureSkipIndexPlanner turns the planner's refusal off, for tests
	// of index semantics with wide indexes only: a production codec must
	// never set it. Warnings are still emitted.
	InsecureSkipIndexPlanner bool
	// Types are record types (values, pointers or reflect.Types) that
	// NewCodec plans at once, so that a tag mistake or a refused index
	// set fails the codec's construction. Other types are planned, and
	// refused, on first use.
	Types []any
	// Auditor receives an event when Open reads legacy plaintext in
	// migration mode (optional).
	Auditor keys.Auditor
	// OnLegacyPlaintext is called when Open reads legacy plaintext in
	// migration mode (optional).
	OnLegacyPlaintext func(ctx context.Context, l Legacy)
}

// Legacy describes a legacy plaintext value read in migration mode: the
// row needs re-encryption.
type Legacy struct {
	Table, Column, RecordID, Field string
}

// OpLegacyRead is the audit operation of a legacy plaintext read.
const OpLegacyRead keys.Op = "legacy-plaintext-read"

// Codec seals and opens the tagged fields of structs. It is safe for
// concurrent use and costs nothing to share. Make one with NewCodec: the
// methods of a nil *Codec or of the zero Codec fail with ErrNoCodec.
type Codec struct {
	cfg       Config
	random    *envelope.Compact
	determ    *envelope.Compact
	scratches sync.Pool // *scratch
	// last is the plan of the record type last used, so that a codec
	// used for one type at a time finds it without the global map.
	last atomic.Pointer[plan]
	// tables holds the plans of record types that name no table, bound
	// to one by BindTable: reflect.Type -> *plan.
	tables sync.Map
	// checked holds the planner's verdict per record type (reflect.Type
	// to true, or the *LeakError).
	checked sync.Map
}

// plan returns the plan of struct type t: the last one used, or the
// cached one (planFor), which the blind index planner accepted for this
// codec's configuration (checkPlan).
func (c *Codec) plan(t reflect.Type) (*plan, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	if p := c.last.Load(); p != nil && p.typ == t {
		return p, nil
	}
	p, err := planFor(t)
	if err != nil && p != nil {
		// Only the table is missing: this codec may have bound one.
		if b, ok := c.tables.Load(t); ok {
			p, err = b.(*plan), nil
		}
	}
	if err != nil {
		return p, err
	}
	if err := c.checkPlan(p); err != nil {
		return nil, err
	}
	c.last.Store(p)
	return p, nil
}

// ready fails with ErrNoCodec for a nil or zero Codec. Every exported
// method checks it (most through plan) before touching the codec.
func (c *Codec) ready() error {
	if c == nil || c.random == nil {
		return ErrNoCodec
	}
	return nil
}

// NewCodec returns a Codec for cfg. Most applications make one at startup.
func NewCodec(cfg Config) (*Codec, error) {
	if cfg.Keyring == nil {
		return nil, errors.New("fields: Config.Keyring is nil")
	}
	enc := envelope.Text
	if cfg.Binary {
		enc = envelope.Binary
	}
	random, err := envelope.NewCompact(envelope.CompactConfig{Keyring: cfg.Keyring, Encoding: enc, MaxPlaintextSize: cfg.MaxPlaintextSize})
	if err != nil {
		return nil, err
	}
	determ, err := envelope.NewCompact(envelope.CompactConfig{Keyring: cfg.Keyring.Deterministic(), Encoding: enc, MaxPlaintextSize: cfg.MaxPlaintextSize})
	if err != nil {
		return nil, err
	}
	c := &Codec{cfg: cfg, random: random, determ: determ}
	c.scratches.New = func() any { return new(scratch) }
	for _, v := range cfg.Types {
		if err := c.Plan(v); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Plan builds (and caches) the plan of v's struct type and reports tag
// errors and the blind index planner's refusal (*LeakError), without
// touching any value: call it at startup for each record type, or list
// the types in Config.Types, so that mistakes fail fast.
func (c *Codec) Plan(v any) error {
	t, err := structType(v)
	if err != nil {
		return err
	}
	_, err = c.plan(t)
	return err
}

// records calls fn for each struct that v holds: v is a pointer to a
// struct, a slice of structs or of pointers to structs, or a pointer to
// such a slice. fn gets pooled scratch space. ctx is checked before each
// spreadChunk records of a slice.
func (c *Codec) records(ctx context.Context, v any, fn recordFunc) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() && rv.Elem().Kind() == reflect.Slice {
		rv = rv.Elem()
	}
	switch {
	case rv.Kind() == reflect.Pointer && !rv.IsNil() && rv.Elem().Kind() == reflect.Struct:
		p, err := c.plan(rv.Elem().Type())
		if err != nil {
			return err
		}
		sc := c.getScratch()
		defer c.putScratch(sc)
		return fn(c, ctx, p, rv.Elem(), sc)
	case rv.Kind() == reflect.Slice:
		p, ptr, err := c.slicePlan(rv)
		if err != nil {
			return err
		}
		sc := c.getScratch()
		defer c.putScratch(sc)
		return eachOf(ctx, rv, ptr, 0, rv.Len(), func(r reflect.Value) error { return fn(c, ctx, p, r, sc) })
	}
	return ErrUnsupported
}

// A recordFunc seals or opens one record: (*Codec).sealRecord or
// openRecord. A method expression, not a closure, so that passing it
// allocates nothing.
type recordFunc func(c *Codec, ctx context.Context, p *plan, rv reflect.Value, sc *scratch) error

// slicePlan returns the plan of the records of slice rv, and whether they
// are pointers.
func (c *Codec) slicePlan(rv reflect.Value) (*plan, bool, error) {
	et := rv.Type().Elem()
	ptr := et.Kind() == reflect.Pointer
	if ptr {
		et = et.Elem()
	}
	if et.Kind() != reflect.Struct {
		return nil, false, ErrUnsupported
	}
	p, err := c.plan(et)
	return p, ptr, err
}

// eachOf calls fn for the records rv[from:to] (skipping nil pointers),
// checking ctx before each spreadChunk of them.
func eachOf(ctx context.Context, rv reflect.Value, ptr bool, from, to int, fn func(r reflect.Value) error) error {
	for i := from; i < to; i++ {
		if (i-from)%spreadChunk == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		r := rv.Index(i)
		if ptr {
			if r.IsNil() {
				continue
			}
			r = r.Elem()
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// spreadChunk is the number of records a goroutine of a spread batch
// takes at a time (see spread).
const spreadChunk = 256

// spread is records for a batch large enough to be worth several
// goroutines, and reports false (doing nothing) for anything else: a
// slice of at least 2*spreadChunk records is handed to up to GOMAXPROCS
// goroutines, spreadChunk records at a time, in order. The error returned
// is that of the first failing record, as in a serial run, and every
// record before it has been processed (records after it may have been
// too); ctx is checked before each chunk.
func (c *Codec) spread(ctx context.Context, v any, fn recordFunc) (bool, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Slice {
		return false, nil
	}
	n := rv.Len()
	workers := min(runtime.GOMAXPROCS(0), n/spreadChunk)
	if workers < 2 {
		return false, nil
	}
	p, ptr, err := c.slicePlan(rv)
	if err != nil {
		return true, err
	}
	return true, c.spreadSlice(ctx, rv, ptr, p, workers, fn)
}

// spreadSlice is spread's work, apart so that the variables its
// goroutines share are allocated only for a batch that is spread.
func (c *Codec) spreadSlice(ctx context.Context, rv reflect.Value, ptr bool, p *plan, workers int, fn recordFunc) error {
	n := rv.Len()
	var (
		next atomic.Int64
		fail firstFailure
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			sc := c.getScratch()
			defer c.putScratch(sc)
			for !fail.failed.Load() {
				from := int(next.Add(spreadChunk)) - spreadChunk
				if from >= n {
					return
				}
				err := eachOf(ctx, rv, ptr, from, min(n, from+spreadChunk), func(r reflect.Value) error { return fn(c, ctx, p, r, sc) })
				if err != nil {
					fail.record(from, err)
				}
			}
		})
	}
	wg.Wait()
	return fail.err()
}

// ident reads a record's scope and id.
func (p *plan) ident(rv reflect.Value) (scope, id string, err error) {
	if scope, err = p.scope.read(rv); err != nil {
		return "", "", err
	}
	if id, err = p.id.read(rv); err != nil {
		return "", "", err
	}
	// A zero id (0, a zero UUID) is an id not assigned yet, e.g. an
	// auto-increment key before INSERT: binding to it would mis-bind.
	if scope == "" || id == "" || rv.FieldByIndex(p.id.path).IsZero() {
		return "", "", fmt.Errorf("%w (%s, %s)", ErrMissingRecordID, p.scope.name, p.id.name)
	}
	return scope, id, nil
}

// binding is the Binding of field f of a record: deterministic fields are
// bound to their column but not to the record, so that equal values match
// across rows.
func (p *plan) binding(f *fieldPlan, scope, id string) envelope.Binding {
	b := envelope.Binding{Scope: scope, Table: p.table, Column: f.column, RecordID: id}
	if f.deterministic {
		b.RecordID = ""
	}
	return b
}

func (c *Codec) aead(f *fieldPlan) *envelope.Compact {
	if f.deterministic {
		return c.determ
	}
	return c.random
}

// Seal encrypts every tagged field of v that holds plaintext, and computes
// its blind indexes. v is a pointer to a struct, or a slice of structs or
// pointers (a batch: one plan lookup, keys from the keyring's cache).
// NULL fields stay NULL; fields read from a database and not opened keep
// their ciphertext. Every value is bound to the record's scope, table,
// column and id, which must be set. A record whose field or blind index
// fails keeps its encrypted fields and indexes as they were: none takes a
// new value unless all of them do. A blind index over a source read and
// not opened keeps its stored value only if none of its other sources
// changed; otherwise Seal fails with ErrNotOpened (open the record
// first), never leaving an index of the old values.
func (c *Codec) Seal(ctx context.Context, v any) error {
	if err := c.Plan(v); err != nil {
		return err
	}
	return c.records(ctx, v, (*Codec).sealRecord)
}

// sealRecord seals the fields of record rv that hold plaintext and
// computes its blind indexes.
func (c *Codec) sealRecord(ctx context.Context, p *plan, rv reflect.Value, sc *scratch) error {
	scope, id, err := p.ident(rv)
	if err != nil {
		return err
	}
	base := recordBase(rv)
	// One key lookup per record for each of the random and the
	// deterministic keys, made at the first field that needs it,
	// for the fields of its kind from there on.
	var sealers [2]envelope.Sealer
	var made [2]bool
	// The fields sealed into sc.ct, in order (on the stack for up to 32
	// fields).
	var sealedAt [32]sealedField
	sealed := sealedAt[:0]
	var large [][]byte
	sc.ct = sc.ct[:0]
	for i := range p.fields {
		f := &p.fields[i]
		vf := f.field(base)
		if s := vf.fieldState(); s != statePlain && s != stateSealed {
			continue
		}
		pt, err := vf.appendPlain(sc.buf[0][:0])
		sc.buf[0] = pt
		if err != nil {
			return p.fieldErr(f, err)
		}
		k := 0
		if f.deterministic {
			k = 1
		}
		if !made[k] {
			if sealers[k], err = c.aead(f).Sealer(ctx, scope, p.countFrom(i, f.deterministic)); err != nil {
				return p.fieldErr(f, err)
			}
			made[k] = true
		}
		// A small value is sealed into scratch space after those before
		// it (the AAD goes past the end, where the next one overwrites
		// it). A large one is sealed on its own and copied out at its
		// size: appended to the others, it would make every later value
		// copy it again as the scratch space grows.
		small := len(pt) <= maxSharedPlaintext
		dst := sc.ct
		if !small {
			dst = sc.buf[1][:0]
		}
		out, err := sealers[k].AppendEncrypt(ctx, dst, pt, p.binding(f, scope, id))
		if err != nil {
			return p.fieldErr(f, err)
		}
		if small {
			sc.ct = out
			sealed = append(sealed, sealedField{field: i, end: len(out)})
		} else {
			sc.buf[1] = out
			large = append(large, bytes.Clone(out))
			sealed = append(sealed, sealedField{field: i, end: -1})
		}
	}
	// The blind indexes, computed before anything is stored (on the
	// stack for up to 8 indexes), so that an index that fails (a missing
	// index scope, a source not opened) leaves the record as it was.
	var indexAt [8]pendingIndex
	indexes := indexAt[:0]
	for i := range p.indexes {
		v, keep, err := c.computeIndex(ctx, p, &p.indexes[i], rv, scope, sc)
		if err != nil {
			return err
		}
		indexes = append(indexes, pendingIndex{v, keep})
	}
	// The ciphertexts of the small values, copied out in one allocation
	// of their size: each field holds its own part of it, a full slice
	// that nothing can append into a neighbour through. Fields change
	// only once every one of them is sealed.
	var all []byte
	if len(sc.ct) > 0 {
		all = bytes.Clone(sc.ct)
	}
	start := 0
	for _, s := range sealed {
		vf := p.fields[s.field].field(base)
		if s.end < 0 {
			vf.sealWith(large[0])
			large = large[1:]
			continue
		}
		vf.sealWith(all[start:s.end:s.end])
		start = s.end
	}
	for i, x := range indexes {
		if !x.keep {
			*p.indexes[i].index(base) = x.v
		}
	}
	return nil
}

// pendingIndex is a blind index that Seal computed, to store once every
// field is sealed: its value v, unless keep leaves the stored one.
type pendingIndex struct {
	v    BlindIndex
	keep bool
}

// sealedField is the field of index field in a plan, sealed into
// scratch.ct, where its ciphertext ends at end; or, when end is -1, sealed
// on its own (the next of Seal's large values).
type sealedField struct{ field, end int }

// maxSharedPlaintext is the size of the largest value whose ciphertext
// Seal copies out together with the record's other values.
const maxSharedPlaintext = 1 << 10

// countFrom counts the fields from the i-th on that are deterministic or
// not, as det says.
func (p *plan) countFrom(i int, det bool) int {
	n := 0
	for _, f := range p.fields[i:] {
		if f.deterministic == det {
			n++
		}
	}
	return n
}

func (p *plan) fieldErr(f *fieldPlan, err error) error {
	return &FieldError{Type: p.typ.String(), Field: f.name, Column: f.column, Err: err}
}

// Open decrypts every tagged field of v that was read from a database (or
// JSON). v is as for Seal. A field in strict mode (the default) that holds
// plaintext fails with ErrNotEncrypted; in migration mode the plaintext is
// accepted, reported (Config.OnLegacyPlaintext, Config.Auditor) and left
// unsealed, so the next Seal encrypts it.
//
// A value that is not a ciphertext but is close to one, in either mode,
// fails with ErrDamagedCiphertext (which also matches envelope.ErrDecrypt),
// never reads as plaintext. Close means: its first 4 bytes are within 2 bit
// flips of a binary header (magic 0xF5, version 1, a known form and
// suite); or, after leading white space, control and format characters
// and quotes, it starts within 2 edits (insertion, deletion,
// substitution, adjacent transposition; ASCII case ignored) of the armor
// prefix "phicrypt:"; or it starts with base64 of such a header (the
// armor prefix lost).
//
// A batch of 512 records or more (a bulk read, an export) is opened on up
// to GOMAXPROCS goroutines, 256 records at a time. Its error is the first
// failing record's, as in a serial run, and every record before that one
// is opened; records after it may be opened too (Opened tells).
func (c *Codec) Open(ctx context.Context, v any) error {
	if ok, err := c.spread(ctx, v, (*Codec).openRecord); ok {
		return err
	}
	return c.records(ctx, v, (*Codec).openRecord)
}

// openRecord opens the scanned fields of record rv.
func (c *Codec) openRecord(ctx context.Context, p *plan, rv reflect.Value, sc *scratch) error {
	scope, id, err := p.ident(rv)
	if err != nil {
		return err
	}
	base := recordBase(rv)
	// Each key version is looked up once per record (unless uses
	// are audited), for the random and the deterministic keys.
	var openers [2]envelope.Opener
	var made [2]bool
	for i := range p.fields {
		f := &p.fields[i]
		vf := f.field(base)
		if vf.fieldState() != stateScanned {
			continue
		}
		ct, legacy := vf.ciphertext()
		if legacy != nil || (!isArmored(ct) && (len(ct) == 0 || ct[0] != envelopeMagic)) {
			if legacy == nil && nearCiphertext(ct) {
				return p.fieldErr(f, errDamaged)
			}
			if err := c.openLegacy(ctx, p, f, vf, ct, legacy, scope, id); err != nil {
				return err
			}
			continue
		}
		k := 0
		if f.deterministic {
			k = 1
		}
		if !made[k] {
			openers[k], made[k] = c.aead(f).Opener(scope), true
		}
		pt, err := openers[k].AppendDecrypt(ctx, sc.buf[0][:0], ct, p.binding(f, scope, id))
		if err != nil {
			return p.fieldErr(f, err)
		}
		sc.buf[0] = pt
		if err := vf.openWith(pt); err != nil {
			return p.fieldErr(f, err)
		}
	}
	return nil
}

func (c *Codec) openLegacy(ctx context.Context, p *plan, f *fieldPlan, vf valueField, raw []byte, legacy any, scope, id string) error {
	if !f.migrate {
		return p.fieldErr(f, ErrNotEncrypted)
	}
	if err := vf.openLegacy(raw, legacy); err != nil {
		return p.fieldErr(f, err)
	}
	l := Legacy{Table: p.table, Column: f.column, RecordID: id, Field: f.name}
	if c.cfg.OnLegacyPlaintext != nil {
		c.cfg.OnLegacyPlaintext(ctx, l)
	}
	if c.cfg.Auditor != nil {
		// The audit record is best effort: the read itself succeeded.
		c.cfg.Auditor.Audit(ctx, keys.Event{Time: time.Now().UTC(), Op: OpLegacyRead, Scope: scope, Key: p.table + "." + f.column,
			Principal: keys.Principal(ctx), Purpose: keys.Purpose(ctx), Outcome: keys.Success})
	}
	return nil
}
