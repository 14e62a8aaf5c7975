package kms_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/bubble"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
)

// slowKEK is a KEK with an id and Rewrap (the "both" shape) whose every
// call takes d: in a testing/synctest bubble, exactly d.
type slowKEK struct {
	inner interface {
		kms.KEK
		kms.Identifier
		kms.Rewrapper
	}
	d time.Duration
}

func (s slowKEK) KeyID() string { return s.inner.KeyID() }

func (s slowKEK) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	time.Sleep(s.d)
	return s.inner.Wrap(ctx, dek, aad)
}

func (s slowKEK) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	time.Sleep(s.d)
	return s.inner.Unwrap(ctx, wk, aad)
}

func (s slowKEK) Rewrap(ctx context.Context, wks []kms.WrappedKey, aads [][]byte) ([]kms.RewrapResult, error) {
	time.Sleep(s.d)
	return s.inner.Rewrap(ctx, wks, aads)
}

func TestObserver(t *testing.T) {
	bubble.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var events []kms.Event
		sh := shapes(t, "local:o")["both"]
		slow := slowKEK{inner: sh.kek.(interface {
			kms.KEK
			kms.Identifier
			kms.Rewrapper
		}), d: 5 * time.Millisecond}
		k := kms.WithObserver(slow, kms.ObserverConfig{
			Observe: func(_ context.Context, e kms.Event) { events = append(events, e) },
		})
		dek := []byte("0123456789abcdef0123456789abcdef")
		aad := []byte("patient=12345")
		wk, err := k.Wrap(ctx, dek, aad)
		require.NoError(t, err)
		_, err = k.Unwrap(ctx, wk, []byte("patient=99999"))
		require.ErrorIs(t, err, kms.ErrUnwrapFailed)
		_, err = k.(kms.Rewrapper).Rewrap(ctx, []kms.WrappedKey{wk, wk}, [][]byte{aad, aad})
		require.NoError(t, err)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err = k.Wrap(cctx, dek, aad)
		require.ErrorIs(t, err, context.Canceled)

		want := []kms.Event{
			{Op: "wrap", KeyID: "local:o-both", Attempt: 1, Keys: 1, Duration: 5 * time.Millisecond},
			{Op: "unwrap", KeyID: "local:o-both", Attempt: 1, Keys: 1, Duration: 5 * time.Millisecond, Kind: kms.ErrUnwrapFailed},
			{Op: "rewrap", KeyID: "local:o-both", Attempt: 1, Keys: 2, Duration: 5 * time.Millisecond},
			{Op: "wrap", KeyID: "local:o-both", Attempt: 1, Keys: 1, Duration: 5 * time.Millisecond, Kind: context.Canceled},
		}
		// Err is the call's error itself; compare it apart.
		require.Len(t, events, len(want))
		for i := range events {
			if want[i].Kind == nil {
				assert.NoError(t, events[i].Err)
			} else {
				assert.ErrorIs(t, events[i].Err, want[i].Kind)
				var kerr *kms.Error
				assert.ErrorAs(t, events[i].Err, &kerr)
			}
			events[i].Err = nil
		}
		assert.Equal(t, want, events)
		for _, e := range events {
			s := fmt.Sprintf("%+v", e)
			assert.NotContains(t, s, "0123456789abcdef")
			assert.NotContains(t, s, "patient")
		}
	})
}

func TestObserverKeyIDWithoutIdentifier(t *testing.T) {
	ctx := context.Background()
	var events []kms.Event
	k := kms.WithObserver(struct{ kms.KEK }{newLocal(t, "local:anon")}, kms.ObserverConfig{
		Observe: func(_ context.Context, e kms.Event) { events = append(events, e) },
	})
	wk, err := k.Wrap(ctx, make([]byte, 32), nil)
	require.NoError(t, err)
	_, err = k.Unwrap(ctx, wk, nil)
	require.NoError(t, err)
	require.Len(t, events, 2)
	assert.Equal(t, "local:anon", events[0].KeyID, "from the wrapped key")
	assert.Equal(t, "local:anon", events[1].KeyID)

	// A nil Observe observes nothing.
	_, err = kms.WithObserver(newLocal(t, "local:x"), kms.ObserverConfig{}).Wrap(ctx, make([]byte, 32), nil)
	assert.NoError(t, err)
}

// ctxKEK records a value of the context of each call it receives.
type ctxKEK struct {
	kms.KEK
	mu   sync.Mutex
	seen []any
}

type spanKey struct{}

func (k *ctxKEK) KeyID() string { return k.KEK.(kms.Identifier).KeyID() }

func (k *ctxKEK) note(ctx context.Context) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.seen = append(k.seen, ctx.Value(spanKey{}))
}

func (k *ctxKEK) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	k.note(ctx)
	return k.KEK.Wrap(ctx, dek, aad)
}

func (k *ctxKEK) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	k.note(ctx)
	return k.KEK.Unwrap(ctx, wk, aad)
}

// TestObserverStart checks the start hook: it runs before the inner KEK,
// whose call and Observe get the context it returns (where a tracer puts
// its span), once per attempt under WithRetry.
func TestObserverStart(t *testing.T) {
	ctx := context.Background()
	inner := &ctxKEK{KEK: newLocal(t, "local:s")}
	var starts, observed []kms.Event
	var observedCtx []any
	n := 0
	obs := kms.WithObserver(inner, kms.ObserverConfig{
		Start: func(ctx context.Context, e kms.Event) context.Context {
			n++
			starts = append(starts, e)
			assert.Len(t, inner.seen, n-1, "Start runs before the inner call")
			return context.WithValue(ctx, spanKey{}, fmt.Sprintf("span-%d", n))
		},
		Observe: func(ctx context.Context, e kms.Event) {
			observed = append(observed, e)
			observedCtx = append(observedCtx, ctx.Value(spanKey{}))
		},
	})
	wk, err := obs.Wrap(ctx, make([]byte, 32), []byte("a"))
	require.NoError(t, err)
	_, err = obs.Unwrap(ctx, wk, []byte("b"))
	require.ErrorIs(t, err, kms.ErrUnwrapFailed)

	assert.Equal(t, []any{"span-1", "span-2"}, inner.seen, "the inner KEK gets Start's context")
	assert.Equal(t, []any{"span-1", "span-2"}, observedCtx, "Observe gets Start's context")
	assert.Equal(t, []kms.Event{
		{Op: "wrap", KeyID: "local:s", Attempt: 1, Keys: 1},
		{Op: "unwrap", KeyID: "local:s", Attempt: 1, Keys: 1},
	}, starts)
	require.Len(t, observed, 2)
	assert.ErrorIs(t, observed[1].Kind, kms.ErrUnwrapFailed)

	// Under WithRetry each attempt starts with its number.
	starts = nil
	down := kmstest.Instrument(newLocal(t, "local:s"))
	down.SetDown(true)
	retried := kms.WithRetry(kms.WithObserver(down, kms.ObserverConfig{
		Start: func(ctx context.Context, e kms.Event) context.Context {
			starts = append(starts, e)
			return nil // a nil context falls back to the caller's
		},
	}), kms.RetryConfig{MaxAttempts: 3, BaseDelay: time.Nanosecond})
	_, err = retried.Wrap(ctx, make([]byte, 32), nil)
	require.ErrorIs(t, err, kms.ErrUnavailable)
	require.Len(t, starts, 3)
	for i, e := range starts {
		assert.Equal(t, i+1, e.Attempt)
	}
}

func TestKindOf(t *testing.T) {
	assert.NoError(t, kms.KindOf(nil))
	for _, kind := range []error{kms.ErrUnavailable, kms.ErrPermissionDenied, kms.ErrKeyNotFound, kms.ErrUnwrapFailed, kms.ErrInvalidInput, context.Canceled, context.DeadlineExceeded} {
		assert.Equal(t, kind, kms.KindOf(kms.NewError(context.Background(), "wrap", "local:x", kind, nil)))
	}
	assert.Equal(t, kms.ErrUnavailable, kms.KindOf(kms.NewError(context.Background(), "wrap", "local:x", kms.ErrCircuitOpen, nil)))
	assert.Equal(t, kms.ErrUnavailable, kms.KindOf(fmt.Errorf("unclassified")))
}
