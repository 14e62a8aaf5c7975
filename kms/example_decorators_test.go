package kms_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
	"github.com/phicrypt/phicrypt/kms/local"
)

// exampleKEK returns a new local KEK; production code would open a Vault,
// cloud KMS or HSM key instead.
func exampleKEK(keyID string) *local.KEK {
	data, err := local.Generate(local.Options{KeyID: keyID})
	if err != nil {
		log.Fatal(err)
	}
	kek, err := local.New(local.Config{Data: data})
	if err != nil {
		log.Fatal(err)
	}
	return kek
}

// A KMS that fails twice, then recovers: the observer, inside the retry,
// sees every attempt.
func ExampleWithRetry() {
	ctx := context.Background()
	backend := kmstest.Instrument(exampleKEK("local:hospital-main")) // fails on demand
	backend.SetDown(true)
	observed := kms.WithObserver(backend, kms.ObserverConfig{
		Observe: func(_ context.Context, e kms.Event) {
			fmt.Printf("%s %s attempt %d: %v\n", e.Op, e.KeyID, e.Attempt, e.Kind)
			if e.Attempt == 2 {
				backend.SetDown(false)
			}
		},
	})
	kek := kms.WithRetry(observed, kms.RetryConfig{MaxAttempts: 4, BaseDelay: time.Millisecond})

	wk, err := kek.Wrap(ctx, bytes.Repeat([]byte{7}, 32), []byte("scope=tenant:st-mary"))
	fmt.Println(wk.KeyID, err)
	// Output:
	// wrap local:hospital-main attempt 1: kms: unavailable
	// wrap local:hospital-main attempt 2: kms: unavailable
	// wrap local:hospital-main attempt 3: <nil>
	// local:hospital-main <nil>
}

// The breaker opens after two failures, fails fast while the KMS is down,
// and closes after a successful probe once the cool-down has passed.
func ExampleBreaker() {
	ctx := context.Background()
	backend := kmstest.Instrument(exampleKEK("local:hospital-main"))
	breaker := kms.NewBreaker(kms.BreakerConfig{
		Failures: 2,
		CoolDown: 20 * time.Millisecond,
		OnStateChange: func(from, to kms.BreakerState) {
			fmt.Printf("breaker %v -> %v\n", from, to)
		},
	})
	kek := breaker.Guard(backend)
	dek := bytes.Repeat([]byte{7}, 32)

	backend.SetDown(true)
	for range 3 {
		_, err := kek.Wrap(ctx, dek, nil)
		fmt.Println(err, errors.Is(err, kms.ErrCircuitOpen))
	}
	fmt.Println("KMS calls:", backend.Calls())

	backend.SetDown(false)
	time.Sleep(30 * time.Millisecond)
	_, err := kek.Wrap(ctx, dek, nil)
	fmt.Println(err, breaker.State())
	// Output:
	// kms: wrap: unavailable false
	// breaker closed -> open
	// kms: wrap: unavailable false
	// kms: wrap local:hospital-main: unavailable: circuit breaker open true
	// KMS calls: 2
	// breaker open -> half-open
	// breaker half-open -> closed
	// <nil> closed
}

// A call that the KMS does not answer in time fails as unavailable, which
// a retry may repeat.
func ExampleWithTimeout() {
	backend := kmstest.Instrument(exampleKEK("local:hospital-main"))
	backend.SetDelay(time.Minute) // a KMS that hangs
	kek := kms.WithTimeout(backend, kms.TimeoutConfig{Call: 10 * time.Millisecond})

	_, err := kek.Wrap(context.Background(), bytes.Repeat([]byte{7}, 32), nil)
	fmt.Println(err)
	fmt.Println(kms.IsTransient(err))
	// Output:
	// kms: wrap local:hospital-main: unavailable: no answer within 10ms
	// true
}

// Moving from an old KMS to a new one: new keys are wrapped by the new
// KEK, old ones still unwrap, and Rewrap moves them over.
func ExampleNewMulti() {
	ctx := context.Background()
	oldKEK, newKEK := exampleKEK("local:old-kms"), exampleKEK("local:new-kms")
	dek, aad := bytes.Repeat([]byte{7}, 32), []byte("scope=tenant:st-mary")
	stored, err := oldKEK.Wrap(ctx, dek, aad)
	if err != nil {
		log.Fatal(err)
	}

	kek, err := kms.NewMulti(newKEK, oldKEK)
	if err != nil {
		log.Fatal(err)
	}
	got, err := kek.Unwrap(ctx, stored, aad)
	fmt.Println(bytes.Equal(got, dek), err)

	res, err := kek.Rewrap(ctx, []kms.WrappedKey{stored}, [][]byte{aad})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res[0].Key.KeyID, res[0].Err)
	fresh, err := kek.Wrap(ctx, dek, aad)
	fmt.Println(fresh.KeyID, err)
	// Output:
	// true <nil>
	// local:new-kms <nil>
	// local:new-kms <nil>
}

// An observer feeds metrics: operation, key id, attempt, duration and the
// kind of error, never key material or AAD.
func ExampleWithObserver() {
	ctx := context.Background()
	kek := kms.WithObserver(exampleKEK("local:hospital-main"), kms.ObserverConfig{
		Observe: func(_ context.Context, e kms.Event) {
			// e.g. a histogram of e.Duration labelled by e.Op and e.Kind
			fmt.Printf("op=%s key=%s keys=%d error=%v\n", e.Op, e.KeyID, e.Keys, e.Kind)
		},
	})
	wk, _ := kek.Wrap(ctx, bytes.Repeat([]byte{7}, 32), []byte("scope=a"))
	kek.Unwrap(ctx, wk, []byte("scope=b"))
	// Output:
	// op=wrap key=local:hospital-main keys=1 error=<nil>
	// op=unwrap key=local:hospital-main keys=1 error=kms: unwrap failed
}

// Most applications put their backend behind Resilient once, with the
// production defaults (kmsopen.Open does it for them): five attempts with
// backoff, a circuit breaker, a timeout per attempt. Here the KMS fails
// twice, then recovers.
func ExampleResilient() {
	ctx := context.Background()
	backend := kmstest.Instrument(exampleKEK("local:hospital-main"))
	backend.SetDown(true)
	kek := kms.Resilient(backend, kms.ResilientConfig{
		Observer: kms.ObserverConfig{Observe: func(_ context.Context, e kms.Event) {
			fmt.Printf("%s attempt %d: %v\n", e.Op, e.Attempt, e.Kind)
			if e.Attempt == 2 {
				backend.SetDown(false)
			}
		}},
	})
	wk, err := kek.Wrap(ctx, bytes.Repeat([]byte{7}, 32), []byte("scope=tenant:st-mary"))
	fmt.Println(wk.KeyID, err)
	// Output:
	// wrap attempt 1: kms: unavailable
	// wrap attempt 2: kms: unavailable
	// wrap attempt 3: <nil>
	// local:hospital-main <nil>
}
