package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/testsvc"
	"github.com/phicrypt/phicrypt/keys"
)

// mainEnv set to 1 makes the test binary run the service's main instead
// of the tests, so tests can run it as a process of its own and kill it.
const mainEnv = "EHR_BACKEND_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(testsvc.RunMain(m))
}

// recorder is an Auditor that keeps the events, and fails on demand.
type recorder struct {
	mu     sync.Mutex
	events []keys.Event
	fail   atomic.Bool
}

func (r *recorder) Audit(_ context.Context, e keys.Event) error {
	if r.fail.Load() {
		return errors.New("audit sink down")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) ops(op keys.Op) []keys.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []keys.Event
	for _, e := range r.events {
		if e.Op == op {
			out = append(out, e)
		}
	}
	return out
}

// server runs the service on SQLite or PostgreSQL, with a recorder and a
// log buffer.
type server struct {
	*httptest.Server
	app   *App
	audit *recorder
	logs  *bytes.Buffer
}

var dbSeq atomic.Int64

func start(t *testing.T, dialect string) *server {
	t.Helper()
	o := Options{Dir: t.TempDir(), Tenant: "tenant:default", Tenants: []string{"tenant:other"}}
	if dialect == "postgres" {
		o.DSN = testsvc.SharedPostgres(t).CreateDatabase(t, fmt.Sprintf("ehr_%d", dbSeq.Add(1)))
	}
	s := &server{audit: &recorder{}, logs: &bytes.Buffer{}}
	o.Auditor = s.audit
	o.Logger = slog.New(slog.NewJSONHandler(&lockedWriter{w: s.logs}, nil))
	app, err := Open(t.Context(), o)
	require.NoError(t, err)
	t.Cleanup(func() { app.Close() })
	s.app = app
	s.Server = httptest.NewServer(app.Handler)
	t.Cleanup(s.Close)
	return s
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// call sends a JSON request as user (none when empty) and decodes the
// response into out (when not nil); it returns the status and raw body.
func (s *server) call(t *testing.T, method, path, user string, body any, out any) (int, string) {
	t.Helper()
	var r io.Reader
	if b, ok := body.(string); ok {
		r = strings.NewReader(b)
	} else if body != nil {
		j, err := json.Marshal(body)
		require.NoError(t, err)
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, s.URL+path, r)
	require.NoError(t, err)
	if user != "" {
		req.Header.Set("X-User", user)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if out != nil && resp.StatusCode < 300 && len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, out), string(raw))
	}
	return resp.StatusCode, string(raw)
}

// synthea returns the first n Synthea patients as create requests, with
// an MRN derived from the id (the CSV has none).
func synthea(t *testing.T, n int) []PatientInput {
	t.Helper()
	f, err := os.Open("../../testdata/synthea/patients.csv")
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	var out []PatientInput
	for _, r := range rows[1 : n+1] {
		s := func(name string) *string { v := r[col[name]]; return &v }
		mrn := "MRN-" + strings.ToUpper(strings.ReplaceAll(r[col["Id"]], "-", "")[:10])
		out = append(out, PatientInput{MRN: &mrn, SSN: s("SSN"), First: s("FIRST"), Last: s("LAST"), BirthDate: s("BIRTHDATE"), Gender: s("GENDER")})
	}
	return out
}

func ptr(s string) *string { return &s }

func TestAPI(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) { testAPI(t, dialect) })
	}
}

func testAPI(t *testing.T, dialect string) {
	s := start(t, dialect)
	const user = "dr-house"
	inputs := synthea(t, 12)
	var created []PatientOutput
	for _, in := range inputs {
		var p PatientOutput
		status, _ := s.call(t, "POST", "/patients", user, in, &p)
		require.Equal(t, http.StatusCreated, status)
		assert.Equal(t, *in.SSN, p.SSN)
		assert.Equal(t, *in.BirthDate, p.BirthDate)
		created = append(created, p)
	}
	a := created[0]

	// Errors map to statuses.
	status, _ := s.call(t, "GET", "/patients/"+a.ID, "", nil, nil)
	assert.Equal(t, http.StatusUnauthorized, status)
	bad := inputs[1]
	bad.SSN = ptr("12-34")
	status, body := s.call(t, "POST", "/patients", user, bad, nil)
	assert.Equal(t, http.StatusBadRequest, status)
	assert.JSONEq(t, `{"error":"want 9 digits, as NNN-NN-NNNN","field":"ssn"}`, body)
	status, _ = s.call(t, "POST", "/patients", user, `{"ssn": "999-00-1111", "nope": 1}`, nil)
	assert.Equal(t, http.StatusBadRequest, status)
	status, _ = s.call(t, "POST", "/patients", user, `{"ssn": `, nil)
	assert.Equal(t, http.StatusBadRequest, status)
	status, _ = s.call(t, "POST", "/patients", user, PatientInput{SSN: ptr("999-00-1111")}, nil)
	assert.Equal(t, http.StatusBadRequest, status)
	status, _ = s.call(t, "POST", "/patients", user, strings.Repeat(" ", 70<<10), nil)
	assert.Equal(t, http.StatusRequestEntityTooLarge, status)
	dup := inputs[1]
	dup.MRN = ptr(strings.ToLower(*inputs[0].MRN))
	status, _ = s.call(t, "POST", "/patients", user, dup, nil)
	assert.Equal(t, http.StatusConflict, status, "MRNs are unique, case aside")
	status, _ = s.call(t, "GET", "/patients/00000000-0000-4000-8000-000000000000", user, nil, nil)
	assert.Equal(t, http.StatusNotFound, status)

	// Get.
	reads := len(s.audit.ops(OpPHIRead))
	var got PatientOutput
	status, _ = s.call(t, "GET", "/patients/"+a.ID, user, nil, &got)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, a, got)
	ev := s.audit.ops(OpPHIRead)
	require.Len(t, ev, reads+1)
	assert.Equal(t, keys.Event{Time: ev[reads].Time, Op: OpPHIRead, Scope: "tenant:default", Key: "patients/" + a.ID, Use: "get",
		Principal: user, Purpose: "treatment", Outcome: keys.Success}, ev[reads])

	// Another tenant sees nothing.
	req, _ := http.NewRequest("GET", s.URL+"/patients/"+a.ID, nil)
	req.Header.Set("X-User", user)
	req.Header.Set("X-Tenant", "tenant:other")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)

	// Searches.
	search := func(in SearchInput) []string {
		var out SearchOutput
		status, body := s.call(t, "POST", "/patients/search", user, in, &out)
		require.Equal(t, http.StatusOK, status, body)
		ids := []string{}
		for _, p := range out.Patients {
			ids = append(ids, p.ID)
		}
		return ids
	}
	for i, p := range created {
		assert.Equal(t, []string{p.ID}, search(SearchInput{SSN: strings.ReplaceAll(p.SSN, "-", "")}), "by SSN")
		assert.Equal(t, []string{p.ID}, search(SearchInput{MRN: strings.ToLower(p.MRN)}), "by MRN")
		assert.Equal(t, []string{p.ID}, search(SearchInput{Last: strings.ToUpper(*inputs[i].Last), BirthDate: p.BirthDate}), "by last name and DOB")
	}
	assert.Empty(t, search(SearchInput{SSN: "999-00-0000"}))
	status, _ = s.call(t, "POST", "/patients/search", user, SearchInput{SSN: a.SSN, MRN: a.MRN}, nil)
	assert.Equal(t, http.StatusBadRequest, status)
	status, _ = s.call(t, "POST", "/patients/search", user, SearchInput{Last: a.Last}, nil)
	assert.Equal(t, http.StatusBadRequest, status)
	searches := s.audit.ops(OpPHISearch)
	assert.Equal(t, "name_dob", searches[len(searches)-2].Use)

	// Update one source of the name+DOB index: the record is read and
	// opened first, so the index is recomputed.
	var updated PatientOutput
	status, body = s.call(t, "PATCH", "/patients/"+a.ID, user, PatientInput{Last: ptr("Lovelace"), Phone: ptr("555-0100")}, &updated)
	require.Equal(t, http.StatusOK, status, body)
	assert.Equal(t, "Lovelace", updated.Last)
	assert.Equal(t, a.SSN, updated.SSN)
	assert.Equal(t, []string{a.ID}, search(SearchInput{Last: "lovelace", BirthDate: a.BirthDate}))
	assert.Empty(t, search(SearchInput{Last: a.Last, BirthDate: a.BirthDate}))
	status, _ = s.call(t, "PATCH", "/patients/"+a.ID, user, PatientInput{MRN: ptr(created[1].MRN)}, nil)
	assert.Equal(t, http.StatusConflict, status)
	status, _ = s.call(t, "PATCH", "/patients/"+a.ID, user, PatientInput{BirthDate: ptr("yesterday")}, nil)
	assert.Equal(t, http.StatusBadRequest, status)
	var cleared PatientOutput
	status, _ = s.call(t, "PATCH", "/patients/"+a.ID, user, PatientInput{Phone: ptr("")}, &cleared)
	require.Equal(t, http.StatusOK, status)
	assert.Empty(t, cleared.Phone)
	assert.Equal(t, "Lovelace", cleared.Last)

	// Delete.
	status, _ = s.call(t, "DELETE", "/patients/"+a.ID, user, nil, nil)
	assert.Equal(t, http.StatusNoContent, status)
	status, _ = s.call(t, "DELETE", "/patients/"+a.ID, user, nil, nil)
	assert.Equal(t, http.StatusNotFound, status)
	status, _ = s.call(t, "GET", "/patients/"+a.ID, user, nil, nil)
	assert.Equal(t, http.StatusNotFound, status)
	// Each delete records its event before it runs: the second one, of a
	// patient already gone, is recorded as an attempt.
	assert.Len(t, s.audit.ops(OpPHIDelete), 2)

	// Every read was audited, with its principal; no PHI in the logs, in
	// the audit events or in the table.
	for _, e := range s.audit.ops(OpPHIRead) {
		assert.Equal(t, user, e.Principal)
	}
	events, err := json.Marshal(s.audit.events)
	require.NoError(t, err)
	var table bytes.Buffer
	rows, err := s.app.DB.Raw("SELECT * FROM patients").Rows()
	require.NoError(t, err)
	cols, _ := rows.Columns()
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		fmt.Fprintln(&table, vals...)
	}
	rows.Close()
	require.NotZero(t, table.Len())
	for _, in := range inputs {
		for _, secret := range []string{*in.SSN, *in.First, *in.Last, *in.BirthDate, *in.MRN} {
			assert.NotContains(t, s.logs.String(), secret)
			assert.NotContains(t, string(events), secret)
			assert.NotContains(t, table.String(), secret)
		}
	}
	assert.Contains(t, s.logs.String(), `"route":"POST /patients/search"`)
}

// TestAuditFailureReturnsNoPHI: when the audit record of a read cannot be
// written, the read fails and returns nothing.
func TestAuditFailureReturnsNoPHI(t *testing.T) {
	s := start(t, "sqlite")
	in := synthea(t, 1)[0]
	var p PatientOutput
	status, _ := s.call(t, "POST", "/patients", "dr-house", in, &p)
	require.Equal(t, http.StatusCreated, status, s.logs.String())
	s.audit.fail.Store(true)
	status, body := s.call(t, "GET", "/patients/"+p.ID, "dr-house", nil, nil)
	assert.Equal(t, http.StatusInternalServerError, status)
	assert.JSONEq(t, `{"error":"internal error"}`, body)
	status, body = s.call(t, "POST", "/patients/search", "dr-house", SearchInput{SSN: *in.SSN}, nil)
	assert.Equal(t, http.StatusInternalServerError, status)
	assert.NotContains(t, body, *in.SSN)
	assert.Contains(t, s.logs.String(), "audit sink down")
}

// TestDefaults runs the service as main does: SQLite in a folder, a local
// KEK file, and the tamper-evident audit log in the database.
func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	app, err := Open(t.Context(), Options{Dir: dir, Tenant: "tenant:default", Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	srv := httptest.NewServer(app.Handler)
	s := &server{Server: srv, app: app}
	in := synthea(t, 2)[1]
	var p PatientOutput
	status, _ := s.call(t, "POST", "/patients", "nurse-joy", in, &p)
	require.Equal(t, http.StatusCreated, status)
	status, _ = s.call(t, "GET", "/patients/"+p.ID, "nurse-joy", nil, nil)
	require.Equal(t, http.StatusOK, status)
	report, err := app.Audit.Verify(t.Context(), keys.VerifyOptions{})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, report.Events, int64(3), "key creation, the write and the read")
	srv.Close()
	require.NoError(t, app.Close())

	// A second run reuses the KEK file and the database.
	app, err = Open(t.Context(), Options{Dir: dir, Tenant: "tenant:default", Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer app.Close()
	srv = httptest.NewServer(app.Handler)
	defer srv.Close()
	s = &server{Server: srv, app: app}
	var again PatientOutput
	status, _ = s.call(t, "GET", "/patients/"+p.ID, "nurse-joy", nil, &again)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, p.SSN, again.SSN)
}
