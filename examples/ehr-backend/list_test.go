package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/cases"

	"github.com/phicrypt/phicrypt/fields"
)

// TestList searches GET /patients by last-name prefix and birth-date
// range, on SQLite and PostgreSQL: the answer is exactly the patients
// that match, computed from the plaintext.
func TestList(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) { testList(t, dialect) })
	}
}

func testList(t *testing.T, dialect string) {
	s := start(t, dialect)
	const user = "front-desk"
	inputs := synthea(t, 120)
	ids := map[*PatientInput]string{}
	for i := range inputs {
		var p PatientOutput
		status, body := s.call(t, "POST", "/patients", user, inputs[i], &p)
		require.Equal(t, http.StatusCreated, status, body)
		ids[&inputs[i]] = p.ID
	}
	fold := cases.Fold()
	list := func(last, born string) (int, ListOutput) {
		t.Helper()
		v := url.Values{}
		if last != "" {
			v.Set("last", last)
		}
		if born != "" {
			v.Set("born", born)
		}
		var out ListOutput
		status, _ := s.call(t, "GET", "/patients?"+v.Encode(), user, nil, &out)
		return status, out
	}
	want := func(last, born string) []string {
		var r fields.DateRange
		if born != "" {
			var err error
			r, err = fields.ParseDateRange(born)
			require.NoError(t, err)
		}
		out := []string{}
		for i := range inputs {
			in := &inputs[i]
			d, _ := time.Parse(time.DateOnly, *in.BirthDate)
			if (last == "" || strings.HasPrefix(fold.String(*in.Last), fold.String(last))) && (born == "" || r.Contains(d)) {
				out = append(out, ids[in])
			}
		}
		return out
	}
	queries := [][2]string{{"smi", "1980-03..1985-06"}, {"", "1980-03..1985-06"}, {"", "1950..1969"}, {"", "2010-06-15..2012-02-03"}}
	for i := 0; i < len(inputs); i += 9 {
		last, born := []rune(*inputs[i].Last), *inputs[i].BirthDate
		queries = append(queries,
			[2]string{strings.ToUpper(string(last[:3])), ""},
			[2]string{string(last[:3]), born[:4] + ".." + born[:7]},
			[2]string{string(last[:4]), born[:7] + ".." + born[:4]},
			[2]string{strings.ToLower(string(last)), born},
		)
	}
	matched := 0
	for _, q := range queries {
		status, out := list(q[0], q[1])
		require.Equal(t, http.StatusOK, status, q)
		var got []string
		for _, p := range out.Patients {
			got = append(got, p.ID)
			assert.NotEmpty(t, p.SSN, "opened")
		}
		assert.ElementsMatch(t, want(q[0], q[1]), got, "last=%s born=%s", q[0], q[1])
		assert.False(t, out.Truncated)
		matched += len(got)
	}
	assert.Greater(t, matched, len(queries), "the queries find patients")

	// Bad requests.
	for _, q := range [][2]string{{"", ""}, {"s", ""}, {"sm", ""}, {"", "1985..1980"}, {"", "last week"}, {"", "1000..9000"}, {strings.Repeat("a", 201), ""}} {
		status, _ := list(q[0], q[1])
		assert.Equal(t, http.StatusBadRequest, status, q)
	}
	// The error says how long a prefix must be: as long as the prefix
	// index's (it once said 2, for an index of 3).
	status, body := s.call(t, "GET", "/patients?last=sm", user, nil, nil)
	require.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, body, fmt.Sprintf("at least %d characters", minLastPrefix))
	status, _ = list(strings.Repeat("s", minLastPrefix), "")
	assert.Equal(t, http.StatusOK, status, "a prefix of the minimum length")
	status, _ = s.call(t, "GET", "/patients?last=smi", "", nil, nil)
	assert.Equal(t, http.StatusUnauthorized, status)

	// Another tenant sees no one.
	req, _ := http.NewRequest("GET", s.URL+"/patients?born=1900..2025", nil)
	req.Header.Set("X-User", user)
	req.Header.Set("X-Tenant", "tenant:other")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var other ListOutput
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&other))
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, other.Patients)

	// A search that matches more than maxListed patients is cut short.
	status, out := list("", "1900..2025")
	require.Equal(t, http.StatusOK, status)
	assert.True(t, out.Truncated)
	assert.Len(t, out.Patients, maxListed)

	// Audited by kind; the query string is in no log.
	searches := s.audit.ops(OpPHISearch)
	require.NotEmpty(t, searches)
	assert.Equal(t, "born_range", searches[len(searches)-1].Use)
	assert.Contains(t, s.logs.String(), `"route":"GET /patients"`)
	assert.NotContains(t, s.logs.String(), "1980-03..1985-06")
	assert.NotContains(t, s.logs.String(), "last=")
}
