package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUnknownTenantRefused: an X-Tenant the service is not configured to
// serve is refused with 403 before anything runs. It was taken as is: a
// search naming a new tenant created and stored (wrapped by the KEK, a
// KMS call in production) blind index keys for it, one key set per
// distinct header value, and a create with a mistyped tenant landed in a
// phantom tenant, under new keys, invisible to the real one.
func TestUnknownTenantRefused(t *testing.T) {
	s := start(t, "sqlite")
	keySets := func() int {
		var n int
		require.NoError(t, s.app.keysDB.QueryRowContext(t.Context(), "SELECT count(*) FROM phicrypt_key_sets").Scan(&n))
		return n
	}
	send := func(method, path, tenant, body string) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), method, s.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-User", "dr-house")
		req.Header.Set("X-Tenant", tenant)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var e errorBody
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
		return resp.StatusCode, e.Error
	}
	in, err := json.Marshal(synthea(t, 1)[0])
	require.NoError(t, err)
	before := keySets()
	for i := range 5 {
		tenant := fmt.Sprintf("tenant:probe-%d", i)
		status, msg := send("POST", "/patients/search", tenant, `{"ssn":"999-12-3456"}`)
		assert.Equal(t, http.StatusForbidden, status)
		assert.Equal(t, errUnknownTenant.Error(), msg)
		status, _ = send("GET", "/patients?last=smi", tenant, "")
		assert.Equal(t, http.StatusForbidden, status)
		status, _ = send("POST", "/patients", tenant, string(in))
		assert.Equal(t, http.StatusForbidden, status)
	}
	assert.Equal(t, before, keySets(), "no key created for a tenant the service does not serve")
	var n int64
	require.NoError(t, s.app.DB.Table("patients").Count(&n).Error)
	assert.Zero(t, n, "no patient written")
	assert.Empty(t, s.audit.ops(OpPHISearch))

	// The configured tenants are served.
	status, _ := send("POST", "/patients/search", "tenant:other", `{"ssn":"999-12-3456"}`)
	assert.Equal(t, http.StatusOK, status)
}
