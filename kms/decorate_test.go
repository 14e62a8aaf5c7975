package kms_test

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
	"github.com/phicrypt/phicrypt/kms/local"
)

// newLocal returns a local KEK with key id id.
func newLocal(t testing.TB, id string) *local.KEK {
	t.Helper()
	data, err := local.Generate(local.Options{KeyID: id})
	require.NoError(t, err)
	k, err := local.New(local.Config{Data: data})
	require.NoError(t, err)
	return k
}

// scripted is a KEK whose calls fail with the kinds of its script, in
// order (a nil kind passes the call on), and then pass to the inner KEK.
// It records when each call arrives: in a testing/synctest bubble, where
// time moves only while every goroutine waits, the gaps between calls are
// exactly the decorators' waits.
type scripted struct {
	kms.KEK
	mu     sync.Mutex
	script []error
	calls  int
	at     []time.Time
	before func(call int) // runs before each call, if set
}

func script(inner kms.KEK, kinds ...error) *scripted {
	return &scripted{KEK: inner, script: kinds}
}

func (s *scripted) next(ctx context.Context, op string) error {
	s.mu.Lock()
	s.calls++
	s.at = append(s.at, time.Now())
	call := s.calls
	var kind error
	if len(s.script) > 0 {
		kind, s.script = s.script[0], s.script[1:]
	}
	s.mu.Unlock()
	if s.before != nil {
		s.before(call)
	}
	if kind != nil {
		return kms.NewError(ctx, op, "local:scripted", kind, nil)
	}
	return nil
}

// Gaps returns the time between each call and the next.
func (s *scripted) Gaps() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gaps []time.Duration
	for i := 1; i < len(s.at); i++ {
		gaps = append(gaps, s.at[i].Sub(s.at[i-1]))
	}
	return gaps
}

func (s *scripted) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *scripted) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	if err := s.next(ctx, "wrap"); err != nil {
		return kms.WrappedKey{}, err
	}
	return s.KEK.Wrap(ctx, dek, aad)
}

func (s *scripted) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	if err := s.next(ctx, "unwrap"); err != nil {
		return nil, err
	}
	return s.KEK.Unwrap(ctx, wk, aad)
}

// rewrapping adds a kms.Rewrapper to a KEK: it unwraps and wraps each key,
// and counts its calls.
type rewrapping struct {
	kms.KEK
	mu      sync.Mutex
	batches [][]kms.WrappedKey
}

func (r *rewrapping) Rewrap(ctx context.Context, wks []kms.WrappedKey, aads [][]byte) ([]kms.RewrapResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, kms.NewError(ctx, "rewrap", "", err, nil)
	}
	if len(wks) != len(aads) {
		return nil, kms.NewError(ctx, "rewrap", "", kms.ErrInvalidInput, nil)
	}
	r.mu.Lock()
	r.batches = append(r.batches, wks)
	r.mu.Unlock()
	res := make([]kms.RewrapResult, len(wks))
	for i := range wks {
		dek, err := r.KEK.Unwrap(ctx, wks[i], aads[i])
		if err != nil {
			res[i].Err = err
			continue
		}
		res[i].Key, res[i].Err = r.KEK.Wrap(ctx, dek, aads[i])
		clear(dek)
	}
	return res, nil
}

func (r *rewrapping) Batches() [][]kms.WrappedKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.batches
}

// closing is an io.Closer that counts its calls.
type closing struct{ n atomic.Int32 }

func (c *closing) Close() error {
	c.n.Add(1)
	return nil
}

// shape is a KEK with some combination of the optional interfaces; rw is
// its Rewrapper's implementation, cl its io.Closer's, if any.
type shape struct {
	kek kms.KEK
	rw  *rewrapping
	cl  *closing
}

// shapes returns a KEK of each combination of optional interfaces, all
// backed by local KEKs with key ids starting with prefix.
func shapes(t *testing.T, prefix string) map[string]shape {
	rw := &rewrapping{KEK: newLocal(t, prefix+"-rw")}
	both := &rewrapping{KEK: newLocal(t, prefix+"-both")}
	all := &rewrapping{KEK: newLocal(t, prefix+"-all")}
	cl1, cl2, cl3 := &closing{}, &closing{}, &closing{}
	return map[string]shape{
		"plain":      {kek: struct{ kms.KEK }{newLocal(t, prefix+"-plain")}},
		"identifier": {kek: newLocal(t, prefix+"-id")},
		"rewrapper": {kek: struct {
			kms.KEK
			kms.Rewrapper
		}{rw, rw}, rw: rw},
		"both": {kek: struct {
			kms.KEK
			kms.Identifier
			kms.Rewrapper
		}{both, both.KEK.(kms.Identifier), both}, rw: both},
		"closer": {kek: struct {
			kms.KEK
			io.Closer
		}{newLocal(t, prefix+"-cl"), cl1}, cl: cl1},
		"identifier+closer": {kek: struct {
			*local.KEK
			io.Closer
		}{newLocal(t, prefix+"-idcl"), cl2}, cl: cl2},
		"all": {kek: struct {
			kms.KEK
			kms.Identifier
			kms.Rewrapper
			io.Closer
		}{all, all.KEK.(kms.Identifier), all, cl3}, rw: all, cl: cl3},
	}
}

// decorators applies each decorator of this package to a KEK.
var decorators = map[string]func(kms.KEK) kms.KEK{
	"retry": func(k kms.KEK) kms.KEK {
		return kms.WithRetry(k, kms.RetryConfig{})
	},
	"breaker": func(k kms.KEK) kms.KEK {
		return kms.NewBreaker(kms.BreakerConfig{}).Guard(k)
	},
	"timeout": func(k kms.KEK) kms.KEK {
		return kms.WithTimeout(k, kms.TimeoutConfig{Call: time.Minute, Rewrap: time.Minute})
	},
	"observer": func(k kms.KEK) kms.KEK {
		return kms.WithObserver(k, kms.ObserverConfig{Observe: func(context.Context, kms.Event) {}})
	},
	"stack": func(k kms.KEK) kms.KEK {
		b := kms.NewBreaker(kms.BreakerConfig{})
		obs := kms.WithObserver(k, kms.ObserverConfig{Observe: func(context.Context, kms.Event) {}})
		return kms.WithRetry(b.Guard(kms.WithTimeout(obs, kms.TimeoutConfig{Call: time.Minute})), kms.RetryConfig{})
	},
	"resilient": func(k kms.KEK) kms.KEK {
		return kms.Resilient(k, kms.ResilientConfig{})
	},
}

func TestDecoratorsPreserveOptionalInterfaces(t *testing.T) {
	ctx := context.Background()
	for dname, decorate := range decorators {
		for sname, sh := range shapes(t, "local:shape") {
			t.Run(dname+"/"+sname, func(t *testing.T) {
				d := decorate(sh.kek)
				innerID, isID := sh.kek.(kms.Identifier)
				_, isRW := sh.kek.(kms.Rewrapper)
				id, ok := d.(kms.Identifier)
				assert.Equal(t, isID, ok, "Identifier must be exposed exactly when the inner KEK has it")
				rw, ok := d.(kms.Rewrapper)
				assert.Equal(t, isRW, ok, "Rewrapper must be exposed exactly when the inner KEK has it")
				cl, ok := d.(io.Closer)
				assert.Equal(t, sh.cl != nil, ok, "io.Closer must be exposed exactly when the inner KEK has it")
				if sh.cl != nil {
					require.NoError(t, cl.Close())
					assert.Equal(t, int32(1), sh.cl.n.Load(), "Close must close the inner KEK")
				}
				if isID {
					assert.Equal(t, innerID.KeyID(), id.KeyID())
				}
				wk, err := d.Wrap(ctx, make([]byte, 32), []byte("aad"))
				require.NoError(t, err)
				if isRW {
					before := len(sh.rw.Batches())
					res, err := rw.Rewrap(ctx, []kms.WrappedKey{wk}, [][]byte{[]byte("aad")})
					require.NoError(t, err)
					require.Len(t, res, 1)
					assert.NoError(t, res[0].Err)
					assert.Len(t, sh.rw.Batches(), before+1, "Rewrap must reach the inner Rewrapper")
				}
			})
		}
	}
}

func TestDecoratorsConformance(t *testing.T) {
	for dname, decorate := range decorators {
		t.Run(dname, func(t *testing.T) {
			kmstest.Run(t, kmstest.Config{
				KEK:   decorate(shapes(t, "local:a")["both"].kek),
				Other: decorate(newLocal(t, "local:b")),
			})
		})
	}
}
