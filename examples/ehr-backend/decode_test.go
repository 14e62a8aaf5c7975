package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTrailingDataRefused: a body with anything after its JSON value (a
// second patient, stray text) is a 400 and writes nothing. decode read
// the first value and ignored the rest: two concatenated patients made
// one, answered 201, and the second was silently dropped.
func TestTrailingDataRefused(t *testing.T) {
	s := start(t, "sqlite")
	one := `{"mrn":"MRN-T1","ssn":"999-11-2222","first":"Ana","last":"Silva","birth_date":"1980-02-03"}`
	two := `{"mrn":"MRN-T2","ssn":"999-11-3333","first":"Ben","last":"Okafor","birth_date":"1981-03-04"}`
	for _, body := range []string{one + two, one + "\n" + two, one + ` garbage`, one + `]`} {
		status, resp := s.call(t, "POST", "/patients", "dr-house", body, nil)
		assert.Equal(t, http.StatusBadRequest, status, resp)
		assert.Contains(t, resp, errBadJSON.Error())
	}
	var n int64
	require.NoError(t, s.app.DB.Table("patients").Count(&n).Error)
	assert.Zero(t, n, "nothing written")
	status, resp := s.call(t, "POST", "/patients/search", "dr-house", `{"ssn":"999-11-2222"} {"mrn":"x"}`, nil)
	assert.Equal(t, http.StatusBadRequest, status, resp)
	status, resp = s.call(t, "POST", "/patients", "dr-house", one+" \n\t", nil)
	assert.Equal(t, http.StatusCreated, status, "trailing white space is no value: %s", resp)
}
