package kms_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/bubble"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
)

// transitions records a breaker's changes of state.
type transitions struct {
	mu  sync.Mutex
	got []string
}

func (tr *transitions) record(from, to kms.BreakerState) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.got = append(tr.got, from.String()+"->"+to.String())
}

func (tr *transitions) list() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.got...)
}

// newBreaker returns a breaker with a cool-down of a minute. The tests run
// in testing/synctest bubbles, where time.Sleep moves the fake clock.
func newBreaker(t *testing.T, failures int) (*kms.Breaker, *transitions) {
	t.Helper()
	tr := &transitions{}
	b := kms.NewBreaker(kms.BreakerConfig{Failures: failures, CoolDown: time.Minute, OnStateChange: tr.record})
	return b, tr
}

// guarded returns a breaker that opens after failures (newBreaker), the
// instrumented local KEK it guards, and the guarded KEK.
func guarded(t *testing.T, failures int) (*kms.Breaker, *transitions, *kmstest.Instrumented, kms.KEK) {
	t.Helper()
	b, tr := newBreaker(t, failures)
	inst := kmstest.Instrument(newLocal(t, "local:b"))
	return b, tr, inst, b.Guard(inst)
}

// tripAndCool takes the KMS down, opens a one-failure breaker with a
// call through k, and waits out its cool-down: the next call is the probe.
func tripAndCool(ctx context.Context, inst *kmstest.Instrumented, k kms.KEK) {
	inst.SetDown(true)
	k.Wrap(ctx, make([]byte, 32), nil)
	time.Sleep(time.Minute)
}

func TestBreakerOpensAndFailsFast(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		b, tr, inst, k := guarded(t, 3)
		wk, err := k.Wrap(ctx, make([]byte, 32), nil)
		require.NoError(t, err)

		inst.SetDown(true)
		for i := 0; i < 3; i++ {
			assert.Equal(t, kms.BreakerClosed, b.State(), "failure %d", i)
			_, err := k.Wrap(ctx, make([]byte, 32), nil)
			assert.ErrorIs(t, err, kms.ErrUnavailable)
			assert.NotErrorIs(t, err, kms.ErrCircuitOpen)
		}
		assert.Equal(t, kms.BreakerOpen, b.State())
		calls := inst.Calls()
		inst.SetDown(false)
		for range 5 {
			_, err = k.Unwrap(ctx, wk, nil)
			assert.ErrorIs(t, err, kms.ErrCircuitOpen)
			assert.ErrorIs(t, err, kms.ErrUnavailable, "an open circuit is an unavailable KMS")
			assert.True(t, kms.IsTransient(err))
		}
		assert.Equal(t, calls, inst.Calls(), "an open breaker does not call the KMS")
		assert.Equal(t, []string{"closed->open"}, tr.list())
	})
}

func TestBreakerCountsConsecutiveFailuresOnly(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		b, _ := newBreaker(t, 3)
		u := kms.ErrUnavailable
		inner := script(newLocal(t, "local:b"), u, u, nil, u, u, nil, u, u)
		k := b.Guard(inner)
		for range 8 {
			k.Wrap(ctx, make([]byte, 32), nil)
		}
		assert.Equal(t, kms.BreakerClosed, b.State(), "a success resets the count")
	})
}

func TestBreakerIgnoresCallerErrors(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		b, tr, inst, k := guarded(t, 2)
		wk, err := k.Wrap(ctx, make([]byte, 32), []byte("right"))
		require.NoError(t, err)
		for range 10 {
			_, err = k.Unwrap(ctx, wk, []byte("wrong"))
			assert.ErrorIs(t, err, kms.ErrUnwrapFailed)
			_, err = k.Wrap(ctx, make([]byte, 3), nil)
			assert.ErrorIs(t, err, kms.ErrInvalidInput)
			_, err = k.Unwrap(ctx, kms.WrappedKey{KeyID: "local:other", Ciphertext: wk.Ciphertext}, nil)
			assert.ErrorIs(t, err, kms.ErrKeyNotFound)
		}
		for _, kind := range []error{kms.ErrPermissionDenied, kms.ErrUnwrapFailed, kms.ErrInvalidInput} {
			for range 5 {
				_, err := b.Guard(script(newLocal(t, "local:s"), kind)).Wrap(ctx, make([]byte, 32), nil)
				assert.ErrorIs(t, err, kind)
			}
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		for range 5 {
			_, err = k.Wrap(cctx, make([]byte, 32), nil)
			assert.ErrorIs(t, err, context.Canceled)
		}
		assert.Equal(t, kms.BreakerClosed, b.State(), "errors of the caller's making must not trip the breaker")
		assert.Empty(t, tr.list())

		// And they show the KMS answering: they reset the failure count.
		inst.SetDown(true)
		_, err = k.Wrap(ctx, make([]byte, 32), nil)
		require.ErrorIs(t, err, kms.ErrUnavailable)
		inst.SetDown(false)
		_, err = k.Unwrap(ctx, wk, []byte("wrong"))
		require.ErrorIs(t, err, kms.ErrUnwrapFailed)
		inst.SetDown(true)
		_, err = k.Wrap(ctx, make([]byte, 32), nil)
		require.ErrorIs(t, err, kms.ErrUnavailable)
		assert.Equal(t, kms.BreakerClosed, b.State())
	})
}

func TestBreakerHalfOpenAllowsExactlyOneProbe(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		b, tr, inst, k := guarded(t, 1)
		inst.SetDown(true)
		_, err := k.Wrap(ctx, make([]byte, 32), nil)
		require.ErrorIs(t, err, kms.ErrUnavailable)
		require.Equal(t, kms.BreakerOpen, b.State())

		time.Sleep(59 * time.Second)
		_, err = k.Wrap(ctx, make([]byte, 32), nil)
		assert.ErrorIs(t, err, kms.ErrCircuitOpen, "still cooling down")

		time.Sleep(time.Second)
		assert.Equal(t, kms.BreakerHalfOpen, b.State())
		inst.SetDown(false)
		inst.SetDelay(100 * time.Millisecond) // the probe is slow: the others arrive meanwhile
		calls := inst.Calls()
		const callers = 8
		var wg sync.WaitGroup
		errs := make([]error, callers)
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = k.Wrap(ctx, make([]byte, 32), nil)
			}()
		}
		wg.Wait()
		assert.Equal(t, calls+1, inst.Calls(), "exactly one probe reaches the KMS")
		ok, open := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case assert.ErrorIs(t, err, kms.ErrCircuitOpen):
				open++
			}
		}
		assert.Equal(t, 1, ok)
		assert.Equal(t, callers-1, open)
		assert.Equal(t, kms.BreakerClosed, b.State(), "a successful probe closes the breaker")
		assert.Equal(t, []string{"closed->open", "open->half-open", "half-open->closed"}, tr.list())
	})
}

func TestBreakerFailedProbeReopens(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		b, tr, inst, k := guarded(t, 1)
		tripAndCool(ctx, inst, k)
		_, err := k.Wrap(ctx, make([]byte, 32), nil)
		assert.ErrorIs(t, err, kms.ErrUnavailable)
		assert.NotErrorIs(t, err, kms.ErrCircuitOpen, "the probe reached the KMS")
		assert.Equal(t, kms.BreakerOpen, b.State(), "a failed probe opens the breaker again")
		calls := inst.Calls()
		_, err = k.Wrap(ctx, make([]byte, 32), nil)
		assert.ErrorIs(t, err, kms.ErrCircuitOpen, "for a new cool-down")
		assert.Equal(t, calls, inst.Calls())
		assert.Equal(t, []string{"closed->open", "open->half-open", "half-open->open"}, tr.list())
	})
}

func TestBreakerProbeEndedByCallerAllowsAnother(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		b, _, inst, k := guarded(t, 1)
		tripAndCool(ctx, inst, k)
		inst.SetDown(false)

		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := k.Wrap(cctx, make([]byte, 32), nil)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, kms.BreakerHalfOpen, b.State(), "a cancelled probe says nothing")
		_, err = k.Wrap(ctx, make([]byte, 32), nil)
		assert.NoError(t, err, "the next call is the probe")
		assert.Equal(t, kms.BreakerClosed, b.State())
	})
}

func TestBreakerSharedByKEKs(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		b, _ := newBreaker(t, 2)
		a := kmstest.Instrument(newLocal(t, "local:a"))
		c := kmstest.Instrument(newLocal(t, "local:c"))
		a.SetDown(true)
		c.SetDown(true)
		b.Guard(a).Wrap(ctx, make([]byte, 32), nil)
		b.Guard(c).Wrap(ctx, make([]byte, 32), nil)
		assert.Equal(t, kms.BreakerOpen, b.State(), "KEKs of one KMS share a breaker")
	})
}

func TestBreakerDefaults(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		b := kms.NewBreaker(kms.BreakerConfig{})
		inst := kmstest.Instrument(newLocal(t, "local:b"))
		inst.SetDown(true)
		k := b.Guard(inst)
		for range kms.DefaultBreakerFailures - 1 {
			k.Wrap(ctx, make([]byte, 32), nil)
		}
		assert.Equal(t, kms.BreakerClosed, b.State())
		k.Wrap(ctx, make([]byte, 32), nil)
		assert.Equal(t, kms.BreakerOpen, b.State())
		time.Sleep(kms.DefaultBreakerCoolDown - time.Nanosecond)
		assert.Equal(t, kms.BreakerOpen, b.State())
		time.Sleep(time.Nanosecond)
		assert.Equal(t, kms.BreakerHalfOpen, b.State())
		assert.Equal(t, "half-open", kms.BreakerHalfOpen.String())
	})
}

// panicking is a KEK whose calls panic while its flag is set, like a
// backend or an observer with a bug, whose panic a server recovers.
type panicking struct {
	kms.KEK
	on atomic.Bool
}

func (p *panicking) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	if p.on.Load() {
		panic("bug in the KEK")
	}
	return p.KEK.Wrap(ctx, dek, aad)
}

func TestBreakerProbeThatPanicsDoesNotJamIt(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		b, _ := newBreaker(t, 1)
		inst := kmstest.Instrument(newLocal(t, "local:b"))
		p := &panicking{KEK: inst}
		k := b.Guard(p)
		tripAndCool(ctx, inst, k)
		require.Equal(t, kms.BreakerHalfOpen, b.State())

		// The probe panics; the caller's server recovers.
		p.on.Store(true)
		assert.Panics(t, func() { k.Wrap(ctx, make([]byte, 32), nil) })
		p.on.Store(false)
		inst.SetDown(false)

		// The KMS is back and the bug gone: the breaker must let a new
		// probe through (at once, or after another cool-down) and close.
		_, err := k.Wrap(ctx, make([]byte, 32), nil)
		if errors.Is(err, kms.ErrCircuitOpen) {
			time.Sleep(time.Minute)
			_, err = k.Wrap(ctx, make([]byte, 32), nil)
		}
		require.NoError(t, err, "a panicked probe left the breaker open for good")
		assert.Equal(t, kms.BreakerClosed, b.State())
	})
}

// unreachable is a backend whose KMS is down: like every backend, it
// checks its arguments (kms.CheckWrap, kms.CheckUnwrap) before calling the
// KMS, and the call itself then fails.
type unreachable struct{ calls atomic.Int64 }

func (u *unreachable) KeyID() string { return "vault:transit/down" }

func (u *unreachable) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	if err := kms.CheckWrap(dek, aad); err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", u.KeyID(), kms.ErrInvalidInput, err)
	}
	u.calls.Add(1)
	return kms.WrappedKey{}, kms.NewError(ctx, "wrap", u.KeyID(), kms.ErrUnavailable, errors.New("connection refused"))
}

func (u *unreachable) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	if err := kms.CheckUnwrap(u.KeyID(), wk, aad); err != nil {
		return nil, kms.NewError(ctx, "unwrap", u.KeyID(), kms.KindOf(err), err)
	}
	u.calls.Add(1)
	return nil, kms.NewError(ctx, "unwrap", u.KeyID(), kms.ErrUnavailable, errors.New("connection refused"))
}

func TestBreakerCallsRefusedBeforeTheKMSCountForNothing(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		b, _ := newBreaker(t, 3)
		down := &unreachable{}
		k := b.Guard(down)
		foreign := kms.WrappedKey{KeyID: "vault:transit/other", Ciphertext: make([]byte, 40)}
		refused := func() {
			t.Helper()
			_, err := k.Unwrap(ctx, foreign, nil)
			require.ErrorIs(t, err, kms.ErrKeyNotFound)
			_, err = k.Wrap(ctx, make([]byte, 3), nil)
			require.ErrorIs(t, err, kms.ErrInvalidInput)
		}

		// Calls refused on their arguments, mixed with the failing ones,
		// must not keep the breaker of a dead KMS closed.
		for range 3 {
			refused()
			_, err := k.Wrap(ctx, make([]byte, 32), nil)
			require.ErrorIs(t, err, kms.ErrUnavailable)
		}
		assert.Equal(t, kms.BreakerOpen, b.State(), "3 consecutive failures of the KMS")
		assert.Equal(t, int64(3), down.calls.Load())

		// Nor may such a call, as the probe, close it.
		time.Sleep(time.Minute)
		refused()
		assert.NotEqual(t, kms.BreakerClosed, b.State(), "a probe that never reached the KMS closed the breaker")
		_, err := k.Wrap(ctx, make([]byte, 32), nil)
		require.ErrorIs(t, err, kms.ErrUnavailable)
		assert.Equal(t, kms.BreakerOpen, b.State())

		// The same for a Multi without a member for the wrapped key.
		b, _ = newBreaker(t, 3)
		m, err := kms.NewMulti(&unreachable{})
		require.NoError(t, err)
		k = b.Guard(m)
		for range 3 {
			_, err = k.Unwrap(ctx, foreign, nil)
			require.ErrorIs(t, err, kms.ErrKeyNotFound)
			_, err = k.Wrap(ctx, make([]byte, 32), nil)
			require.ErrorIs(t, err, kms.ErrUnavailable)
		}
		assert.Equal(t, kms.BreakerOpen, b.State(), "3 consecutive failures of the KMS behind a Multi")
	})
}

func TestBreakerStateCallbackThatPanicsDoesNotJamIt(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var panicking atomic.Bool
		b := kms.NewBreaker(kms.BreakerConfig{Failures: 1, CoolDown: time.Minute, OnStateChange: func(from, to kms.BreakerState) {
			if panicking.Load() {
				panic("bug in a metrics callback")
			}
		}})
		inst := kmstest.Instrument(newLocal(t, "local:b"))
		k := b.Guard(inst)
		tripAndCool(ctx, inst, k)
		inst.SetDown(false)

		// The probe's open->half-open callback panics; the caller's server
		// recovers.
		panicking.Store(true)
		assert.Panics(t, func() { k.Wrap(ctx, make([]byte, 32), nil) })
		panicking.Store(false)

		_, err := k.Wrap(ctx, make([]byte, 32), nil)
		if errors.Is(err, kms.ErrCircuitOpen) {
			time.Sleep(time.Minute)
			_, err = k.Wrap(ctx, make([]byte, 32), nil)
		}
		require.NoError(t, err, "a panicking callback left the breaker open for good")
		assert.Equal(t, kms.BreakerClosed, b.State())
	})
}
