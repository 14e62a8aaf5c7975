package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWriteWithoutAuditEventRefused: a create, an update or a delete whose
// audit event cannot be written fails with 500 and changes nothing. The
// event is written before the change: a write that then fails (a
// duplicate MRN) leaves the record of an attempt, but no change is ever
// committed without its event.
func TestWriteWithoutAuditEventRefused(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			s := start(t, dialect)
			in := synthea(t, 2)
			var p PatientOutput
			status, body := s.call(t, "POST", "/patients", "clerk", in[0], &p)
			require.Equal(t, http.StatusCreated, status, body)
			rows := func() int {
				var n int
				require.NoError(t, s.app.sqlDB.QueryRow("SELECT count(*) FROM patients").Scan(&n))
				return n
			}

			s.audit.fail.Store(true)
			status, body = s.call(t, "POST", "/patients", "clerk", in[1], nil)
			assert.Equal(t, http.StatusInternalServerError, status, body)
			status, body = s.call(t, "PATCH", "/patients/"+p.ID, "clerk", PatientInput{Phone: ptr("555-0199")}, nil)
			assert.Equal(t, http.StatusInternalServerError, status, body)
			status, body = s.call(t, "DELETE", "/patients/"+p.ID, "clerk", nil, nil)
			assert.Equal(t, http.StatusInternalServerError, status, body)
			s.audit.fail.Store(false)

			assert.Equal(t, 1, rows(), "a create without its phi-write event was committed")
			var got PatientOutput
			status, body = s.call(t, "GET", "/patients/"+p.ID, "clerk", nil, &got)
			require.Equal(t, http.StatusOK, status, "a delete without its phi-delete event was committed: %s", body)
			assert.Equal(t, p.Phone, got.Phone, "an update without its phi-write event was committed")
		})
	}
}
