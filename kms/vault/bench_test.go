package vault_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/vault"
)

// wrapMany wraps n random data keys, each with its own AAD, from a few
// goroutines.
func wrapMany(tb testing.TB, k *vault.KEK, n int) ([]kms.WrappedKey, [][]byte) {
	tb.Helper()
	wks, aads := make([]kms.WrappedKey, n), make([][]byte, n)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < n; i += 4 {
				aads[i] = fmt.Appendf(nil, "tenant=bench;row=%d", i)
				wk, err := k.Wrap(context.Background(), newDEK(tb), aads[i])
				if err != nil {
					errs <- err
					return
				}
				wks[i] = wk
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(tb, err)
	}
	return wks, aads
}

// BenchmarkRewrap10k rewraps 10,000 data keys after a rotation: in
// batches of DefaultRewrapBatchSize through transit/rewrap, and with one
// call per key. The target is batches at least 10 times faster.
func BenchmarkRewrap10k(b *testing.B) {
	const n = 10000
	s := sharedServer(b)
	ctx := context.Background()
	for _, bind := range []struct {
		name string
		opts map[string]any
	}{{"context", derived}, {"associated_data", plain}} {
		key := s.createKey(b, bind.opts)
		k := s.open(b, key)
		wks, aads := wrapMany(b, k, n)
		s.rotate(b, key)

		b.Run(bind.name+"/batch", func(b *testing.B) {
			for b.Loop() {
				res, err := k.Rewrap(ctx, wks, aads)
				require.NoError(b, err)
				for _, r := range res {
					require.NoError(b, r.Err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "keys/s")
		})
		if bind.name != "context" {
			continue
		}
		b.Run(bind.name+"/one-call-each", func(b *testing.B) {
			for b.Loop() {
				for i := range wks {
					res, err := k.Rewrap(ctx, wks[i:i+1], aads[i:i+1])
					require.NoError(b, err)
					require.NoError(b, res[0].Err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}

// BenchmarkWrap and BenchmarkUnwrap measure one round trip to Vault.
func BenchmarkWrap(b *testing.B) {
	s := sharedServer(b)
	k := s.open(b, s.createKey(b, derived))
	dek, aad := newDEK(b), []byte("tenant=bench")
	for b.Loop() {
		if _, err := k.Wrap(context.Background(), dek, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnwrap(b *testing.B) {
	s := sharedServer(b)
	k := s.open(b, s.createKey(b, derived))
	aad := []byte("tenant=bench")
	wk, err := k.Wrap(context.Background(), newDEK(b), aad)
	require.NoError(b, err)
	for b.Loop() {
		if _, err := k.Unwrap(context.Background(), wk, aad); err != nil {
			b.Fatal(err)
		}
	}
}
