package kmstest

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phicrypt/phicrypt/kms"
)

// Instrumented wraps a KEK for tests of its callers: it counts calls, can
// simulate an outage, and can fail after a number of calls, to check
// caching, single-flight loading and resumption after failure. It is safe
// for concurrent use.
type Instrumented struct {
	kms.KEK
	wraps, unwraps atomic.Int64
	mu             sync.Mutex
	down           bool
	failAfter      int64 // fail calls once this many have been made; <0: never
	delay          time.Duration
}

var _ kms.KEK = (*Instrumented)(nil)

// Instrument returns an Instrumented KEK around kek.
func Instrument(kek kms.KEK) *Instrumented {
	return &Instrumented{KEK: kek, failAfter: -1}
}

// KeyID returns the underlying KEK's key id, if it is a kms.Identifier.
func (i *Instrumented) KeyID() string {
	if id, ok := i.KEK.(kms.Identifier); ok {
		return id.KeyID()
	}
	return ""
}

// Wraps returns the number of Wrap calls so far.
func (i *Instrumented) Wraps() int64 { return i.wraps.Load() }

// Unwraps returns the number of Unwrap calls so far.
func (i *Instrumented) Unwraps() int64 { return i.unwraps.Load() }

// Calls returns the number of Wrap and Unwrap calls so far.
func (i *Instrumented) Calls() int64 { return i.Wraps() + i.Unwraps() }

// SetDown makes every call fail with kms.ErrUnavailable while down is true.
func (i *Instrumented) SetDown(down bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.down = down
}

// FailAfter makes every call fail with kms.ErrUnavailable once n calls in
// total have been made (counting from zero, across Wrap and Unwrap). A
// negative n never fails.
func (i *Instrumented) FailAfter(n int64) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.failAfter = n
}

// SetDelay makes every call wait d (or until its context ends) first, to
// widen race windows in concurrency tests.
func (i *Instrumented) SetDelay(d time.Duration) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.delay = d
}

func (i *Instrumented) before(ctx context.Context, op string, n int64) error {
	i.mu.Lock()
	down, failAfter, delay := i.down, i.failAfter, i.delay
	i.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return kms.NewError(ctx, op, "", ctx.Err(), nil)
		}
	}
	if down || (failAfter >= 0 && n > failAfter) {
		return kms.NewError(ctx, op, "", kms.ErrUnavailable, nil)
	}
	return nil
}

// Wrap counts the call, then wraps with the underlying KEK unless failing.
func (i *Instrumented) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	i.wraps.Add(1)
	if err := i.before(ctx, "wrap", i.Calls()); err != nil {
		return kms.WrappedKey{}, err
	}
	return i.KEK.Wrap(ctx, dek, aad)
}

// Unwrap counts the call, then unwraps with the underlying KEK unless
// failing.
func (i *Instrumented) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	i.unwraps.Add(1)
	if err := i.before(ctx, "unwrap", i.Calls()); err != nil {
		return nil, err
	}
	return i.KEK.Unwrap(ctx, wk, aad)
}
