package kmsopen_test

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmsopen"
)

// A KEK opened the README's way rides out throttling: a Vault that
// answers 429 (a rate limit quota) to the first four encrypt requests is
// retried by the default setup, where the backend alone fails at once.
func TestOpenSurvivesThrottling(t *testing.T) {
	var encrypts atomic.Int32
	ciphertext := "vault:v1:" + base64.StdEncoding.EncodeToString(make([]byte, 60))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/v1/transit/keys/phi":
			w.Write([]byte(`{"data":{"type":"aes256-gcm96","derived":true,"supports_encryption":true,"supports_decryption":true,"latest_version":1,"min_decryption_version":1}}`))
		case r.URL.Path == "/v1/transit/encrypt/phi":
			if encrypts.Add(1)%5 != 0 { // four throttled, one served, …
				w.WriteHeader(http.StatusTooManyRequests)
				w.Write([]byte(`{"errors":["request path \"transit/encrypt/phi\": rate limit quota exceeded"]}`))
				return
			}
			w.Write([]byte(`{"data":{"ciphertext":"` + ciphertext + `"}}`))
		case strings.HasPrefix(r.URL.Path, "/v1/auth/token/"):
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"errors":["permission denied"]}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"errors":[]}`))
		}
	}))
	t.Cleanup(srv.Close)
	t.Setenv("VAULT_TOKEN", "test-token")
	uri := "vault://" + strings.TrimPrefix(srv.URL, "http://") + "/transit/keys/phi?tls=false"
	ctx := t.Context()

	bare, err := kms.Open(ctx, uri, kmsopen.Openers())
	require.NoError(t, err)
	t.Cleanup(func() { bare.(interface{ Close() error }).Close() })
	_, err = bare.Wrap(ctx, make([]byte, 32), []byte("aad"))
	assert.ErrorIs(t, err, kms.ErrThrottled, "the backend alone makes one attempt")
	encrypts.Store(0)

	kek, err := kmsopen.Open(ctx, uri)
	require.NoError(t, err)
	t.Cleanup(func() { kek.(interface{ Close() error }).Close() })
	wk, err := kek.Wrap(ctx, make([]byte, 32), []byte("aad"))
	require.NoError(t, err, "kmsopen.Open retries throttled calls")
	assert.Equal(t, ciphertext, string(wk.Ciphertext))
	assert.Equal(t, int32(5), encrypts.Load())
}
