// Package kmstest is the conformance suite that every [kms.KEK]
// implementation runs. A backend's test calls [Run] with two independent
// keys of that backend:
//
//	func TestConformance(t *testing.T) {
//		kmstest.Run(t, kmstest.Config{KEK: newKEK(t), Other: newKEK(t)})
//	}
//
// The suite checks the promises of the kms package: round trips at every
// allowed size, AAD binding, key separation, tamper and truncation
// detection, context cancellation, that inputs are never modified, safety
// under concurrent use, size bounds, error classification with errors.Is,
// that errors never carry the data key, and [kms.Rewrapper] when the KEK
// offers it.
package kmstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
)

// Config describes the backend under test.
type Config struct {
	// KEK is the key under test.
	KEK kms.KEK
	// Other is a second key of the same backend, independent of KEK. A key
	// wrapped by one must not unwrap with the other.
	Other kms.KEK
	// Concurrency is the number of goroutines of the concurrency test
	// (default 16).
	Concurrency int
}

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, c Config) {
	t.Helper()
	require.NotNil(t, c.KEK, "kmstest: Config.KEK is nil")
	require.NotNil(t, c.Other, "kmstest: Config.Other is nil")
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	s := suite{Config: c}
	t.Run("RoundTrip", s.roundTrip)
	t.Run("NilAndEmptyAAD", s.nilAndEmptyAAD)
	t.Run("Randomized", s.randomized)
	t.Run("AADMismatch", s.aadMismatch)
	t.Run("OtherKey", s.otherKey)
	t.Run("Tamper", s.tamper)
	t.Run("CancelledContext", s.cancelledContext)
	t.Run("ExpiredDeadline", s.expiredDeadline)
	t.Run("InputsNotModified", s.inputsNotModified)
	t.Run("ResultOwnedByCaller", s.resultOwnedByCaller)
	t.Run("Concurrent", s.concurrent)
	t.Run("SizeBounds", s.sizeBounds)
	t.Run("Rewrap", s.rewrap)
}

type suite struct{ Config }

func newKey(t *testing.T, n int) []byte {
	t.Helper()
	k := make([]byte, n)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

func (s suite) wrap(t *testing.T, dek, aad []byte) kms.WrappedKey {
	t.Helper()
	wk, err := s.KEK.Wrap(context.Background(), dek, aad)
	require.NoError(t, err)
	require.NoError(t, kms.ValidateKeyID(wk.KeyID), "wrapped key must name its KEK with a valid key id")
	require.NotEmpty(t, wk.Ciphertext)
	require.LessOrEqual(t, len(wk.Ciphertext), kms.MaxWrappedSize)
	return wk
}

// assertKind checks that err is a *kms.Error matching one of kinds, and that
// its message does not reveal secret.
func assertKind(t *testing.T, err error, secret []byte, kinds ...error) {
	t.Helper()
	if !assert.Error(t, err) {
		return
	}
	var kerr *kms.Error
	assert.True(t, errors.As(err, &kerr), "error %q is not a *kms.Error", err)
	matched := false
	for _, k := range kinds {
		if errors.Is(err, k) {
			matched = true
		}
	}
	assert.True(t, matched, "error %q matches none of %v", err, kinds)
	if len(secret) > 0 {
		msg := fmt.Sprintf("%v %+v %#v", err, err, err)
		for _, enc := range []string{string(secret), hex.EncodeToString(secret), base64.StdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret), fmt.Sprint(secret)} {
			assert.NotContains(t, msg, enc, "error reveals secret bytes")
		}
	}
}

func (s suite) roundTrip(t *testing.T) {
	ctx := context.Background()
	for _, n := range []int{kms.MinDataKeySize, 32, kms.MaxDataKeySize} {
		for _, aad := range [][]byte{nil, []byte("a"), []byte("phicrypt/kmstest"), bytes.Repeat([]byte{0xA5}, kms.MaxAADSize)} {
			dek := newKey(t, n)
			wk := s.wrap(t, dek, aad)
			assert.False(t, bytes.Contains(wk.Ciphertext, dek), "wrapped key contains the data key")
			got, err := s.KEK.Unwrap(ctx, wk, aad)
			require.NoError(t, err, "dek %d bytes, aad %d bytes", n, len(aad))
			assert.Equal(t, dek, got)
		}
	}
	// The key id is stable across wraps, and is the one Identifier reports.
	a := s.wrap(t, newKey(t, 32), nil)
	b := s.wrap(t, newKey(t, 32), nil)
	assert.Equal(t, a.KeyID, b.KeyID)
	if id, ok := s.KEK.(kms.Identifier); ok {
		assert.Equal(t, id.KeyID(), a.KeyID, "KeyID() differs from the wrapped keys' key id")
	}
}

func (s suite) nilAndEmptyAAD(t *testing.T) {
	ctx := context.Background()
	dek := newKey(t, 32)
	wk := s.wrap(t, dek, nil)
	got, err := s.KEK.Unwrap(ctx, wk, []byte{})
	require.NoError(t, err)
	assert.Equal(t, dek, got)
	wk = s.wrap(t, dek, []byte{})
	got, err = s.KEK.Unwrap(ctx, wk, nil)
	require.NoError(t, err)
	assert.Equal(t, dek, got)
}

func (s suite) randomized(t *testing.T) {
	dek := newKey(t, 32)
	a := s.wrap(t, dek, []byte("x"))
	b := s.wrap(t, dek, []byte("x"))
	assert.NotEqual(t, a.Ciphertext, b.Ciphertext, "wrapping is not randomized")
}

func (s suite) aadMismatch(t *testing.T) {
	ctx := context.Background()
	dek := newKey(t, 32)
	aad := []byte("scope=tenant-a;purpose=dek")
	wk := s.wrap(t, dek, aad)
	flipped := bytes.Clone(aad)
	flipped[3] ^= 0x01
	for name, other := range map[string][]byte{
		"nil":       nil,
		"flipped":   flipped,
		"truncated": aad[:len(aad)-1],
		"extended":  append(bytes.Clone(aad), 0),
		"other":     []byte("scope=tenant-b;purpose=dek"),
	} {
		got, err := s.KEK.Unwrap(ctx, wk, other)
		assert.Nil(t, got, name)
		assertKind(t, err, dek, kms.ErrUnwrapFailed)
	}
	// And a key wrapped without AAD does not unwrap with some.
	wk = s.wrap(t, dek, nil)
	_, err := s.KEK.Unwrap(ctx, wk, aad)
	assertKind(t, err, dek, kms.ErrUnwrapFailed)
}

func (s suite) otherKey(t *testing.T) {
	ctx := context.Background()
	dek := newKey(t, 32)
	wk := s.wrap(t, dek, nil)
	ow, err := s.Other.Wrap(ctx, newKey(t, 32), nil)
	require.NoError(t, err)

	// As it is: the other KEK refuses a key that names this one.
	got, err := s.Other.Unwrap(ctx, wk, nil)
	assert.Nil(t, got)
	assertKind(t, err, dek, kms.ErrKeyNotFound, kms.ErrUnwrapFailed)

	// Relabelled as the other KEK's: the ciphertext itself must not open.
	if ow.KeyID != wk.KeyID {
		relabelled := kms.WrappedKey{KeyID: ow.KeyID, Ciphertext: wk.Ciphertext}
		got, err = s.Other.Unwrap(ctx, relabelled, nil)
		assert.Nil(t, got)
		assertKind(t, err, dek, kms.ErrUnwrapFailed, kms.ErrKeyNotFound)
	}
}

func (s suite) tamper(t *testing.T) {
	ctx := context.Background()
	dek := newKey(t, 32)
	wk := s.wrap(t, dek, []byte("aad"))
	try := func(name string, ct []byte) {
		t.Helper()
		got, err := s.KEK.Unwrap(ctx, kms.WrappedKey{KeyID: wk.KeyID, Ciphertext: ct}, []byte("aad"))
		assert.Nil(t, got, name)
		assertKind(t, err, dek, kms.ErrUnwrapFailed)
	}
	for i := range wk.Ciphertext {
		for _, bit := range []byte{0x01, 0x80} {
			ct := bytes.Clone(wk.Ciphertext)
			ct[i] ^= bit
			try(fmt.Sprintf("flip byte %d bit %#x", i, bit), ct)
		}
	}
	for n := 0; n < len(wk.Ciphertext); n++ {
		try(fmt.Sprintf("truncated to %d", n), bytes.Clone(wk.Ciphertext[:n]))
	}
	try("appended byte", append(bytes.Clone(wk.Ciphertext), 0))
	try("too long", make([]byte, kms.MaxWrappedSize+1))
}

func (s suite) cancelledContext(t *testing.T) {
	dek := newKey(t, 32)
	wk := s.wrap(t, dek, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.KEK.Wrap(ctx, dek, nil)
	assertKind(t, err, dek, context.Canceled)
	got, err := s.KEK.Unwrap(ctx, wk, nil)
	assert.Nil(t, got)
	assertKind(t, err, dek, context.Canceled)
}

func (s suite) expiredDeadline(t *testing.T) {
	dek := newKey(t, 32)
	wk := s.wrap(t, dek, nil)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := s.KEK.Wrap(ctx, dek, nil)
	assertKind(t, err, dek, context.DeadlineExceeded)
	_, err = s.KEK.Unwrap(ctx, wk, nil)
	assertKind(t, err, dek, context.DeadlineExceeded)
}

func (s suite) inputsNotModified(t *testing.T) {
	ctx := context.Background()
	dek := newKey(t, 32)
	aad := []byte("do not touch")
	dekCopy, aadCopy := bytes.Clone(dek), bytes.Clone(aad)
	wk := s.wrap(t, dek, aad)
	assert.Equal(t, dekCopy, dek, "Wrap modified the data key")
	assert.Equal(t, aadCopy, aad, "Wrap modified the AAD")

	ctCopy := bytes.Clone(wk.Ciphertext)
	_, err := s.KEK.Unwrap(ctx, wk, aad)
	require.NoError(t, err)
	assert.Equal(t, ctCopy, wk.Ciphertext, "Unwrap modified the wrapped key")
	assert.Equal(t, aadCopy, aad, "Unwrap modified the AAD")

	// A failing unwrap does not modify its inputs either.
	_, err = s.KEK.Unwrap(ctx, wk, []byte("wrong"))
	require.Error(t, err)
	assert.Equal(t, ctCopy, wk.Ciphertext, "failed Unwrap modified the wrapped key")

	// The wrapped key does not alias the data key: clearing the caller's
	// copy after Wrap does not change what unwraps.
	clear(dek)
	got, err := s.KEK.Unwrap(ctx, wk, aad)
	require.NoError(t, err)
	assert.Equal(t, dekCopy, got)
}

func (s suite) resultOwnedByCaller(t *testing.T) {
	ctx := context.Background()
	dek := newKey(t, 32)
	wk := s.wrap(t, dek, nil)
	got, err := s.KEK.Unwrap(ctx, wk, nil)
	require.NoError(t, err)
	clear(got)
	again, err := s.KEK.Unwrap(ctx, wk, nil)
	require.NoError(t, err)
	assert.Equal(t, dek, again, "clearing one Unwrap result changed another")
}

func (s suite) concurrent(t *testing.T) {
	ctx := context.Background()
	shared := newKey(t, 32)
	sharedWK := s.wrap(t, shared, []byte("shared"))
	var wg sync.WaitGroup
	errs := make(chan error, s.Concurrency)
	for g := 0; g < s.Concurrency; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 8; i++ {
				dek := make([]byte, 32)
				if _, err := rand.Read(dek); err != nil {
					errs <- err
					return
				}
				aad := []byte(fmt.Sprintf("goroutine %d item %d", g, i))
				wk, err := s.KEK.Wrap(ctx, dek, aad)
				if err != nil {
					errs <- err
					return
				}
				got, err := s.KEK.Unwrap(ctx, wk, aad)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, dek) {
					errs <- fmt.Errorf("goroutine %d item %d: round trip mismatch", g, i)
					return
				}
				got, err = s.KEK.Unwrap(ctx, sharedWK, []byte("shared"))
				if err != nil || !bytes.Equal(got, shared) {
					errs <- fmt.Errorf("goroutine %d: shared unwrap: %v", g, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}

func (s suite) sizeBounds(t *testing.T) {
	ctx := context.Background()
	for _, n := range []int{0, kms.MinDataKeySize - 1, kms.MaxDataKeySize + 1, 4096} {
		dek := newKey(t, n)
		_, err := s.KEK.Wrap(ctx, dek, nil)
		assertKind(t, err, dek, kms.ErrInvalidInput)
	}
	dek := newKey(t, 32)
	big := make([]byte, kms.MaxAADSize+1)
	_, err := s.KEK.Wrap(ctx, dek, big)
	assertKind(t, err, dek, kms.ErrInvalidInput)

	wk := s.wrap(t, dek, nil)
	_, err = s.KEK.Unwrap(ctx, wk, big)
	assertKind(t, err, dek, kms.ErrInvalidInput)
	_, err = s.KEK.Unwrap(ctx, kms.WrappedKey{KeyID: wk.KeyID}, nil)
	assertKind(t, err, dek, kms.ErrUnwrapFailed)
	_, err = s.KEK.Unwrap(ctx, kms.WrappedKey{KeyID: wk.KeyID + "-elsewhere", Ciphertext: wk.Ciphertext}, nil)
	assertKind(t, err, dek, kms.ErrKeyNotFound)
	_, err = s.KEK.Unwrap(ctx, kms.WrappedKey{Ciphertext: wk.Ciphertext}, nil)
	assertKind(t, err, dek, kms.ErrKeyNotFound)
}

func (s suite) rewrap(t *testing.T) {
	rw, ok := s.KEK.(kms.Rewrapper)
	if !ok {
		t.Skip("KEK does not implement kms.Rewrapper")
	}
	ctx := context.Background()
	var deks [][]byte
	var wks []kms.WrappedKey
	var aads [][]byte
	for i := 0; i < 5; i++ {
		dek := newKey(t, 32)
		aad := []byte(fmt.Sprintf("item %d", i))
		deks = append(deks, dek)
		aads = append(aads, aad)
		wks = append(wks, s.wrap(t, dek, aad))
	}
	// Item 2 is tampered with; the others must still succeed.
	wks[2].Ciphertext = bytes.Clone(wks[2].Ciphertext)
	wks[2].Ciphertext[len(wks[2].Ciphertext)-1] ^= 1
	res, err := rw.Rewrap(ctx, wks, aads)
	require.NoError(t, err)
	require.Len(t, res, len(wks))
	for i, r := range res {
		if i == 2 {
			assertKind(t, r.Err, deks[i], kms.ErrUnwrapFailed)
			continue
		}
		require.NoError(t, r.Err, "item %d", i)
		got, err := s.KEK.Unwrap(ctx, r.Key, aads[i])
		require.NoError(t, err, "item %d", i)
		assert.Equal(t, deks[i], got, "item %d", i)
	}

	_, err = rw.Rewrap(ctx, wks, aads[:1])
	assertKind(t, err, nil, kms.ErrInvalidInput)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = rw.Rewrap(cctx, wks[:1], aads[:1])
	assertKind(t, err, nil, context.Canceled)
}
