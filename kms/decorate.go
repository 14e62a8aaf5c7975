package kms

import (
	"context"
	"errors"
	"io"
	"time"
)

// sleep waits for d, or until ctx ends and then returns ctx's error.
// The decorators read the time package only: their tests run in
// testing/synctest bubbles, whose fake clock makes backoff and cool-downs
// instant and deterministic.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// decorator is what every decorator implements internally: the KEK methods
// and the optional ones, which forward to the inner KEK. expose hides the
// optional methods that the inner KEK lacks.
type decorator interface {
	KEK
	Identifier
	Rewrapper
	io.Closer
}

// expose returns d with exactly the optional interfaces of inner:
// Identifier, Rewrapper and io.Closer (a backend that holds a token or a
// connection pool), so that a type assertion answers the same before and
// after decoration.
func expose(inner KEK, d decorator) KEK {
	_, isID := inner.(Identifier)
	_, isRW := inner.(Rewrapper)
	_, isCl := inner.(io.Closer)
	switch {
	case isID && isRW && isCl:
		return struct {
			KEK
			Identifier
			Rewrapper
			io.Closer
		}{d, d, d, d}
	case isID && isRW:
		return struct {
			KEK
			Identifier
			Rewrapper
		}{d, d, d}
	case isID && isCl:
		return struct {
			KEK
			Identifier
			io.Closer
		}{d, d, d}
	case isRW && isCl:
		return struct {
			KEK
			Rewrapper
			io.Closer
		}{d, d, d}
	case isID:
		return struct {
			KEK
			Identifier
		}{d, d}
	case isRW:
		return struct {
			KEK
			Rewrapper
		}{d, d}
	case isCl:
		return struct {
			KEK
			io.Closer
		}{d, d}
	default:
		return struct{ KEK }{d}
	}
}

// closeOf closes inner. Decorators only call it when expose made them an
// io.Closer, that is when inner is one.
func closeOf(inner KEK) error {
	if c, ok := inner.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// keyIDOf returns kek's key id, or "" when it is not an Identifier.
func keyIDOf(kek KEK) string {
	if id, ok := kek.(Identifier); ok {
		return id.KeyID()
	}
	return ""
}

// rewrapper returns inner's Rewrap. Decorators only call it when expose
// made them a Rewrapper, that is when inner is one.
func rewrapper(inner KEK) Rewrapper {
	rw, ok := inner.(Rewrapper)
	if !ok {
		// Unreachable through the exposed KEK; reachable only by a type
		// assertion on an unexported type.
		return noRewrap{}
	}
	return rw
}

type noRewrap struct{}

func (noRewrap) Rewrap(ctx context.Context, _ []WrappedKey, _ [][]byte) ([]RewrapResult, error) {
	return nil, NewError(ctx, "rewrap", "", ErrInvalidInput, errors.New("KEK does not implement Rewrapper"))
}

// KindOf returns the sentinel error of this package that err matches
// (ErrUnavailable, ErrPermissionDenied, ErrKeyNotFound, ErrUnwrapFailed,
// ErrInvalidInput), or context.Canceled or context.DeadlineExceeded, or nil
// for a nil err. An error matching none is reported as ErrUnavailable. It
// is meant for metrics labels and for decorators that branch on kinds.
func KindOf(err error) error {
	if err == nil {
		return nil
	}
	for _, kind := range []error{context.Canceled, context.DeadlineExceeded, ErrUnwrapFailed,
		ErrInvalidInput, ErrPermissionDenied, ErrKeyNotFound, ErrUnavailable} {
		if errors.Is(err, kind) {
			return kind
		}
	}
	return ErrUnavailable
}
