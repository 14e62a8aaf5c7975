package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOversizedHeadersRefused: X-User and X-Purpose are copied into every
// audit event and log line of a request: one longer than 256 bytes, or
// with a control character, is a 400, and neither reaches the log or the
// audit trail.
func TestOversizedHeadersRefused(t *testing.T) {
	s := start(t, "sqlite")
	long := strings.Repeat("u", maxHeader+1)
	for name, h := range map[string][2]string{
		"long user":         {"X-User", long},
		"long purpose":      {"X-Purpose", long},
		"control character": {"X-Purpose", "treat\tment"}, // a tab: the only one HTTP lets through
	} {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequest("GET", s.URL+"/patients/00000000-0000-0000-0000-000000000000", nil)
			require.NoError(t, err)
			req.Header.Set("X-User", "clerk")
			req.Header.Set(h[0], h[1])
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		})
	}
	assert.NotContains(t, s.logs.String(), long)
	for _, e := range s.audit.events {
		assert.NotContains(t, e.Principal, long)
		assert.NotContains(t, e.Purpose, long)
	}
	// One at the limit is served.
	status, body := s.call(t, "GET", "/patients/00000000-0000-0000-0000-000000000000", long[:maxHeader], nil, nil)
	assert.Equal(t, http.StatusNotFound, status, body)
}
