package kms_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
)

// timedClock advances by step at each Now, so that each call takes step.
type timedClock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

func (c *timedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.step)
	return c.now
}

func (c *timedClock) Sleep(ctx context.Context, d time.Duration) error { return ctx.Err() }

func TestObserver(t *testing.T) {
	ctx := context.Background()
	var events []kms.Event
	sh := shapes(t, "local:o")["both"]
	k := kms.WithObserver(sh.kek, kms.ObserverConfig{
		Observe: func(_ context.Context, e kms.Event) { events = append(events, e) },
		Clock:   &timedClock{step: 5 * time.Millisecond},
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
	assert.Equal(t, want, events)
	for _, e := range events {
		s := fmt.Sprintf("%+v", e)
		assert.NotContains(t, s, "0123456789abcdef")
		assert.NotContains(t, s, "patient")
	}
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

func TestKindOf(t *testing.T) {
	assert.NoError(t, kms.KindOf(nil))
	for _, kind := range []error{kms.ErrUnavailable, kms.ErrPermissionDenied, kms.ErrKeyNotFound, kms.ErrUnwrapFailed, kms.ErrInvalidInput, context.Canceled, context.DeadlineExceeded} {
		assert.Equal(t, kind, kms.KindOf(kms.NewError(context.Background(), "wrap", "local:x", kind, nil)))
	}
	assert.Equal(t, kms.ErrUnavailable, kms.KindOf(kms.NewError(context.Background(), "wrap", "local:x", kms.ErrCircuitOpen, nil)))
	assert.Equal(t, kms.ErrUnavailable, kms.KindOf(fmt.Errorf("unclassified")))
}
