package fhir

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestPatientID(t *testing.T) {
	for ref, want := range map[string]string{
		"Patient/123":                               "123",
		"Patient/123/_history/4":                    "123",
		"https://example.org/fhir/Patient/abc":      "abc",
		"urn:uuid:e3a0ccfb-a1cc-e34f-59de-84f85ed4": "e3a0ccfb-a1cc-e34f-59de-84f85ed4",
		"Group/7":          "",
		"RelatedPatient/7": "",
		"#contained":       "",
	} {
		assert.Equal(t, want, patientID(ref), ref)
	}
}
