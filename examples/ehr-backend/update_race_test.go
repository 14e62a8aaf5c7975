package main

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// TestConcurrentUpdatesKeepNameDOBIndex: two PATCHes of one patient at
// the same time, one of the last name and one of the birth date, leave
// the patient findable by the last name and birth date it ends with, also
// on PostgreSQL, where transactions run concurrently. The name + birth
// date index is computed from the record the update read: an update that
// read it before the other committed would write an index of a stale last
// name or birth date.
func TestConcurrentUpdatesKeepNameDOBIndex(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			s := start(t, dialect)
			// Each update's read of the patient waits, up to a moment, for
			// the other's: both read before either writes, unless the
			// first read holds the other back.
			var (
				mu      sync.Mutex
				meeting atomic.Bool
			)
			arrived, release := 0, make(chan struct{})
			require.NoError(t, s.app.DB.Callback().Query().After("gorm:query").Register("test:meet", func(db *gorm.DB) {
				if !meeting.Load() || db.Statement.Table != "patients" {
					return
				}
				mu.Lock()
				arrived++
				ch := release
				if arrived == 2 {
					close(ch)
				}
				mu.Unlock()
				select {
				case <-ch:
				case <-time.After(300 * time.Millisecond):
				}
			}))
			inputs := synthea(t, 3)
			for round, in := range inputs {
				var p PatientOutput
				status, body := s.call(t, "POST", "/patients", "dr-house", in, &p)
				require.Equal(t, http.StatusCreated, status, body)
				mu.Lock()
				arrived, release = 0, make(chan struct{})
				mu.Unlock()
				meeting.Store(true)
				var wg sync.WaitGroup
				changes := []PatientInput{{Last: ptr("Lovelace")}, {BirthDate: ptr("1915-12-10")}}
				for _, c := range changes {
					wg.Go(func() {
						status, body := s.call(t, "PATCH", "/patients/"+p.ID, "dr-house", c, nil)
						assert.Equal(t, http.StatusOK, status, body)
					})
				}
				wg.Wait()
				meeting.Store(false)
				var out SearchOutput
				status, body = s.call(t, "POST", "/patients/search", "dr-house", SearchInput{Last: "Lovelace", BirthDate: "1915-12-10"}, &out)
				require.Equal(t, http.StatusOK, status, body)
				var ids []string
				for _, f := range out.Patients {
					ids = append(ids, f.ID)
				}
				assert.Contains(t, ids, p.ID, "round %d: the patient is found by the name and birth date it has", round)
			}
		})
	}
}
