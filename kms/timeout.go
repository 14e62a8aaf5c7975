package kms

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// TimeoutConfig configures WithTimeout. A zero or negative duration means
// no timeout of its own for that operation (the caller's context still
// applies).
type TimeoutConfig struct {
	// Call bounds each Wrap and Unwrap.
	Call time.Duration
	// Rewrap bounds each Rewrap, which may carry many keys.
	Rewrap time.Duration
}

// WithTimeout returns kek with each call bounded in time, so that a KMS
// that hangs does not hold callers for as long as their own deadlines.
//
// A call that its timeout ends, while the caller's context is still live,
// fails with ErrUnavailable (and no context error), since the KMS did not
// answer in time: it is transient, so WithRetry retries it and a Breaker
// counts it. A call whose caller's context ends fails with that context's
// error as usual. The inner KEK must honour its context for the timeout to
// cut a call short; backends that cannot be interrupted (kms/pkcs11, Tink
// clients) return once their call returns. The result has the optional
// interfaces of kek (see the package documentation).
func WithTimeout(kek KEK, cfg TimeoutConfig) KEK {
	return expose(kek, &timeLimited{inner: kek, cfg: cfg})
}

type timeLimited struct {
	inner KEK
	cfg   TimeoutConfig
}

func (t *timeLimited) KeyID() string { return keyIDOf(t.inner) }

// Close closes the inner KEK.
func (t *timeLimited) Close() error { return closeOf(t.inner) }

func (t *timeLimited) Wrap(ctx context.Context, dek, aad []byte) (WrappedKey, error) {
	cctx, cancel := withTimeout(ctx, t.cfg.Call)
	defer cancel()
	wk, err := t.inner.Wrap(cctx, dek, aad)
	return wk, t.classify(ctx, cctx, "wrap", t.cfg.Call, err)
}

func (t *timeLimited) Unwrap(ctx context.Context, wk WrappedKey, aad []byte) ([]byte, error) {
	cctx, cancel := withTimeout(ctx, t.cfg.Call)
	defer cancel()
	dek, err := t.inner.Unwrap(cctx, wk, aad)
	if err = t.classify(ctx, cctx, "unwrap", t.cfg.Call, err); err != nil {
		clear(dek)
		return nil, err
	}
	return dek, nil
}

func (t *timeLimited) Rewrap(ctx context.Context, wks []WrappedKey, aads [][]byte) ([]RewrapResult, error) {
	cctx, cancel := withTimeout(ctx, t.cfg.Rewrap)
	defer cancel()
	res, err := rewrapper(t.inner).Rewrap(cctx, wks, aads)
	return res, t.classify(ctx, cctx, "rewrap", t.cfg.Rewrap, err)
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// classify turns a failure caused by the timeout alone into ErrUnavailable.
func (t *timeLimited) classify(parent, cctx context.Context, op string, d time.Duration, err error) error {
	if err == nil || parent.Err() != nil || cctx.Err() == nil ||
		!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return err
	}
	return NewError(parent, op, t.KeyID(), ErrUnavailable, fmt.Errorf("no answer within %v", d))
}
