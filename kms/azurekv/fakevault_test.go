package azurekv_test

import (
	"context"
	"crypto/aes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/stretchr/testify/require"
)

// fakeVault is an in-process HTTPS server implementing the Key Vault REST
// operations that azkeys calls for this backend: the bearer-token
// challenge, GET /keys/{name}/{version}, and POST
// /keys/{name}/{version}/wrapkey and /unwrapkey, with RSA-OAEP-256 (RSA
// keys) and A256KW (oct-HSM keys) done for real, key versions, and faults
// injected per request. It serves any host name under vault.azure.net
// and managedhsm.azure.net, with a certificate the client trusts, so the
// SDK's challenge-resource check runs as against Azure.
type fakeVault struct {
	srv *httptest.Server

	mu   sync.Mutex
	keys map[string][]*fakeKey // by name, oldest version first

	// faults answer the next requests instead of the service (FIFO).
	faults []fault
	// requests counts authorized key operations by "METHOD op".
	requests map[string]int
	// lastValue is the value of the last wrapkey request.
	lastValue []byte
	seq       atomic.Int64
	// client reaches the server under any vault host name.
	client *http.Client
}

type fakeKey struct {
	version string
	kty     azkeys.KeyType
	rsa     *rsa.PrivateKey
	aes     []byte
	enabled bool
}

type fault struct {
	status int
	code   string
}

const fakeToken = "fake-token-for-tests"

// fakeCred is a TokenCredential with a fixed token, or failing.
type fakeCred struct {
	token string
	err   error
}

func (c fakeCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if c.err != nil {
		return azcore.AccessToken{}, c.err
	}
	return azcore.AccessToken{Token: c.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func startVault(t *testing.T) *fakeVault {
	t.Helper()
	f := &fakeVault{keys: map[string][]*fakeKey{}, requests: map[string]int{}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	cert, pool := selfSigned(t, "*.vault.azure.net", "*.managedhsm.azure.net")
	f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut short at Close
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	addr := f.srv.Listener.Addr().String()
	transport := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(transport.CloseIdleConnections)
	f.client = &http.Client{Transport: transport}
	return f
}

// options are the SDK client options that reach the fake.
func (f *fakeVault) options() *azkeys.ClientOptions {
	return &azkeys.ClientOptions{ClientOptions: policy.ClientOptions{Transport: f.client}}
}

// selfSigned returns a certificate for names and a pool trusting it.
func selfSigned(t *testing.T, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fake key vault"},
		DNSNames:              names,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, pool
}

// createKey adds a key (or a new version of it) of type kty and returns
// its version.
func (f *fakeVault) createKey(t *testing.T, name string, kty azkeys.KeyType) string {
	t.Helper()
	k := &fakeKey{kty: kty, enabled: true, version: fmt.Sprintf("%032x", f.seq.Add(1))}
	switch kty {
	case azkeys.KeyTypeRSA, azkeys.KeyTypeRSAHSM:
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		k.rsa = priv
	case azkeys.KeyTypeOctHSM:
		k.aes = make([]byte, 32)
		rand.Read(k.aes)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys[name] = append(f.keys[name], k)
	return k.version
}

// disable disables version v of name.
func (f *fakeVault) disable(name, v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.keys[name] {
		if k.version == v {
			k.enabled = false
		}
	}
}

// failNext makes the next requests fail with each fault in turn.
func (f *fakeVault) failNext(faults ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, faults...)
}

func (f *fakeVault) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[op]
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (f *fakeVault) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("api-version") == "" {
		writeErr(w, 400, "BadParameter", "api-version is required")
		return
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		// The challenge that the SDK's Key Vault policy expects first.
		resource := "https://vault.azure.net"
		if strings.HasSuffix(r.Host, ".managedhsm.azure.net") {
			resource = "https://managedhsm.azure.net"
		}
		w.Header().Set("WWW-Authenticate", `Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="`+resource+`"`)
		writeErr(w, 401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
		return
	}
	if subtle.ConstantTimeCompare([]byte(auth), []byte("Bearer "+fakeToken)) != 1 {
		writeErr(w, 401, "Unauthorized", "AKV10032: Invalid issuer.")
		return
	}
	// /keys/{name}[/{version}][/{op}]; an empty version is the latest.
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) < 2 || parts[0] != "keys" {
		writeErr(w, 404, "NotFound", "no such path")
		return
	}
	name, version, op := parts[1], "", "get"
	switch {
	case len(parts) == 3 && (parts[2] == "wrapkey" || parts[2] == "unwrapkey"):
		op = parts[2]
	case len(parts) == 3:
		version = parts[2]
	case len(parts) == 4:
		version, op = parts[2], parts[3]
	case len(parts) > 4:
		writeErr(w, 404, "NotFound", "no such path")
		return
	}
	f.mu.Lock()
	f.requests[r.Method+" "+op]++
	if len(f.faults) > 0 {
		flt := f.faults[0]
		f.faults = f.faults[1:]
		f.mu.Unlock()
		if flt.status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		writeErr(w, flt.status, flt.code, "injected")
		return
	}
	var key *fakeKey
	versions := f.keys[name]
	for _, k := range versions {
		if k.version == version || version == "" {
			key = k // the last one for ""
		}
	}
	f.mu.Unlock()
	if key == nil {
		writeErr(w, 404, "KeyNotFound", fmt.Sprintf("A key with (name/id) %s was not found in this key vault.", name))
		return
	}
	kid := "https://" + r.Host + "/keys/" + name + "/" + key.version
	switch {
	case r.Method == http.MethodGet && op == "get":
		jwk := map[string]any{"kid": kid, "kty": string(key.kty), "key_ops": []string{"wrapKey", "unwrapKey"}}
		if key.rsa != nil {
			jwk["n"] = b64(key.rsa.N.Bytes())
			jwk["e"] = b64(big.NewInt(int64(key.rsa.E)).Bytes())
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"key": jwk, "attributes": map[string]any{"enabled": key.enabled}})
	case r.Method == http.MethodPost && (op == "wrapkey" || op == "unwrapkey"):
		if !key.enabled {
			writeErr(w, 403, "Forbidden", "Operation is not allowed on a disabled key.")
			return
		}
		var req struct {
			Alg   string `json:"alg"`
			Value string `json:"value"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeErr(w, 400, "BadParameter", "body does not parse")
			return
		}
		in, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(req.Value, "="))
		if err != nil {
			writeErr(w, 400, "BadParameter", "value is not base64url")
			return
		}
		if op == "wrapkey" {
			f.mu.Lock()
			f.lastValue = in
			f.mu.Unlock()
		}
		out, err := key.do(op, req.Alg, in)
		if err != nil {
			writeErr(w, 400, "BadParameter", err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"kid": kid, "value": b64(out)})
	default:
		writeErr(w, 405, "MethodNotAllowed", "not implemented by the fake")
	}
}

// do wraps or unwraps in with the key, as the service does.
func (k *fakeKey) do(op, alg string, in []byte) ([]byte, error) {
	switch {
	case alg == "RSA-OAEP-256" && k.rsa != nil:
		if op == "wrapkey" {
			return rsa.EncryptOAEP(sha256.New(), rand.Reader, &k.rsa.PublicKey, in, nil)
		}
		return rsa.DecryptOAEP(sha256.New(), nil, k.rsa, in, nil)
	case alg == "A256KW" && k.aes != nil:
		if op == "wrapkey" {
			return aesKeyWrap(k.aes, in)
		}
		return aesKeyUnwrap(k.aes, in)
	}
	return nil, fmt.Errorf("algorithm %s is not supported by this key", alg)
}

// aesKeyWrap is RFC 3394's wrapping function with the default IV.
func aesKeyWrap(kek, pt []byte) ([]byte, error) {
	if len(pt)%8 != 0 || len(pt) < 16 {
		return nil, errors.New("plaintext must be a multiple of 8 bytes, at least 16")
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(pt) / 8
	a := []byte{0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6}
	r := make([]byte, len(pt))
	copy(r, pt)
	buf := make([]byte, 16)
	for j := 0; j < 6; j++ {
		for i := 0; i < n; i++ {
			copy(buf, a)
			copy(buf[8:], r[i*8:i*8+8])
			b.Encrypt(buf, buf)
			t := uint64(n*j + i + 1)
			binary.BigEndian.PutUint64(a, binary.BigEndian.Uint64(buf[:8])^t)
			copy(r[i*8:], buf[8:])
		}
	}
	return append(a, r...), nil
}

// aesKeyUnwrap is RFC 3394's unwrapping function with its integrity check.
func aesKeyUnwrap(kek, ct []byte) ([]byte, error) {
	if len(ct)%8 != 0 || len(ct) < 24 {
		return nil, errors.New("ciphertext must be a multiple of 8 bytes, at least 24")
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(ct)/8 - 1
	a := make([]byte, 8)
	copy(a, ct[:8])
	r := make([]byte, n*8)
	copy(r, ct[8:])
	buf := make([]byte, 16)
	for j := 5; j >= 0; j-- {
		for i := n - 1; i >= 0; i-- {
			t := uint64(n*j + i + 1)
			binary.BigEndian.PutUint64(buf, binary.BigEndian.Uint64(a)^t)
			copy(buf[8:], r[i*8:i*8+8])
			b.Decrypt(buf, buf)
			copy(a, buf[:8])
			copy(r[i*8:], buf[8:])
		}
	}
	if hex.EncodeToString(a) != "a6a6a6a6a6a6a6a6" {
		return nil, errors.New("integrity check failed")
	}
	return r, nil
}
