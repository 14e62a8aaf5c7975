package vault_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/vault"
)

// fault is what a faultProxy does to the next requests.
type fault struct {
	status  int    // answer with this status and body instead of Vault
	body    string //
	hang    bool   // never answer
	warning string // add this warning to Vault's answer
	garbage bool   // answer 200 with a body that is not JSON
}

// faultProxy is a reverse proxy to a real Vault that injects faults.
type faultProxy struct {
	*httptest.Server
	fault atomic.Pointer[fault]
}

func newFaultProxy(t *testing.T, target string, startTLS func(*httptest.Server)) *faultProxy {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	p := &faultProxy{}
	stop := make(chan struct{})
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		f := p.fault.Load()
		if f == nil || f.warning == "" {
			return nil
		}
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return err
		}
		resp.Body.Close()
		body["warnings"] = []string{f.warning}
		b, _ := json.Marshal(body)
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	p.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := p.fault.Load()
		switch {
		case f == nil || f.warning != "":
			rp.ServeHTTP(w, r)
		case f.hang:
			// Reading the body lets the server notice the client leave.
			io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		case f.garbage:
			w.Write([]byte("<html>proxy error</html>"))
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(f.status)
			w.Write([]byte(f.body))
		}
	}))
	p.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	if startTLS != nil {
		startTLS(p.Server)
	} else {
		p.Start()
	}
	t.Cleanup(func() {
		close(stop)
		p.Close()
	})
	return p
}

func (p *faultProxy) set(f *fault) { p.fault.Store(f) }

func TestErrorMapping(t *testing.T) {
	s := sharedServer(t)
	ctx := context.Background()
	key := s.createKey(t, derived)
	p := newFaultProxy(t, s.Addr, nil)
	cfg := s.config(key)
	cfg.Address = p.URL
	k := s.openConfig(t, cfg)
	wk, err := k.Wrap(ctx, newDEK(t), nil)
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		f    fault
		want error
	}{
		{"500", fault{status: 500, body: `{"errors":["internal error"]}`}, kms.ErrUnavailable},
		{"502 from a proxy", fault{status: 502, body: `bad gateway`}, kms.ErrUnavailable},
		{"503 sealed", fault{status: 503, body: `{"errors":["Vault is sealed"]}`}, kms.ErrUnavailable},
		{"429 rate limited", fault{status: 429, body: `{"errors":["request path \"transit/encrypt\": rate limit quota exceeded"]}`}, kms.ErrThrottled},
		{"403", fault{status: 403, body: `{"errors":["permission denied"]}`}, kms.ErrPermissionDenied},
		{"404", fault{status: 404, body: `{"errors":[]}`}, kms.ErrKeyNotFound},
		{"not JSON", fault{garbage: true}, kms.ErrUnavailable},
		{"ignored parameter", fault{warning: "Endpoint ignored these unrecognized parameters: [associated_data]"}, kms.ErrInvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.set(&tc.f)
			defer p.set(nil)
			_, err := k.Wrap(ctx, newDEK(t), nil)
			assert.ErrorIs(t, err, tc.want, "wrap")
			_, err = k.Unwrap(ctx, wk, nil)
			assert.ErrorIs(t, err, tc.want, "unwrap")
			_, err = k.Rewrap(ctx, []kms.WrappedKey{wk}, [][]byte{nil})
			assert.ErrorIs(t, err, tc.want, "rewrap")
			assert.Equal(t, errors.Is(tc.want, kms.ErrUnavailable), kms.IsTransient(err))
		})
	}

	// Vault's messages are kept, with anything like a ciphertext redacted.
	p.set(&fault{status: 400, body: `{"errors":["invalid ciphertext ` + string(wk.Ciphertext) + ` QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"]}`})
	_, err = k.Unwrap(ctx, wk, nil)
	p.set(nil)
	assert.ErrorIs(t, err, kms.ErrUnwrapFailed)
	var se *vault.ServerError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 400, se.StatusCode)
	assert.Equal(t, "transit/decrypt/"+key, se.Path)
	assert.Contains(t, err.Error(), "invalid ciphertext [redacted]")
	assert.NotContains(t, err.Error(), string(wk.Ciphertext))
	assert.NotContains(t, err.Error(), "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")

	// A server that does not answer: the caller's deadline ends the call
	// with the context's error, Config.Timeout with ErrUnavailable.
	p.set(&fault{hang: true})
	defer p.set(nil)
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = k.Wrap(dctx, newDEK(t), nil)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)

	cfg.Timeout = 200 * time.Millisecond
	p.set(nil)
	short := s.openConfig(t, cfg)
	p.set(&fault{hang: true})
	start = time.Now()
	_, err = short.Unwrap(ctx, wk, nil)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.True(t, kms.IsTransient(err))
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	_, err = vault.New(context.Background(), vault.Config{Address: "http://" + addr, Key: "phi", Token: "t"})
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.True(t, kms.IsTransient(err))
}

// TLS with a private CA, a server name and a client certificate, through
// a TLS-terminating proxy in front of the real Vault.
func TestTLS(t *testing.T) {
	s := sharedServer(t)
	ctx := context.Background()
	key := s.createKey(t, derived)
	dir := t.TempDir()
	clientCert, clientKey, clientPool := clientCertificate(t, dir)
	p := newFaultProxy(t, s.Addr, func(srv *httptest.Server) {
		srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientPool}
		srv.StartTLS()
	})
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Certificate().Raw}), 0o600))

	cfg := s.config(key)
	cfg.Address = p.URL
	cfg.TLS = vault.TLSConfig{CACert: caFile, ClientCert: clientCert, ClientKey: clientKey}
	k := s.openConfig(t, cfg)
	useFor(t, k, 0)

	// The certificate is for example.com too; ServerName checks it.
	cfg.TLS.ServerName = "example.com"
	s.openConfig(t, cfg)
	cfg.TLS.ServerName = "vault.example.org"
	_, err := vault.New(ctx, cfg)
	assert.ErrorIs(t, err, kms.ErrUnavailable)

	// The CA as PEM bytes.
	cfg.TLS = vault.TLSConfig{CACertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Certificate().Raw}), ClientCert: clientCert, ClientKey: clientKey}
	s.openConfig(t, cfg)

	// Without the CA the server is not trusted; without the client
	// certificate the server refuses the handshake.
	cfg.TLS = vault.TLSConfig{ClientCert: clientCert, ClientKey: clientKey}
	_, err = vault.New(ctx, cfg)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.ErrorContains(t, err, "certificate")
	cfg.TLS = vault.TLSConfig{CACert: caFile}
	_, err = vault.New(ctx, cfg)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	cfg.TLS = vault.TLSConfig{InsecureSkipVerify: true, ClientCert: clientCert, ClientKey: clientKey}
	s.openConfig(t, cfg)
	cfg.TLS = vault.TLSConfig{CACert: caFile, ClientCert: clientCert}
	_, err = vault.New(ctx, cfg)
	assert.ErrorIs(t, err, kms.ErrInvalidInput, "a client certificate without its key")

	// Plain HTTP Vault with an https address fails the handshake.
	cfg = s.config(key)
	u, _ := url.Parse(s.Addr)
	cfg.Address = "https://" + u.Host
	_, err = vault.New(ctx, cfg)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
}

// clientCertificate writes a self-signed ECDSA P-256 client certificate
// and its key to dir, and returns their paths and a pool that trusts it.
func clientCertificate(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "phicrypt-test-client"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
