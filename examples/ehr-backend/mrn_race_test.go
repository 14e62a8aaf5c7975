package main

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConcurrentCreatesOneMRN: patients created at the same time with
// one MRN (in any case) make one patient; the others get 409 Conflict,
// also on PostgreSQL, where transactions run concurrently.
func TestConcurrentCreatesOneMRN(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			s := start(t, dialect)
			inputs := synthea(t, 8)
			for round := range 5 {
				mrn := fmt.Sprintf("MRN-RACE-%d", round)
				statuses := make([]int, len(inputs))
				var wg sync.WaitGroup
				for i, in := range inputs {
					in.MRN = &mrn
					if i%2 == 1 {
						lower := fmt.Sprintf("mrn-race-%d", round)
						in.MRN = &lower
					}
					wg.Go(func() { statuses[i], _ = s.call(t, "POST", "/patients", "dr-house", in, nil) })
				}
				wg.Wait()
				created := 0
				for _, st := range statuses {
					if st == http.StatusCreated {
						created++
					} else {
						assert.Equal(t, http.StatusConflict, st)
					}
				}
				require.Equal(t, 1, created, "round %d: %v", round, statuses)
			}
		})
	}
}
