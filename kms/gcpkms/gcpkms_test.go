package gcpkms_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	kmsapi "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/googleapis/gax-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/gcpkms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
)

func newDEK(t testing.TB) []byte {
	t.Helper()
	dek := make([]byte, 32)
	_, err := rand.Read(dek)
	require.NoError(t, err)
	return dek
}

func TestConformance(t *testing.T) {
	f, opts := startFake(t)
	a := open(t, opts, f.createKey(t))
	b := open(t, opts, f.createKey(t))
	kmstest.Run(t, kmstest.Config{KEK: a, Other: b})
}

// The AAD reaches the server, which binds it: a ciphertext opens only
// with the same AAD, checked by the server's AES-GCM.
func TestAADReachesServer(t *testing.T) {
	f, opts := startFake(t)
	ctx := context.Background()
	k := open(t, opts, f.createKey(t))
	aad := []byte("tenant=st-mary;patient=42")
	wk, err := k.Wrap(ctx, newDEK(t), aad)
	require.NoError(t, err)
	assert.Equal(t, aad, *f.lastAAD.Load())
	_, err = k.Unwrap(ctx, wk, []byte("tenant=st-mary;patient=43"))
	assert.ErrorIs(t, err, kms.ErrUnwrapFailed)
	var re *gcpkms.RPCError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, codes.InvalidArgument, re.Code)
	assert.Equal(t, codes.InvalidArgument, status.Code(err), "status.Code sees through the error")
}

func TestChecksums(t *testing.T) {
	f, opts := startFake(t)
	ctx := context.Background()
	k := open(t, opts, f.createKey(t))
	aad := []byte("aad")
	wk, err := k.Wrap(ctx, newDEK(t), aad)
	require.NoError(t, err)

	for name, flt := range map[string]fault{
		"ciphertext corrupted":                 {corruptCiphertext: true},
		"plaintext not verified by the server": {unverifiedPlaintext: true},
		"AAD not verified (dropped)":           {ignoreAAD: true},
	} {
		f.fault.Store(&flt)
		_, err := k.Wrap(ctx, newDEK(t), aad)
		assert.ErrorIs(t, err, kms.ErrUnavailable, name)
		assert.ErrorIs(t, err, gcpkms.ErrChecksum, name)
		assert.True(t, kms.IsTransient(err), name)
	}
	// Without AAD there is nothing to verify: a server that ignores AAD
	// still serves wraps without any.
	f.fault.Store(&fault{ignoreAAD: true})
	_, err = k.Wrap(ctx, newDEK(t), nil)
	assert.NoError(t, err)

	f.fault.Store(&fault{corruptPlaintext: true})
	got, err := k.Unwrap(ctx, wk, aad)
	assert.Nil(t, got)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.ErrorIs(t, err, gcpkms.ErrChecksum)
	f.fault.Store(nil)

	// A request corrupted on its way: the server's check fails it.
	corrupting := append(opts[:len(opts):len(opts)], option.WithGRPCDialOption(grpc.WithUnaryInterceptor(
		func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
			switch r := req.(type) {
			case *kmspb.EncryptRequest:
				r = proto.Clone(r).(*kmspb.EncryptRequest)
				r.Plaintext[0] ^= 1
				req = r
			case *kmspb.DecryptRequest:
				r = proto.Clone(r).(*kmspb.DecryptRequest)
				r.Ciphertext[len(r.Ciphertext)-1] ^= 1
				req = r
			}
			return invoker(ctx, method, req, reply, cc, o...)
		})))
	c := open(t, corrupting, k.KeyID()[len("gcp-kms:"):])
	_, err = c.Wrap(ctx, newDEK(t), aad)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.ErrorIs(t, err, gcpkms.ErrChecksum)
	_, err = c.Unwrap(ctx, kms.WrappedKey{KeyID: c.KeyID(), Ciphertext: wk.Ciphertext}, aad)
	assert.ErrorIs(t, err, gcpkms.ErrChecksum)
}

func TestErrorMapping(t *testing.T) {
	f, opts := startFake(t)
	ctx := context.Background()
	k := open(t, opts, f.createKey(t))
	wk, err := k.Wrap(ctx, newDEK(t), nil)
	require.NoError(t, err)
	for _, tc := range []struct {
		code       codes.Code
		wrap, unwr error
	}{
		{codes.Unavailable, kms.ErrUnavailable, kms.ErrUnavailable},
		{codes.ResourceExhausted, kms.ErrThrottled, kms.ErrThrottled},
		{codes.Internal, kms.ErrUnavailable, kms.ErrUnavailable},
		{codes.Aborted, kms.ErrUnavailable, kms.ErrUnavailable},
		{codes.Unknown, kms.ErrUnavailable, kms.ErrUnavailable},
		{codes.DeadlineExceeded, kms.ErrUnavailable, kms.ErrUnavailable},
		{codes.PermissionDenied, kms.ErrPermissionDenied, kms.ErrPermissionDenied},
		{codes.Unauthenticated, kms.ErrPermissionDenied, kms.ErrPermissionDenied},
		{codes.NotFound, kms.ErrKeyNotFound, kms.ErrKeyNotFound},
		{codes.FailedPrecondition, kms.ErrKeyNotFound, kms.ErrKeyNotFound},
		{codes.InvalidArgument, kms.ErrInvalidInput, kms.ErrUnwrapFailed},
		{codes.Unimplemented, kms.ErrInvalidInput, kms.ErrInvalidInput},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			f.fault.Store(&fault{code: tc.code, message: "injected, with AQICAHhfKtEk1bOKeoSGRxBiOQTdVRlsN6k== in it"})
			defer f.fault.Store(nil)
			_, err := k.Wrap(ctx, newDEK(t), []byte("aad"))
			assert.ErrorIs(t, err, tc.wrap, "wrap")
			assert.Equal(t, errors.Is(tc.wrap, kms.ErrUnavailable), kms.IsTransient(err))
			got, err := k.Unwrap(ctx, wk, nil)
			assert.Nil(t, got)
			assert.ErrorIs(t, err, tc.unwr, "unwrap")
			assert.Equal(t, tc.code, status.Code(err))
			assert.NotContains(t, err.Error(), "AQICAHhfKtEk1bOKeoSGRxBiOQTdVRlsN6k")
		})
	}

	// A server that does not answer: the caller's deadline ends the call
	// with the context's error, Config.Timeout with ErrUnavailable.
	f.fault.Store(&fault{hang: true})
	defer f.fault.Store(nil)
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = k.Unwrap(dctx, wk, nil)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)

	short, err := gcpkms.New(ctx, gcpkms.Config{Key: k.KeyID()[len("gcp-kms:"):], ClientOptions: opts, Timeout: 200 * time.Millisecond})
	require.NoError(t, err)
	defer short.Close()
	start = time.Now()
	_, err = short.Wrap(ctx, newDEK(t), nil)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.True(t, kms.IsTransient(err))
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	k, err := gcpkms.New(context.Background(), gcpkms.Config{
		Key: "projects/p/locations/l/keyRings/r/cryptoKeys/k",
		ClientOptions: []option.ClientOption{option.WithEndpoint(addr), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))},
	})
	require.NoError(t, err)
	defer k.Close()
	_, err = k.Wrap(context.Background(), newDEK(t), nil)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.True(t, kms.IsTransient(err))
}

func TestRotation(t *testing.T) {
	f, opts := startFake(t)
	ctx := context.Background()
	key := f.createKey(t)
	k := open(t, opts, key)
	dek := newDEK(t)
	old, err := k.Wrap(ctx, dek, []byte("a"))
	require.NoError(t, err)
	f.rotate(t, key)
	fresh, err := k.Wrap(ctx, dek, []byte("a"))
	require.NoError(t, err)
	for _, wk := range []kms.WrappedKey{old, fresh} {
		got, err := k.Unwrap(ctx, wk, []byte("a"))
		require.NoError(t, err)
		assert.Equal(t, dek, got)
	}
	f.disable(key, 1)
	_, err = k.Unwrap(ctx, old, []byte("a"))
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)
	_, err = k.Unwrap(ctx, fresh, []byte("a"))
	assert.NoError(t, err)
}

// New makes no call: a missing key fails the first use.
func TestMissingKey(t *testing.T) {
	_, opts := startFake(t)
	k := open(t, opts, "projects/p/locations/l/keyRings/r/cryptoKeys/none")
	_, err := k.Wrap(context.Background(), newDEK(t), nil)
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)
}

func TestConfig(t *testing.T) {
	ctx := context.Background()
	_, opts := startFake(t)
	const key = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
	k := open(t, opts, key)
	assert.Equal(t, "gcp-kms:"+key, k.KeyID())
	k, err := gcpkms.New(ctx, gcpkms.Config{Key: key, KeyID: "gcp-kms:main", ClientOptions: opts})
	require.NoError(t, err)
	defer k.Close()
	assert.Equal(t, "gcp-kms:main", k.KeyID())
	require.NoError(t, k.Close())
	require.NoError(t, k.Close())

	for name, cfg := range map[string]gcpkms.Config{
		"empty":       {},
		"version":     {Key: key + "/cryptoKeyVersions/1"},
		"no ring":     {Key: "projects/p/locations/l/cryptoKeys/k"},
		"space":       {Key: "projects/p/locations/l/keyRings/r r/cryptoKeys/k"},
		"bad key id":  {Key: key, KeyID: "no scheme"},
		"leading /":   {Key: "/" + key},
		"trailing /":  {Key: key + "/"},
		"empty parts": {Key: "projects//locations/l/keyRings/r/cryptoKeys/k"},
	} {
		_, err := gcpkms.New(ctx, cfg)
		assert.ErrorIs(t, err, kms.ErrInvalidInput, name)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = gcpkms.New(cctx, gcpkms.Config{Key: key, ClientOptions: opts})
	assert.ErrorIs(t, err, context.Canceled)
}

func TestNoSecretsInOutput(t *testing.T) {
	cfg := gcpkms.Config{Key: "projects/p/locations/l/keyRings/r/cryptoKeys/k",
		ClientOptions: []option.ClientOption{option.WithAPIKey("SECRET-API-KEY-VALUE")}}
	type wrapper struct{ C gcpkms.Config }
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "cfg", cfg)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", cfg)
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	for _, out := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%+v", wrapper{cfg}), logged.String(), string(b)} {
		assert.NotContains(t, out, "SECRET-API-KEY-VALUE")
		assert.Contains(t, out, "cryptoKeys/k")
	}
}

// An injected client is used as it is, its own retry settings do not
// apply (retries belong to kms.Resilient), and Close leaves it open.
func TestInjectedClient(t *testing.T) {
	f, opts := startFake(t)
	ctx := context.Background()
	key := f.createKey(t)
	client, err := kmsapi.NewKeyManagementClient(ctx, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	// The application's client retries UNAVAILABLE on its own.
	client.CallOptions.Encrypt = []gax.CallOption{gax.WithRetry(func() gax.Retryer {
		return gax.OnCodes([]codes.Code{codes.Unavailable}, gax.Backoff{Initial: time.Millisecond, Max: time.Millisecond})
	})}

	k, err := gcpkms.New(ctx, gcpkms.Config{Key: key, Client: client})
	require.NoError(t, err)
	wk, err := k.Wrap(ctx, newDEK(t), []byte("aad"))
	require.NoError(t, err)
	_, err = k.Unwrap(ctx, wk, []byte("aad"))
	require.NoError(t, err)

	f.fault.Store(&fault{code: codes.Unavailable, message: "injected"})
	before := f.calls.Load()
	_, err = k.Wrap(ctx, newDEK(t), nil)
	f.fault.Store(nil)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.Equal(t, before+1, f.calls.Load(), "one attempt per call: the client's retries are off")

	require.NoError(t, k.Close())
	k2, err := gcpkms.New(ctx, gcpkms.Config{Key: key, Client: client})
	require.NoError(t, err)
	_, err = k2.Unwrap(ctx, wk, []byte("aad"))
	assert.NoError(t, err, "Close does not close an injected client")

	_, err = gcpkms.New(ctx, gcpkms.Config{Key: key, Client: client, ClientOptions: opts})
	assert.ErrorIs(t, err, kms.ErrInvalidInput)
	_, err = gcpkms.New(ctx, gcpkms.Config{Key: key, Client: client, Endpoint: "x:443"})
	assert.ErrorIs(t, err, kms.ErrInvalidInput)
}
