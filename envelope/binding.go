package envelope

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/phicrypt/phicrypt/internal/format"
)

// A Binding is the context a value belongs to. It is authenticated with the
// ciphertext (it becomes part of the AAD) but not stored in it: Decrypt
// must be given the same Binding as Encrypt, so a value copied to another
// record, column, table or scope fails to decrypt with ErrDecrypt.
//
// Scope is required: it also selects the data key (compact form) and is
// bound to the wrapped data key (self-contained form). The other fields may
// be empty, but an empty field is still bound: a value encrypted with a
// record id does not decrypt without one. Record ids must be known before a
// row is written; tables with database-generated ids should switch to
// client-generated UUIDs or ULIDs, or bind a stable natural key instead.
//
// Limits: Scope at most MaxScopeSize bytes, every other string field at
// most MaxBindingField bytes, at most MaxExtras extras with distinct,
// non-empty keys.
type Binding struct {
	// Scope names who shares a data key: a tenant, a patient, a table.
	Scope string
	// Table, Column and RecordID locate the value.
	Table    string
	Column   string
	RecordID string
	// Extra holds further context chosen by the caller (a FHIR path, a
	// document type). Order does not matter: the encoding sorts by key.
	Extra []Attr
}

// Attr is one extra key/value pair of a Binding.
type Attr struct {
	Key, Value string
}

// Limits of a Binding.
const (
	// MaxBindingField is the largest Scope, Table, Column, RecordID, extra
	// key or extra value, in bytes.
	MaxBindingField = 4096
	// MaxScopeSize is the largest Scope, in bytes. The scope is bound to
	// wrapped data keys, so it travels to the KMS as associated data,
	// whose size kms.MaxAADSize limits.
	MaxScopeSize = 1024
	// MaxExtras is the largest number of extras.
	MaxExtras = 32
)

// check validates b and returns its extras in canonical order (sorted by
// key; the same slice when already sorted, so the common case does not
// allocate) and the size of its encoding.
func (b *Binding) check() ([]Attr, int, error) {
	if b.Scope == "" {
		return nil, 0, fmt.Errorf("%w: empty scope", ErrInvalidBinding)
	}
	if len(b.Extra) > MaxExtras {
		return nil, 0, fmt.Errorf("%w: %d extras, limit %d", ErrInvalidBinding, len(b.Extra), MaxExtras)
	}
	if len(b.Scope) > MaxScopeSize {
		return nil, 0, fmt.Errorf("%w: scope longer than %d bytes", ErrInvalidBinding, MaxScopeSize)
	}
	n := 4 * 5
	for _, s := range [...]string{b.Scope, b.Table, b.Column, b.RecordID} {
		if len(s) > MaxBindingField {
			return nil, 0, fmt.Errorf("%w: field longer than %d bytes", ErrInvalidBinding, MaxBindingField)
		}
		n += len(s)
	}
	extra := b.Extra
	if len(extra) > 1 && !slices.IsSortedFunc(extra, compareAttr) {
		extra = slices.Clone(extra)
		slices.SortFunc(extra, compareAttr)
	}
	for i, a := range extra {
		if a.Key == "" || len(a.Key) > MaxBindingField || len(a.Value) > MaxBindingField {
			return nil, 0, fmt.Errorf("%w: extra key empty or field longer than %d bytes", ErrInvalidBinding, MaxBindingField)
		}
		if i > 0 && extra[i-1].Key == a.Key {
			return nil, 0, fmt.Errorf("%w: duplicate extra key", ErrInvalidBinding)
		}
		n += 8 + len(a.Key) + len(a.Value)
	}
	return extra, n, nil
}

func compareAttr(a, b Attr) int { return cmp.Compare(a.Key, b.Key) }

// appendAAD appends the canonical encoding of b after the ciphertext header:
// each of Scope, Table, Column and RecordID as a big-endian uint32 length
// and its bytes, then the number of extras as a uint32, then each extra's
// key and value likewise, sorted by key.
func (b *Binding) appendAAD(dst []byte, extra []Attr) []byte {
	dst = format.AppendString(dst, b.Scope)
	dst = format.AppendString(dst, b.Table)
	dst = format.AppendString(dst, b.Column)
	dst = format.AppendString(dst, b.RecordID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(extra)))
	for _, a := range extra {
		dst = format.AppendString(dst, a.Key)
		dst = format.AppendString(dst, a.Value)
	}
	return dst
}
