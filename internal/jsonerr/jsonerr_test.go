package jsonerr

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestDescribeQuotesNoInput(t *testing.T) {
	var v struct{ A int }
	err := json.Unmarshal([]byte(`{"A":"SECRET-999-12-3456"}`), &v)
	assert.Equal(t, `wrong type for field "A" at byte 25`, Describe(err))
	err = json.Unmarshal([]byte(`{"A": SECRET}`), &v)
	assert.Equal(t, "syntax error at byte 7", Describe(err))
	dec := json.NewDecoder(bytes.NewReader([]byte(`{"B":"SECRET"}`)))
	dec.DisallowUnknownFields()
	err = dec.Decode(&v)
	assert.Equal(t, `json: unknown field "B"`, Describe(err))
	assert.NotContains(t, Describe(err), "SECRET")
}
