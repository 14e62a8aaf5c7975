package main

import (
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// TestListReadsBoundedRows: GET /patients answers at most maxListed
// patients, and reads (and decrypts) a bounded number of rows to do so,
// however many patients of the tenant match: a search for every birth
// year read and opened the whole tenant, then kept 100.
func TestListReadsBoundedRows(t *testing.T) {
	s := start(t, "sqlite")
	const n = 2*maxListed + 50
	for _, in := range synthea(t, n) {
		status, body := s.call(t, "POST", "/patients", "front-desk", in, nil)
		require.Equal(t, http.StatusCreated, status, body)
	}
	var read atomic.Int64
	require.NoError(t, s.app.DB.Callback().Query().After("gorm:query").Register("test:count", func(db *gorm.DB) {
		if db.Statement.Table == "patients" {
			read.Add(db.Statement.RowsAffected)
		}
	}))
	var out ListOutput
	status, body := s.call(t, "GET", "/patients?born=1900..2025", "front-desk", nil, &out)
	require.Equal(t, http.StatusOK, status, body)
	assert.True(t, out.Truncated)
	assert.Len(t, out.Patients, maxListed)
	assert.LessOrEqual(t, read.Load(), int64(2*(maxListed+1)), "rows read for %d patients", n)
	assert.Len(t, s.audit.ops(OpPHIRead), maxListed, "reads audited for the patients returned")

	// The answer is the first maxListed matches by id, as before.
	var all []Patient
	require.NoError(t, s.app.DB.Order("id").Limit(maxListed).Find(&all).Error)
	for i := range out.Patients {
		assert.Equal(t, all[i].ID, out.Patients[i].ID)
	}
}
