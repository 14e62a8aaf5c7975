package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/examples/ehr-backend/loadgen"
	"github.com/phicrypt/phicrypt/internal/testsvc"
	"github.com/phicrypt/phicrypt/keys"
)

// TestNoErrorsUnderLoad runs the registration-desk mix (half creates, a
// quarter reads, a quarter SSN searches) from 16 concurrent clients
// against the service with its real audit log, on the embedded SQLite
// default and on PostgreSQL: no request may fail. 400 requests by default,
// 160 with -short, the 4,000 with PHICRYPT_FULL_TESTS=1.
func TestNoErrorsUnderLoad(t *testing.T) {
	requests := 400
	switch {
	case testsvc.Full():
		requests = 4000
	case testing.Short():
		requests = 160
	}
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			o := Options{Dir: t.TempDir(), Tenant: "tenant:default", Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
			if dialect == "postgres" {
				o.DSN = testsvc.SharedPostgres(t).CreateDatabase(t, fmt.Sprintf("ehr_%d", dbSeq.Add(1)))
			}
			app, err := Open(t.Context(), o)
			require.NoError(t, err)
			t.Cleanup(func() { app.Close() })
			srv := httptest.NewServer(app.Handler)
			t.Cleanup(srv.Close)

			res, err := loadgen.Run(t.Context(), loadgen.Config{BaseURL: srv.URL, Clients: 16, Requests: requests})
			require.NoError(t, err)
			t.Log(res)
			assert.Equal(t, requests, res.Requests)
			assert.Zero(t, res.Errors, "%v", res.FirstErrors)
			report, err := app.Audit.Verify(t.Context(), keys.VerifyOptions{})
			require.NoError(t, err)
			assert.GreaterOrEqual(t, report.Events, int64(requests), "every request is audited")
		})
	}
}

func TestLoadgenRefusesNonLoopback(t *testing.T) {
	for _, u := range []string{"http://10.0.0.1:8080", "http://example.com", "http://0.0.0.0:80", "http://[::]:80"} {
		_, err := loadgen.Run(t.Context(), loadgen.Config{BaseURL: u, Requests: 1})
		assert.ErrorIs(t, err, loadgen.ErrNotLoopback, u)
	}
}

// TestLoadgenBoundsClients: the number of clients is bounded like the
// number of requests. A huge -clients allocated a latency slice per
// client before any check (1<<50 panicked in makeslice) and started a
// goroutine and up to a connection per client.
func TestLoadgenBoundsClients(t *testing.T) {
	for _, clients := range []int{1 << 50, 5000} {
		var err error
		require.NotPanics(t, func() {
			_, err = loadgen.Run(t.Context(), loadgen.Config{BaseURL: "http://127.0.0.1:9", Clients: clients, Requests: 1})
		})
		assert.ErrorIs(t, err, loadgen.ErrOutOfBounds, clients)
	}
	_, err := loadgen.Run(t.Context(), loadgen.Config{BaseURL: "http://127.0.0.1:9", Requests: 2_000_000})
	assert.ErrorIs(t, err, loadgen.ErrOutOfBounds)
}

// TestMeasureBoundsRuns: -runs is bounded too; a huge count would repeat
// the load for ever.
func TestMeasureBoundsRuns(t *testing.T) {
	app, err := Open(t.Context(), Options{Dir: t.TempDir(), Tenant: "tenant:default", Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer app.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // a run that does start ends at once
	err = measure(ctx, app, io.Discard, loadgen.Config{Requests: 1}, 1<<40)
	assert.ErrorIs(t, err, loadgen.ErrOutOfBounds)
}

// TestLoadgenFollowsNoRedirect: a redirect cannot take the load generator
// off the loopback target it checked. It followed them (a 307 re-sends the
// POST body) to any host, a name included, which Run refuses as a target.
func TestLoadgenFollowsNoRedirect(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	_, port, err := net.SplitHostPort(other.Listener.Addr().String())
	require.NoError(t, err)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://localhost:"+port+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	res, err := loadgen.Run(t.Context(), loadgen.Config{BaseURL: redirect.URL, Clients: 1, Requests: 3})
	require.NoError(t, err)
	assert.Zero(t, elsewhere.Load(), "requests sent to the redirect's target")
	assert.Equal(t, 3, res.Errors, "a redirect is an unexpected status")
}
