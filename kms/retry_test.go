package kms_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/bubble"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
)

// noJitter makes backoff delays their ceilings, so tests can check them.
func noJitter(d time.Duration) time.Duration { return d }

func TestRetryTransientUntilSuccess(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		inner := script(newLocal(t, "local:r"), kms.ErrUnavailable, kms.ErrUnavailable)
		k := kms.WithRetry(inner, kms.RetryConfig{MaxAttempts: 5, BaseDelay: 100 * time.Millisecond, Jitter: noJitter})
		wk, err := k.Wrap(ctx, make([]byte, 32), nil)
		require.NoError(t, err)
		assert.Equal(t, 3, inner.Calls())
		assert.Equal(t, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}, inner.Gaps(), "exponential backoff")

		inner.script = []error{kms.ErrUnavailable}
		_, err = k.Unwrap(ctx, wk, nil)
		require.NoError(t, err)
		assert.Equal(t, 5, inner.Calls())
	})
}

func TestRetryBounded(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		inst := kmstest.Instrument(newLocal(t, "local:r"))
		inst.SetDown(true)
		timed := script(inst)
		k := kms.WithRetry(timed, kms.RetryConfig{MaxAttempts: 5, BaseDelay: time.Second, MaxDelay: 3 * time.Second, Jitter: noJitter})
		_, err := k.Wrap(context.Background(), make([]byte, 32), nil)
		assert.ErrorIs(t, err, kms.ErrUnavailable)
		assert.Equal(t, int64(5), inst.Calls(), "MaxAttempts calls in all")
		assert.Equal(t, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}, timed.Gaps(), "delays are capped at MaxDelay")
	})
}

func TestRetryDefaults(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		inst := kmstest.Instrument(newLocal(t, "local:r"))
		inst.SetDown(true)
		var sleeps []time.Duration
		for range 50 {
			// A KEK per call, so that the gaps are the waits of one call.
			timed := script(inst)
			k := kms.WithRetry(timed, kms.RetryConfig{})
			_, err := k.Wrap(context.Background(), make([]byte, 32), nil)
			require.ErrorIs(t, err, kms.ErrUnavailable)
			sleeps = append(sleeps, timed.Gaps()...)
		}
		assert.Equal(t, int64(50*kms.DefaultRetryAttempts), inst.Calls())
		require.Len(t, sleeps, 50*(kms.DefaultRetryAttempts-1))
		distinct := map[time.Duration]bool{}
		for i, d := range sleeps {
			ceiling := kms.DefaultRetryBaseDelay << (i % (kms.DefaultRetryAttempts - 1))
			assert.GreaterOrEqual(t, d, time.Duration(0))
			assert.LessOrEqual(t, d, ceiling, "full jitter stays within the ceiling")
			distinct[d] = true
		}
		assert.Greater(t, len(distinct), 10, "full jitter spreads the delays")
	})
}

func TestRetryNeverRetriesPermanentErrors(t *testing.T) {
	for _, kind := range []error{kms.ErrPermissionDenied, kms.ErrKeyNotFound, kms.ErrUnwrapFailed, kms.ErrInvalidInput, kms.ErrCircuitOpen} {
		inner := script(newLocal(t, "local:r"), kind, kind, kind)
		k := kms.WithRetry(inner, kms.RetryConfig{MaxAttempts: 3})
		_, err := k.Wrap(context.Background(), make([]byte, 32), nil)
		assert.ErrorIs(t, err, kind)
		assert.Equal(t, 1, inner.Calls(), "%v must not be retried", kind)
	}

	// A real unwrap failure, end to end.
	l := newLocal(t, "local:r")
	inst := kmstest.Instrument(l)
	k := kms.WithRetry(inst, kms.RetryConfig{MaxAttempts: 3})
	wk, err := k.Wrap(context.Background(), make([]byte, 32), []byte("a"))
	require.NoError(t, err)
	_, err = k.Unwrap(context.Background(), wk, []byte("b"))
	assert.ErrorIs(t, err, kms.ErrUnwrapFailed)
	assert.Equal(t, int64(1), inst.Unwraps())
}

func TestRetryStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inner := script(newLocal(t, "local:r"), kms.ErrUnavailable, kms.ErrUnavailable, kms.ErrUnavailable)
	// Outside a synctest bubble, on the real clock: the wait must end as
	// soon as ctx does.
	k := kms.WithRetry(inner, kms.RetryConfig{MaxAttempts: 10, BaseDelay: time.Hour, Jitter: noJitter})
	go func() {
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	_, err := k.Wrap(ctx, make([]byte, 32), nil)
	assert.Less(t, time.Since(start), 10*time.Second)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, kms.ErrUnavailable, "the last failure is the cause")
	assert.False(t, kms.IsTransient(err))
	assert.Equal(t, 1, inner.Calls())
}

func TestRetryDoesNotSleepPastDeadline(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		inner := script(newLocal(t, "local:r"), kms.ErrUnavailable, kms.ErrUnavailable)
		k := kms.WithRetry(inner, kms.RetryConfig{MaxAttempts: 3, BaseDelay: time.Hour, Jitter: noJitter})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		_, err := k.Wrap(ctx, make([]byte, 32), nil)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorIs(t, err, kms.ErrUnavailable)
		assert.Equal(t, 1, inner.Calls())
		assert.Zero(t, time.Since(start), "no wait starts that would end after the deadline")
	})
}

func TestRetryAttemptsObserved(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		var events []kms.Event
		inner := script(newLocal(t, "local:r"), kms.ErrUnavailable, kms.ErrUnavailable)
		obs := kms.WithObserver(inner, kms.ObserverConfig{Observe: func(_ context.Context, e kms.Event) { events = append(events, e) }})
		k := kms.WithRetry(obs, kms.RetryConfig{})
		_, err := k.Wrap(context.Background(), make([]byte, 32), nil)
		require.NoError(t, err)
		require.Len(t, events, 3)
		for i, e := range events {
			assert.Equal(t, i+1, e.Attempt)
		}
		assert.ErrorIs(t, events[0].Kind, kms.ErrUnavailable)
		assert.NoError(t, events[2].Kind)
	})
}

func TestRetryRewrap(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		sh := shapes(t, "local:r")["both"]
		inst := &flakyRewrapper{KEK: sh.kek, fails: 1}
		k := kms.WithRetry(inst, kms.RetryConfig{})
		wk, err := k.Wrap(ctx, make([]byte, 32), nil)
		require.NoError(t, err)
		res, err := k.(kms.Rewrapper).Rewrap(ctx, []kms.WrappedKey{wk}, [][]byte{nil})
		require.NoError(t, err)
		assert.NoError(t, res[0].Err)
		assert.Equal(t, 2, inst.calls, "a transient failure of the whole batch is retried")
	})
}

// flakyRewrapper fails its first Rewrap calls with ErrUnavailable.
type flakyRewrapper struct {
	kms.KEK
	fails, calls int
}

func (f *flakyRewrapper) Rewrap(ctx context.Context, wks []kms.WrappedKey, aads [][]byte) ([]kms.RewrapResult, error) {
	f.calls++
	if f.calls <= f.fails {
		return nil, kms.NewError(ctx, "rewrap", "", kms.ErrUnavailable, nil)
	}
	return f.KEK.(kms.Rewrapper).Rewrap(ctx, wks, aads)
}

func TestRetryBackoffNeverOverflows(t *testing.T) {
	// With no practical cap on the delay, doubling the ceiling must not
	// overflow into zero or negative delays: that would retry a failing
	// KMS in a tight loop.
	var ceilings []time.Duration
	jitter := func(d time.Duration) time.Duration { ceilings = append(ceilings, d); return 0 }
	inst := kmstest.Instrument(newLocal(t, "local:r"))
	inst.SetDown(true)
	k := kms.WithRetry(inst, kms.RetryConfig{MaxAttempts: 70, BaseDelay: 100 * time.Millisecond, MaxDelay: math.MaxInt64, Jitter: jitter})
	_, err := k.Wrap(context.Background(), make([]byte, 32), nil)
	require.ErrorIs(t, err, kms.ErrUnavailable)
	require.Len(t, ceilings, 69)
	for i, d := range ceilings {
		require.Positive(t, d, "retry %d", i+1)
		if i > 0 {
			require.GreaterOrEqual(t, d, ceilings[i-1], "retry %d: the ceiling never shrinks", i+1)
		}
	}
}
