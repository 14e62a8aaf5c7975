package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTermsNormalizedAwayAre400: a search term, or a new MRN, that the
// blind index's normalizers reduce to nothing (a blank or non-breaking
// space last name, an MRN of dashes) is a 400 naming the field, not a 500:
// it cannot be searched for, and an MRN without a letter or digit cannot
// be checked for uniqueness.
func TestTermsNormalizedAwayAre400(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) { testTermsNormalizedAwayAre400(t, dialect) })
	}
}

func testTermsNormalizedAwayAre400(t *testing.T, dialect string) {
	s := start(t, dialect)
	var p PatientOutput
	status, body := s.call(t, "POST", "/patients", "dr-house", synthea(t, 1)[0], &p)
	require.Equal(t, http.StatusCreated, status, body)
	for _, tc := range []struct {
		method, path, body, field string
	}{
		{"POST", "/patients/search", `{"last":"   ","birth_date":"1990-01-01"}`, "last"},
		{"POST", "/patients/search", `{"last":"\u00a0","birth_date":"1990-01-01"}`, "last"},
		{"POST", "/patients/search", `{"mrn":"-"}`, "mrn"},
		{"POST", "/patients", `{"mrn":"---","ssn":"999-11-2222","first":"Ana","last":"Silva","birth_date":"1990-01-01"}`, "mrn"},
		{"PATCH", "/patients/" + p.ID, `{"mrn":"-"}`, "mrn"},
	} {
		status, body := s.call(t, tc.method, tc.path, "dr-house", tc.body, nil)
		assert.Equal(t, http.StatusBadRequest, status, "%s %s", tc.path, tc.body)
		var e errorBody
		require.NoError(t, json.Unmarshal([]byte(body), &e), body)
		assert.Equal(t, tc.field, e.Field, "%s %s: %s", tc.path, tc.body, body)
	}
	assert.NotContains(t, s.logs.String(), `"level":"ERROR"`)
}
