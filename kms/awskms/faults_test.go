package awskms_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/awskms"
)

// fault is what a faultProxy answers instead of local-kms.
type fault struct {
	status int    // HTTP status
	code   string // AWS error code (__type), for a JSON error body
	body   string // a raw body, when code is empty
	hang   bool   // never answer
}

// faultProxy is a reverse proxy to local-kms that injects faults.
type faultProxy struct {
	*httptest.Server
	fault atomic.Pointer[fault]
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &faultProxy{}
	stop := make(chan struct{})
	p.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := p.fault.Load()
		switch {
		case f == nil:
			rp.ServeHTTP(w, r)
		case f.hang:
			io.Copy(io.Discard, r.Body) // lets the server notice the client leave
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		default:
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.Header().Set("X-Amzn-Requestid", "11111111-2222-3333-4444-555555555555")
			w.WriteHeader(f.status)
			if f.code != "" {
				io.WriteString(w, `{"__type":"`+f.code+`","message":"injected `+f.code+` for AQICAHhfKtEk1bOKeoSGRxBiOQTdVRlsN6k=="}`)
			} else {
				io.WriteString(w, f.body)
			}
		}
	}))
	p.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.Start()
	t.Cleanup(func() {
		close(stop)
		p.Close()
	})
	return p
}

func TestErrorMapping(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	p := newFaultProxy(t, s.Endpoint)
	cfg := s.config(s.symmetricKey(t))
	cfg.Endpoint = p.URL
	k, err := awskms.New(ctx, cfg)
	require.NoError(t, err)
	wk, err := k.Wrap(ctx, newDEK(t), []byte("aad"))
	require.NoError(t, err)

	for _, tc := range []struct {
		f          fault
		wrap, unwr error
	}{
		{fault{status: 400, code: "AccessDeniedException"}, kms.ErrPermissionDenied, kms.ErrPermissionDenied},
		{fault{status: 400, code: "UnrecognizedClientException"}, kms.ErrPermissionDenied, kms.ErrPermissionDenied},
		{fault{status: 403, code: "InvalidSignatureException"}, kms.ErrPermissionDenied, kms.ErrPermissionDenied},
		{fault{status: 400, code: "ExpiredTokenException"}, kms.ErrPermissionDenied, kms.ErrPermissionDenied},
		{fault{status: 400, code: "NotFoundException"}, kms.ErrKeyNotFound, kms.ErrKeyNotFound},
		{fault{status: 400, code: "DisabledException"}, kms.ErrKeyNotFound, kms.ErrKeyNotFound},
		{fault{status: 400, code: "KMSInvalidStateException"}, kms.ErrKeyNotFound, kms.ErrKeyNotFound},
		{fault{status: 400, code: "InvalidCiphertextException"}, kms.ErrUnwrapFailed, kms.ErrUnwrapFailed},
		{fault{status: 400, code: "IncorrectKeyException"}, kms.ErrUnwrapFailed, kms.ErrUnwrapFailed},
		{fault{status: 400, code: "InvalidKeyUsageException"}, kms.ErrInvalidInput, kms.ErrUnwrapFailed},
		{fault{status: 400, code: "ValidationException"}, kms.ErrInvalidInput, kms.ErrUnwrapFailed},
		{fault{status: 400, code: "ThrottlingException"}, kms.ErrThrottled, kms.ErrThrottled},
		{fault{status: 500, code: "KMSInternalException"}, kms.ErrUnavailable, kms.ErrUnavailable},
		{fault{status: 500, code: "DependencyTimeoutException"}, kms.ErrUnavailable, kms.ErrUnavailable},
		{fault{status: 500, code: "KeyUnavailableException"}, kms.ErrUnavailable, kms.ErrUnavailable},
		{fault{status: 503, code: "SomethingNew"}, kms.ErrUnavailable, kms.ErrUnavailable},
		{fault{status: 429, code: "SomethingNew"}, kms.ErrThrottled, kms.ErrThrottled},
		{fault{status: 502, body: "<html>bad gateway</html>"}, kms.ErrUnavailable, kms.ErrUnavailable},
		{fault{status: 200, body: "not json"}, kms.ErrUnavailable, kms.ErrUnavailable},
	} {
		name := tc.f.code
		if name == "" {
			name = tc.f.body
		}
		t.Run(name, func(t *testing.T) {
			p.fault.Store(&tc.f)
			defer p.fault.Store(nil)
			_, err := k.Wrap(ctx, newDEK(t), nil)
			assert.ErrorIs(t, err, tc.wrap, "wrap")
			assert.Equal(t, errors.Is(tc.wrap, kms.ErrUnavailable), kms.IsTransient(err))
			got, err := k.Unwrap(ctx, wk, []byte("aad"))
			assert.Nil(t, got)
			assert.ErrorIs(t, err, tc.unwr, "unwrap")
			if tc.f.code != "" {
				var se *awskms.ServiceError
				require.ErrorAs(t, err, &se)
				assert.Equal(t, tc.f.code, se.Code)
				assert.Equal(t, tc.f.status, se.StatusCode)
				assert.Equal(t, "11111111-2222-3333-4444-555555555555", se.RequestID)
				assert.NotContains(t, err.Error(), "AQICAHhfKtEk1bOKeoSGRxBiOQTdVRlsN6k", "base64 in messages is redacted")
			}
		})
	}
	var nfe *types.NotFoundException
	p.fault.Store(&fault{status: 400, code: "NotFoundException"})
	_, err = k.Wrap(ctx, newDEK(t), nil)
	assert.ErrorAs(t, err, &nfe, "the SDK's error type is reachable")

	// A server that does not answer: the caller's deadline ends the call.
	p.fault.Store(&fault{hang: true})
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = k.Unwrap(dctx, wk, []byte("aad"))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)
	p.fault.Store(nil)
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	_, err = awskms.New(context.Background(), awskms.Config{Key: "alias/phi", Region: "eu-west-2", Endpoint: "http://" + addr, Credentials: dummy})
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.True(t, kms.IsTransient(err))
}
