package kms_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
)

func TestTimeoutEndsSlowCalls(t *testing.T) {
	ctx := context.Background()
	inst := kmstest.Instrument(newLocal(t, "local:t"))
	k := kms.WithTimeout(inst, kms.TimeoutConfig{Call: 20 * time.Millisecond})
	wk, err := k.Wrap(ctx, make([]byte, 32), nil)
	require.NoError(t, err, "a fast call is not affected")

	inst.SetDelay(time.Minute)
	start := time.Now()
	_, err = k.Unwrap(ctx, wk, nil)
	assert.Less(t, time.Since(start), 10*time.Second)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "the caller's context did not end")
	assert.True(t, kms.IsTransient(err), "a KMS that does not answer in time may be retried")
	assert.Contains(t, err.Error(), "no answer within 20ms")
	_, err = k.Wrap(ctx, make([]byte, 32), nil)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
}

func TestTimeoutCallerDeadlineWins(t *testing.T) {
	inst := kmstest.Instrument(newLocal(t, "local:t"))
	inst.SetDelay(time.Minute)
	k := kms.WithTimeout(inst, kms.TimeoutConfig{Call: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := k.Wrap(ctx, make([]byte, 32), nil)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.False(t, kms.IsTransient(err))
}

func TestTimeoutKeepsOtherErrors(t *testing.T) {
	k := kms.WithTimeout(script(newLocal(t, "local:t"), kms.ErrPermissionDenied), kms.TimeoutConfig{Call: time.Minute})
	_, err := k.Wrap(context.Background(), make([]byte, 32), nil)
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)
}

func TestTimeoutRewrap(t *testing.T) {
	ctx := context.Background()
	sh := shapes(t, "local:t")["both"]
	slow := &slowRewrapper{KEK: sh.kek, delay: time.Minute}
	k := kms.WithTimeout(slow, kms.TimeoutConfig{Call: time.Hour, Rewrap: 20 * time.Millisecond})
	wk, err := k.Wrap(ctx, make([]byte, 32), nil)
	require.NoError(t, err)
	_, err = k.(kms.Rewrapper).Rewrap(ctx, []kms.WrappedKey{wk}, [][]byte{nil})
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.Contains(t, err.Error(), "no answer within 20ms")

	// No timeout of its own: only the caller's context bounds it.
	k = kms.WithTimeout(slow, kms.TimeoutConfig{})
	slow.delay = 0
	_, err = k.(kms.Rewrapper).Rewrap(ctx, []kms.WrappedKey{wk}, [][]byte{nil})
	assert.NoError(t, err)
}

// slowRewrapper's Rewrap waits for delay or until its context ends.
type slowRewrapper struct {
	kms.KEK
	delay time.Duration
}

func (s *slowRewrapper) Rewrap(ctx context.Context, wks []kms.WrappedKey, aads [][]byte) ([]kms.RewrapResult, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, kms.NewError(ctx, "rewrap", "", ctx.Err(), nil)
	}
	return s.KEK.(kms.Rewrapper).Rewrap(ctx, wks, aads)
}
