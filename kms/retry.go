package kms

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Retry defaults.
const (
	DefaultRetryAttempts  = 3
	DefaultRetryBaseDelay = 100 * time.Millisecond
	DefaultRetryMaxDelay  = 5 * time.Second
)

// RetryConfig configures WithRetry. Zero or negative fields take their
// defaults.
type RetryConfig struct {
	// MaxAttempts is the number of calls made at most, the first one
	// included (DefaultRetryAttempts).
	MaxAttempts int
	// BaseDelay is the backoff ceiling before the first retry; it doubles
	// before each further retry (DefaultRetryBaseDelay).
	BaseDelay time.Duration
	// MaxDelay caps the backoff ceiling (DefaultRetryMaxDelay).
	MaxDelay time.Duration
	// Jitter returns the delay to wait for a ceiling. By default it is
	// "full jitter": uniformly random in [0, ceiling], which spreads the
	// retries of many clients of a recovering KMS.
	Jitter func(ceiling time.Duration) time.Duration
}

func (c RetryConfig) withDefaults() RetryConfig {
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultRetryAttempts
	}
	if c.BaseDelay <= 0 {
		c.BaseDelay = DefaultRetryBaseDelay
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = DefaultRetryMaxDelay
	}
	c.MaxDelay = max(c.MaxDelay, c.BaseDelay)
	if c.Jitter == nil {
		c.Jitter = fullJitter
	}
	return c
}

func fullJitter(ceiling time.Duration) time.Duration {
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}

// ceiling returns the backoff ceiling before retry n (1 for the first).
func (c RetryConfig) ceiling(n int) time.Duration {
	d := c.BaseDelay
	for i := 1; i < n && d < c.MaxDelay; i++ {
		if d > c.MaxDelay/2 {
			// Doubling would pass the cap, or overflow into a negative
			// delay (no backoff at all) when the cap is near the maximum.
			return c.MaxDelay
		}
		d *= 2
	}
	return min(d, c.MaxDelay)
}

// WithRetry returns kek with transient failures retried: a call that fails
// with an error for which IsTransient holds is made again, up to
// cfg.MaxAttempts calls in all, after a backoff that grows exponentially
// with full jitter. Nothing else is retried: not ErrPermissionDenied,
// ErrKeyNotFound, ErrUnwrapFailed or ErrInvalidInput, not an open circuit
// breaker (ErrCircuitOpen, which fails fast by design), and not a call
// whose context has ended. A wait stops as soon as the context ends, and
// none starts when the context's deadline would pass during it; the call
// then fails with the context's error (matching errors.Is) and the last
// failure as its cause.
//
// Wrap and Unwrap never modify their inputs, so retrying them is safe. A
// Rewrap is retried as a whole when the whole call fails transiently;
// failures of single items are returned in their results as they are.
//
// Each attempt's context records its number, which WithObserver reports
// when it is inside WithRetry. The result has the optional interfaces of
// kek (see the package documentation).
func WithRetry(kek KEK, cfg RetryConfig) KEK {
	return expose(kek, &retrying{inner: kek, cfg: cfg.withDefaults()})
}

type retrying struct {
	inner KEK
	cfg   RetryConfig
}

func (r *retrying) KeyID() string { return keyIDOf(r.inner) }

// Close closes the inner KEK.
func (r *retrying) Close() error { return closeOf(r.inner) }

func (r *retrying) Wrap(ctx context.Context, dek, aad []byte) (WrappedKey, error) {
	var wk WrappedKey
	err := r.do(ctx, "wrap", func(ctx context.Context) error {
		var err error
		wk, err = r.inner.Wrap(ctx, dek, aad)
		return err
	})
	return wk, err
}

func (r *retrying) Unwrap(ctx context.Context, wk WrappedKey, aad []byte) ([]byte, error) {
	var dek []byte
	err := r.do(ctx, "unwrap", func(ctx context.Context) error {
		var err error
		dek, err = r.inner.Unwrap(ctx, wk, aad)
		return err
	})
	return dek, err
}

func (r *retrying) Rewrap(ctx context.Context, wks []WrappedKey, aads [][]byte) ([]RewrapResult, error) {
	var res []RewrapResult
	err := r.do(ctx, "rewrap", func(ctx context.Context) error {
		var err error
		res, err = rewrapper(r.inner).Rewrap(ctx, wks, aads)
		return err
	})
	return res, err
}

// do calls call until it succeeds, fails for good, or runs out of attempts
// or time.
func (r *retrying) do(ctx context.Context, op string, call func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := call(withAttempt(ctx, attempt))
		if err == nil || !IsTransient(err) || errors.Is(err, ErrCircuitOpen) || attempt >= r.cfg.MaxAttempts {
			return err
		}
		delay := r.cfg.Jitter(r.cfg.ceiling(attempt))
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < delay {
			// The next attempt could not start in time: give up now
			// rather than sleep into the deadline.
			return NewError(ctx, op, keyIDOf(r.inner), context.DeadlineExceeded, err)
		}
		if serr := sleep(ctx, delay); serr != nil {
			return NewError(ctx, op, keyIDOf(r.inner), serr, err)
		}
	}
}

// attemptKey is the context key of the attempt number.
type attemptKey struct{}

func withAttempt(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, attemptKey{}, n)
}

// attemptOf returns the attempt number WithRetry recorded in ctx, or 1.
func attemptOf(ctx context.Context) int {
	if n, ok := ctx.Value(attemptKey{}).(int); ok {
		return n
	}
	return 1
}
