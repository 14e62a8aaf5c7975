package kms

import (
	"context"
	"time"
)

// An Event describes one call to a KEK, for metrics and audit logs. It
// never holds key material, wrapped keys or AAD.
type Event struct {
	// Op is "wrap", "unwrap" or "rewrap".
	Op string
	// KeyID is the key id of the KEK called: the inner KEK's when it is an
	// Identifier, otherwise the wrapped key's (unwrap) or the result's
	// (wrap).
	KeyID string
	// Attempt is the attempt number (1 for the first) when WithRetry wraps
	// the observed KEK, and 1 otherwise.
	Attempt int
	// Keys is the number of keys in the call: 1, or the batch size of a
	// rewrap.
	Keys int
	// Duration is how long the call took.
	Duration time.Duration
	// Kind is nil on success, else the error's kind as KindOf reports it:
	// one of this package's sentinels or a context error.
	Kind error
}

// ObserverConfig configures WithObserver.
type ObserverConfig struct {
	// Observe receives an Event after each call. It runs on the caller's
	// goroutine, so it must be quick and safe for concurrent use. A nil
	// Observe observes nothing.
	Observe func(context.Context, Event)
	// Clock times the calls; the system clock when nil.
	Clock Clock
}

// WithObserver returns kek with each call reported to cfg.Observe once it
// returns. Placed inside WithRetry, it sees every attempt with its number.
// The result has the optional interfaces of kek (see the package
// documentation).
func WithObserver(kek KEK, cfg ObserverConfig) KEK {
	cfg.Clock = clockOr(cfg.Clock)
	return expose(kek, &observed{inner: kek, cfg: cfg})
}

type observed struct {
	inner KEK
	cfg   ObserverConfig
}

func (o *observed) KeyID() string { return keyIDOf(o.inner) }

// Close closes the inner KEK.
func (o *observed) Close() error { return closeOf(o.inner) }

func (o *observed) report(ctx context.Context, op, keyID string, keys int, start time.Time, err error) {
	if o.cfg.Observe == nil {
		return
	}
	if id := o.KeyID(); id != "" {
		keyID = id
	}
	o.cfg.Observe(ctx, Event{
		Op:       op,
		KeyID:    keyID,
		Attempt:  attemptOf(ctx),
		Keys:     keys,
		Duration: o.cfg.Clock.Now().Sub(start),
		Kind:     KindOf(err),
	})
}

func (o *observed) Wrap(ctx context.Context, dek, aad []byte) (WrappedKey, error) {
	start := o.cfg.Clock.Now()
	wk, err := o.inner.Wrap(ctx, dek, aad)
	o.report(ctx, "wrap", wk.KeyID, 1, start, err)
	return wk, err
}

func (o *observed) Unwrap(ctx context.Context, wk WrappedKey, aad []byte) ([]byte, error) {
	start := o.cfg.Clock.Now()
	dek, err := o.inner.Unwrap(ctx, wk, aad)
	o.report(ctx, "unwrap", wk.KeyID, 1, start, err)
	return dek, err
}

func (o *observed) Rewrap(ctx context.Context, wks []WrappedKey, aads [][]byte) ([]RewrapResult, error) {
	start := o.cfg.Clock.Now()
	res, err := rewrapper(o.inner).Rewrap(ctx, wks, aads)
	o.report(ctx, "rewrap", "", len(wks), start, err)
	return res, err
}
