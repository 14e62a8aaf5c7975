package kms

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrCircuitOpen is the error of a call that a Breaker refused without
// calling the KMS. It matches ErrUnavailable too.
var ErrCircuitOpen = fmt.Errorf("%w: circuit breaker open", ErrUnavailable)

// ErrThrottled is the kind of a call that the KMS refused for its rate
// limit or quota (AWS ThrottlingException, gRPC RESOURCE_EXHAUSTED, HTTP
// 429). It matches ErrUnavailable too, so WithRetry retries it; a Breaker
// counts it as an answer, not a failure, because a throttling KMS is up,
// and opening the breaker during a burst would fail every caller for a
// whole cool-down instead of slowing them down.
var ErrThrottled = fmt.Errorf("%w: throttled", ErrUnavailable)

// Breaker defaults.
const (
	DefaultBreakerFailures = 5
	DefaultBreakerCoolDown = 30 * time.Second
)

// BreakerState is the state of a Breaker.
type BreakerState int

const (
	// BreakerClosed lets every call through.
	BreakerClosed BreakerState = iota
	// BreakerOpen fails every call fast until the cool-down has passed.
	BreakerOpen
	// BreakerHalfOpen lets one probe call through; the others fail fast.
	BreakerHalfOpen
)

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("BreakerState(%d)", int(s))
}

// BreakerConfig configures NewBreaker. Zero or negative fields take their
// defaults.
type BreakerConfig struct {
	// Failures is the number of consecutive transient failures that open
	// the breaker (DefaultBreakerFailures).
	Failures int
	// CoolDown is how long the breaker stays open before it lets a probe
	// through (DefaultBreakerCoolDown).
	CoolDown time.Duration
	// OnStateChange, if set, is called after each change of state, outside
	// the breaker's lock, for logging and metrics.
	OnStateChange func(from, to BreakerState)
}

// A Breaker is a circuit breaker for the calls of the KEKs it guards, so
// that an unavailable KMS is not hammered and callers fail fast while it
// recovers.
//
// It starts closed. After cfg.Failures consecutive transient failures (an
// error for which IsTransient holds) it opens: calls fail at once with
// ErrCircuitOpen, without reaching the KMS. After the cool-down it is
// half-open: exactly one call, the probe, goes through, and the others
// fail fast. The probe's success closes it; a transient failure opens it
// for another cool-down. Errors that show the KMS answering (ErrUnwrapFailed,
// ErrInvalidInput, ErrKeyNotFound, ErrPermissionDenied, ErrThrottled) count as successes
// for the breaker: the KMS is up, whatever a tampered wrapped key or a bad
// argument made it say. A call that never reached the KMS, refused on its
// arguments by CheckWrap or CheckUnwrap (a data key of the wrong size, a
// wrapped key of another KEK) or by a Multi that has no member for its
// key, counts as neither; so does a call ended by its own context, and a
// call that panics (the probe's slot is freed and the panic goes on).
//
// One Breaker may guard several KEKs served by one KMS, which then share
// its state. A Breaker is safe for concurrent use.
type Breaker struct {
	cfg BreakerConfig

	mu       sync.Mutex
	state    BreakerState
	failures int       // consecutive transient failures while closed
	openedAt time.Time // when the breaker last opened
	probing  bool      // a probe is in flight
}

// NewBreaker returns a closed Breaker.
func NewBreaker(cfg BreakerConfig) *Breaker {
	if cfg.Failures <= 0 {
		cfg.Failures = DefaultBreakerFailures
	}
	if cfg.CoolDown <= 0 {
		cfg.CoolDown = DefaultBreakerCoolDown
	}
	return &Breaker{cfg: cfg}
}

// State returns the breaker's state. An open breaker whose cool-down has
// passed reports BreakerHalfOpen: its next call is the probe.
func (b *Breaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == BreakerOpen && time.Since(b.openedAt) >= b.cfg.CoolDown {
		return BreakerHalfOpen
	}
	return b.state
}

// Guard returns kek with its calls guarded by b. The result has the
// optional interfaces of kek (see the package documentation).
func (b *Breaker) Guard(kek KEK) KEK {
	return expose(kek, &guarded{inner: kek, b: b})
}

// allow decides whether a call may go through, and whether it is the
// probe. It returns the state-change callback to run, if any, which the
// caller runs once it is ready to release the probe should the callback
// panic.
func (b *Breaker) allow() (probe bool, changed func(), err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case BreakerClosed:
		return false, nil, nil
	case BreakerOpen:
		if time.Since(b.openedAt) < b.cfg.CoolDown {
			return false, nil, ErrCircuitOpen
		}
		changed = b.set(BreakerHalfOpen)
	}
	if b.probing {
		return false, changed, ErrCircuitOpen
	}
	b.probing = true
	return true, changed, nil
}

// record counts a call's outcome.
func (b *Breaker) record(probe bool, err error) {
	b.mu.Lock()
	var changed func()
	defer func() {
		b.mu.Unlock()
		if changed != nil {
			changed()
		}
	}()
	if probe {
		b.probing = false
	} else if b.state != BreakerClosed {
		// Only the probe decides while the breaker is not closed: a slow
		// call from before it opened says nothing about the KMS now.
		return
	}
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		// The caller gave up: neither a success nor a failure.
	case refused(err):
		// Refused on its arguments before it reached the KMS: it says
		// nothing of the KMS's health, and must neither keep the breaker
		// of a dead KMS closed nor close it as a probe.
	case IsTransient(err) && !errors.Is(err, ErrThrottled):
		b.failures++
		if probe || b.failures >= b.cfg.Failures {
			b.openedAt = time.Now()
			b.failures = 0
			changed = b.set(BreakerOpen)
		}
	default:
		b.failures = 0
		changed = b.set(BreakerClosed)
	}
}

// set changes the state and returns the callback to run after unlocking,
// if any.
func (b *Breaker) set(to BreakerState) func() {
	from := b.state
	b.state = to
	if from == to || b.cfg.OnStateChange == nil {
		return nil
	}
	return func() { b.cfg.OnStateChange(from, to) }
}

type guarded struct {
	inner KEK
	b     *Breaker
}

func (g *guarded) KeyID() string { return keyIDOf(g.inner) }

// Close closes the inner KEK.
func (g *guarded) Close() error { return closeOf(g.inner) }

// call runs fn, the inner KEK's call of op, if b allows it, and records
// its outcome. A call that panics, in fn or in the OnStateChange callback,
// is recorded as ended by its caller (neither a success nor a failure),
// so that a panicking probe frees the probe's slot and the next call
// probes, rather than leaving the breaker refusing every call for good;
// the panic goes on up.
func (g *guarded) call(ctx context.Context, op string, fn func() error) error {
	probe, changed, err := g.b.allow()
	recorded := false
	defer func() {
		if !recorded {
			g.b.record(probe, context.Canceled)
		}
	}()
	if changed != nil {
		changed()
	}
	if err != nil {
		recorded = true
		return NewError(ctx, op, g.KeyID(), err, nil)
	}
	err = fn()
	recorded = true
	g.b.record(probe, err)
	return err
}

func (g *guarded) Wrap(ctx context.Context, dek, aad []byte) (WrappedKey, error) {
	var wk WrappedKey
	err := g.call(ctx, "wrap", func() error {
		var err error
		wk, err = g.inner.Wrap(ctx, dek, aad)
		return err
	})
	return wk, err
}

func (g *guarded) Unwrap(ctx context.Context, wk WrappedKey, aad []byte) ([]byte, error) {
	var dek []byte
	err := g.call(ctx, "unwrap", func() error {
		var err error
		dek, err = g.inner.Unwrap(ctx, wk, aad)
		return err
	})
	return dek, err
}

func (g *guarded) Rewrap(ctx context.Context, wks []WrappedKey, aads [][]byte) ([]RewrapResult, error) {
	var res []RewrapResult
	err := g.call(ctx, "rewrap", func() error {
		var err error
		res, err = rewrapper(g.inner).Rewrap(ctx, wks, aads)
		return err
	})
	return res, err
}
