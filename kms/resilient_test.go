package kms_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/bubble"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/local"
)

// throttling is a KMS in a burst of throttling: it refuses the first
// `per` calls for each AAD with kms.ErrThrottled, as AWS KMS answers
// ThrottlingException, Cloud KMS RESOURCE_EXHAUSTED and Vault 429, and
// serves the next ones. Every caller is refused `per` times whatever the
// timing, so the outcome does not depend on the retries' random jitter.
type throttling struct {
	inner *local.KEK
	per   int

	mu        sync.Mutex
	seen      map[string]int
	calls     int
	throttled int
}

func (f *throttling) KeyID() string { return f.inner.KeyID() }

func (f *throttling) throttle(ctx context.Context, op string, aad []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.seen == nil {
		f.seen = map[string]int{}
	}
	if f.seen[string(aad)] < f.per {
		f.seen[string(aad)]++
		f.throttled++
		return kms.NewError(ctx, op, f.KeyID(), kms.ErrThrottled, errors.New("ThrottlingException: rate exceeded"))
	}
	return nil
}

func (f *throttling) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	if err := f.throttle(ctx, "wrap", aad); err != nil {
		return kms.WrappedKey{}, err
	}
	return f.inner.Wrap(ctx, dek, aad)
}

func (f *throttling) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	if err := f.throttle(ctx, "unwrap", aad); err != nil {
		return nil, err
	}
	return f.inner.Unwrap(ctx, wk, aad)
}

// The default setup rides out a burst in which 64 concurrent callers are
// each throttled four times in a row: 256 throttled answers, which would
// open a breaker that counted them and fail every caller after the fifth.
// synctest runs the backoff in virtual time, with the system clock and the
// default jitter.
func TestResilientSurvivesThrottlingBurst(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		const callers, per = 64, 4
		backend := &throttling{inner: newLocal(t, "local:throttled"), per: per}
		kek := kms.Resilient(backend, kms.ResilientConfig{})

		start := time.Now()
		errs := make([]error, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				aad := fmt.Appendf(nil, "scope=tenant:st-mary/patient/%d", i)
				wk, err := kek.Wrap(t.Context(), make([]byte, 32), aad)
				if err == nil {
					_, err = backend.inner.Unwrap(t.Context(), wk, aad)
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i, err := range errs {
			assert.NoError(t, err, "caller %d", i)
		}
		assert.Equal(t, callers*per, backend.throttled)
		assert.Equal(t, callers*(per+1), backend.calls)
		// Four backoffs of at most 100, 200, 400 and 800 ms.
		assert.LessOrEqual(t, time.Since(start), 1500*time.Millisecond)
	})
}

// Without Resilient (or WithRetry), a backend's first throttled answer
// fails the request: backends make one attempt per call.
func TestThrottledBackendWithoutResilientFails(t *testing.T) {
	backend := &throttling{inner: newLocal(t, "local:throttled"), per: 1}
	_, err := backend.Wrap(t.Context(), make([]byte, 32), nil)
	assert.ErrorIs(t, err, kms.ErrThrottled)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.True(t, kms.IsTransient(err))
}

// A throttling KMS is answering: the breaker does not count its refusals,
// and they reset the count of real failures.
func TestBreakerIgnoresThrottling(t *testing.T) {
	ctx := context.Background()
	b, tr := newBreaker(t, 2)
	th := kms.ErrThrottled
	k := b.Guard(script(newLocal(t, "local:b"), th, th, th, th, kms.ErrUnavailable, th, kms.ErrUnavailable, th))
	for i := range 8 {
		_, err := k.Wrap(ctx, make([]byte, 32), nil)
		require.ErrorIs(t, err, kms.ErrUnavailable, "call %d", i)
	}
	assert.Equal(t, kms.BreakerClosed, b.State())
	assert.Empty(t, tr.list())

	// Real failures still open it.
	k = b.Guard(script(newLocal(t, "local:b"), kms.ErrUnavailable, kms.ErrUnavailable))
	for range 2 {
		k.Wrap(ctx, make([]byte, 32), nil)
	}
	assert.Equal(t, kms.BreakerOpen, b.State())
}

// hanging is a KMS that never answers: each call waits for its context.
type hanging struct {
	kms.KEK
	calls atomic.Int32
}

func (h *hanging) Wrap(ctx context.Context, _, _ []byte) (kms.WrappedKey, error) {
	h.calls.Add(1)
	<-ctx.Done()
	return kms.WrappedKey{}, kms.NewError(ctx, "wrap", "local:hanging", kms.ErrUnavailable, ctx.Err())
}

// By default each attempt is bounded by DefaultCallTimeout, a timed-out
// attempt is retried, and the breaker counts the attempts: after
// DefaultBreakerFailures of them it opens and the next call fails fast.
func TestResilientDefaults(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		backend := &hanging{KEK: newLocal(t, "local:hanging")}
		kek := kms.Resilient(backend, kms.ResilientConfig{})

		start := time.Now()
		_, err := kek.Wrap(t.Context(), make([]byte, 32), nil)
		elapsed := time.Since(start)
		require.ErrorIs(t, err, kms.ErrUnavailable)
		assert.NotErrorIs(t, err, context.DeadlineExceeded, "the caller's context is alive: the KMS is unavailable")
		assert.Contains(t, err.Error(), "no answer within 10s")
		assert.Equal(t, int32(kms.DefaultResilientAttempts), backend.calls.Load())
		assert.GreaterOrEqual(t, elapsed, kms.DefaultResilientAttempts*kms.DefaultCallTimeout)
		assert.Less(t, elapsed, kms.DefaultResilientAttempts*kms.DefaultCallTimeout+1500*time.Millisecond)

		_, err = kek.Wrap(t.Context(), make([]byte, 32), nil)
		assert.ErrorIs(t, err, kms.ErrCircuitOpen, "five timed-out attempts open the default breaker")
		assert.Equal(t, int32(kms.DefaultResilientAttempts), backend.calls.Load())
	})
}

// Explicit settings override the defaults: one attempt, no timeout of its
// own, a shared breaker, an observer that sees each attempt.
func TestResilientConfig(t *testing.T) {
	ctx := context.Background()
	var events []kms.Event
	breaker := kms.NewBreaker(kms.BreakerConfig{Failures: 1})
	inner := script(newLocal(t, "local:r"), kms.ErrUnavailable, nil)
	kek := kms.Resilient(inner, kms.ResilientConfig{
		Retry:    kms.RetryConfig{MaxAttempts: 1},
		Breaker:  breaker,
		Timeout:  kms.TimeoutConfig{Call: -1},
		Observer: kms.ObserverConfig{Observe: func(_ context.Context, e kms.Event) { events = append(events, e) }},
	})
	_, err := kek.Wrap(ctx, make([]byte, 32), nil)
	require.ErrorIs(t, err, kms.ErrUnavailable)
	assert.Equal(t, 1, inner.Calls(), "MaxAttempts 1 makes one attempt")
	assert.Equal(t, kms.BreakerOpen, breaker.State(), "the given breaker counts the attempts")
	require.Len(t, events, 1)
	assert.Equal(t, kms.ErrUnavailable, events[0].Kind)
	assert.Equal(t, 1, events[0].Attempt)
}
