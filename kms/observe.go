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
	// Err is the error the call returned, nil on success, for observers
	// that need more than its Kind (errors.Is(e.Err, ErrThrottled), for
	// example). Backends keep key material and AAD out of their errors,
	// but a cause may hold a KMS's own message: label metrics with Kind,
	// not with Err's text.
	Err error
}

// ObserverConfig configures WithObserver.
type ObserverConfig struct {
	// Start, when set, is called before each call with the caller's
	// context and an Event whose Op, KeyID, Attempt and Keys are set (the
	// KeyID of a wrap is the KEK's when it is an Identifier, else empty).
	// The context it returns is the one the inner KEK and Observe then
	// receive. A tracer starts a span here, so that the spans of the
	// backend SDK's own HTTP or gRPC calls become its children, and ends
	// it in Observe (trace.SpanFromContext). Like Observe, it runs on the
	// caller's goroutine and must be quick and safe for concurrent use.
	// Start must return a context derived from the one it is given (or
	// that context itself), never nil.
	Start func(context.Context, Event) context.Context
	// Observe receives an Event after each call, with the context that
	// Start returned (the caller's when Start is nil). It runs on the caller's
	// goroutine, so it must be quick and safe for concurrent use. A nil
	// Observe observes nothing.
	Observe func(context.Context, Event)
}

// WithObserver returns kek with each call reported to cfg.Start before it
// starts and to cfg.Observe once it returns. Placed inside WithRetry, it
// sees every attempt with its number.
// The result has the optional interfaces of kek (see the package
// documentation).
func WithObserver(kek KEK, cfg ObserverConfig) KEK {
	return expose(kek, &observed{inner: kek, cfg: cfg})
}

type observed struct {
	inner KEK
	cfg   ObserverConfig
}

func (o *observed) KeyID() string { return keyIDOf(o.inner) }

// Close closes the inner KEK.
func (o *observed) Close() error { return closeOf(o.inner) }

// start calls cfg.Start, if any, and returns the context of the call.
func (o *observed) start(ctx context.Context, op, keyID string, keys int) context.Context {
	if o.cfg.Start == nil {
		return ctx
	}
	if id := o.KeyID(); id != "" {
		keyID = id
	}
	if sctx := o.cfg.Start(ctx, Event{Op: op, KeyID: keyID, Attempt: attemptOf(ctx), Keys: keys}); sctx != nil {
		return sctx
	}
	return ctx
}

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
		Duration: time.Since(start),
		Kind:     KindOf(err),
		Err:      err,
	})
}

func (o *observed) Wrap(ctx context.Context, dek, aad []byte) (WrappedKey, error) {
	ctx = o.start(ctx, "wrap", "", 1)
	start := time.Now()
	wk, err := o.inner.Wrap(ctx, dek, aad)
	o.report(ctx, "wrap", wk.KeyID, 1, start, err)
	return wk, err
}

func (o *observed) Unwrap(ctx context.Context, wk WrappedKey, aad []byte) ([]byte, error) {
	ctx = o.start(ctx, "unwrap", wk.KeyID, 1)
	start := time.Now()
	dek, err := o.inner.Unwrap(ctx, wk, aad)
	o.report(ctx, "unwrap", wk.KeyID, 1, start, err)
	return dek, err
}

func (o *observed) Rewrap(ctx context.Context, wks []WrappedKey, aads [][]byte) ([]RewrapResult, error) {
	ctx = o.start(ctx, "rewrap", "", len(wks))
	start := time.Now()
	res, err := rewrapper(o.inner).Rewrap(ctx, wks, aads)
	o.report(ctx, "rewrap", "", len(wks), start, err)
	return res, err
}
