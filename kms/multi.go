package kms

import (
	"context"
	"errors"
	"fmt"
	"reflect"
)

// Multi is a KEK made of several, for a site that moves from one KMS (or
// key) to another: it wraps with the primary, unwraps with whichever member
// a wrapped key's KeyID names, and rewraps keys of any member onto the
// primary. Once every stored key has been rewrapped, the old members can
// be dropped.
//
// Every member must be an Identifier, with distinct key ids, since key ids
// are how Multi routes. Multi is an Identifier (the primary's key id) and a
// Rewrapper whatever its members are. It is safe for concurrent use when
// its members are.
type Multi struct {
	primary   KEK
	primaryID string
	members   map[string]KEK
}

var (
	_ KEK        = (*Multi)(nil)
	_ Identifier = (*Multi)(nil)
	_ Rewrapper  = (*Multi)(nil)
)

// NewMulti returns a Multi that wraps with primary and also unwraps with
// others. It fails with ErrInvalidInput when a member is nil (or a nil
// pointer of a KEK type), is not an Identifier, or has an invalid key id
// or the key id of another member.
func NewMulti(primary KEK, others ...KEK) (*Multi, error) {
	m := &Multi{primary: primary, members: make(map[string]KEK, 1+len(others))}
	for i, kek := range append([]KEK{primary}, others...) {
		if isNil(kek) {
			return nil, NewError(context.Background(), "open", "", ErrInvalidInput, fmt.Errorf("multi: member %d is nil", i))
		}
		id, ok := kek.(Identifier)
		if !ok {
			return nil, NewError(context.Background(), "open", "", ErrInvalidInput, fmt.Errorf("multi: member %d (%T) is not a kms.Identifier", i, kek))
		}
		keyID := id.KeyID()
		if err := ValidateKeyID(keyID); err != nil {
			return nil, NewError(context.Background(), "open", keyID, ErrInvalidInput, fmt.Errorf("multi: member %d: %w", i, err))
		}
		if _, dup := m.members[keyID]; dup {
			return nil, NewError(context.Background(), "open", keyID, ErrInvalidInput, errors.New("multi: two members have this key id"))
		}
		m.members[keyID] = kek
		if i == 0 {
			m.primaryID = keyID
		}
	}
	return m, nil
}

// isNil reports whether kek is nil or a nil pointer (or other nil value)
// of a concrete type, such as a (*local.KEK)(nil) that was never opened:
// calling its KeyID would panic.
func isNil(kek KEK) bool {
	if kek == nil {
		return true
	}
	switch v := reflect.ValueOf(kek); v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return v.IsNil()
	}
	return false
}

// KeyID returns the primary's key id.
func (m *Multi) KeyID() string { return m.primaryID }

// Wrap wraps with the primary.
func (m *Multi) Wrap(ctx context.Context, dek, aad []byte) (WrappedKey, error) {
	return m.primary.Wrap(ctx, dek, aad)
}

// Unwrap unwraps with the member that wk.KeyID names, and fails with
// ErrKeyNotFound when no member does.
func (m *Multi) Unwrap(ctx context.Context, wk WrappedKey, aad []byte) ([]byte, error) {
	kek, ok := m.members[wk.KeyID]
	if !ok {
		if err := ctx.Err(); err != nil {
			return nil, NewError(ctx, "unwrap", m.primaryID, err, nil)
		}
		if len(aad) > MaxAADSize {
			return nil, NewError(ctx, "unwrap", m.primaryID, ErrInvalidInput, CheckUnwrap(wk.KeyID, wk, aad))
		}
		return nil, NewError(ctx, "unwrap", m.primaryID, ErrKeyNotFound, refusal{errors.New("multi: no member has the wrapped key's key id")})
	}
	return kek.Unwrap(ctx, wk, aad)
}

// Rewrap moves each key onto the primary's current version. Keys of the
// primary are rewrapped in one batch when the primary is a Rewrapper (they
// never leave its KMS), and unwrapped and wrapped again otherwise; keys of
// other members are unwrapped by their member and wrapped by the primary,
// the data key cleared from memory right after. A key no member can unwrap
// fails in its result with ErrKeyNotFound. The call as a whole fails only
// for mismatched arguments, an ended context, or a failed batch on the
// primary.
func (m *Multi) Rewrap(ctx context.Context, wks []WrappedKey, aads [][]byte) ([]RewrapResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, NewError(ctx, "rewrap", m.primaryID, err, nil)
	}
	if len(wks) != len(aads) {
		return nil, NewError(ctx, "rewrap", m.primaryID, ErrInvalidInput,
			fmt.Errorf("%d wrapped keys but %d AADs", len(wks), len(aads)))
	}
	res := make([]RewrapResult, len(wks))
	var batch []int // indexes of the primary's keys, for its Rewrapper
	rw, batching := m.primary.(Rewrapper)
	for i, wk := range wks {
		if batching && wk.KeyID == m.primaryID {
			batch = append(batch, i)
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, NewError(ctx, "rewrap", m.primaryID, err, nil)
		}
		res[i] = m.move(ctx, wk, aads[i])
	}
	if len(batch) > 0 {
		bwks := make([]WrappedKey, len(batch))
		baads := make([][]byte, len(batch))
		for j, i := range batch {
			bwks[j], baads[j] = wks[i], aads[i]
		}
		bres, err := rw.Rewrap(ctx, bwks, baads)
		if err != nil {
			return nil, err
		}
		if len(bres) != len(batch) {
			return nil, NewError(ctx, "rewrap", m.primaryID, ErrUnavailable,
				fmt.Errorf("multi: primary returned %d results for %d keys", len(bres), len(batch)))
		}
		for j, i := range batch {
			res[i] = bres[j]
		}
	}
	return res, nil
}

// move unwraps wk with its member and wraps it with the primary.
func (m *Multi) move(ctx context.Context, wk WrappedKey, aad []byte) RewrapResult {
	dek, err := m.Unwrap(ctx, wk, aad)
	if err != nil {
		return RewrapResult{Err: err}
	}
	defer clear(dek)
	nwk, err := m.primary.Wrap(ctx, dek, aad)
	if err != nil {
		return RewrapResult{Err: err}
	}
	return RewrapResult{Key: nwk}
}

// String returns the primary's key id and the number of members.
func (m *Multi) String() string {
	return fmt.Sprintf("kms.Multi{Primary: %q, Members: %d}", m.primaryID, len(m.members))
}
