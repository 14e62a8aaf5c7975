package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
)

// TestUpdateAuditsTheRead: a PATCH answers with the whole patient (SSN,
// name, birth date), not only what it changed, so it records a phi-read
// event like a GET; a PATCH that changes nothing records no phi-write.
// Otherwise PATCH {} would read any patient's PHI with no phi-read in
// the log, and a phi-write that never happened.
func TestUpdateAuditsTheRead(t *testing.T) {
	s := start(t, "sqlite")
	var p PatientOutput
	status, body := s.call(t, "POST", "/patients", "clerk", synthea(t, 1)[0], &p)
	require.Equal(t, http.StatusCreated, status, body)
	key := "patients/" + p.ID
	count := func(op keys.Op) int {
		n := 0
		for _, e := range s.audit.ops(op) {
			if e.Key == key && e.Principal == "snoop" {
				n++
			}
		}
		return n
	}

	var out PatientOutput
	status, body = s.call(t, "PATCH", "/patients/"+p.ID, "snoop", PatientInput{Phone: ptr("555-0100")}, &out)
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, p.SSN, out.SSN, "the response carries PHI the caller did not send")
	assert.Equal(t, 1, count(OpPHIWrite))
	assert.Equal(t, 1, count(OpPHIRead), "the PHI returned is a read")

	status, body = s.call(t, "PATCH", "/patients/"+p.ID, "snoop", `{}`, &out)
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, p.SSN, out.SSN)
	assert.Equal(t, 1, count(OpPHIWrite), "nothing written")
	assert.Equal(t, 2, count(OpPHIRead))
}
