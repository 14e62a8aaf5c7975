package strictjson

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type config struct {
	Name  string             `json:"name"`
	Keys  []map[string]int   `json:"keys"`
	Inner struct{ A, B int } `json:"inner"`
}

func TestDecodeAcceptsAStrictDocument(t *testing.T) {
	var c config
	require.NoError(t, Decode([]byte(` {"name":"a","keys":[{"v":1,"w":2},{"v":3}],"inner":{"A":1,"B":2}} `+"\n"), &c))
	assert.Equal(t, "a", c.Name)
	assert.Equal(t, []map[string]int{{"v": 1, "w": 2}, {"v": 3}}, c.Keys)
	// Equal names in different objects are not duplicates.
	require.NoError(t, Decode([]byte(`{"keys":[{"v":1},{"v":2}],"inner":{"A":1}}`), &c))
}

func TestDecodeRefuses(t *testing.T) {
	for name, doc := range map[string]string{
		"duplicate member":              `{"name":"a","name":"b"}`,
		"duplicate member, other case":  `{"name":"a","NAME":"b"}`,
		"duplicate in a nested object":  `{"inner":{"A":1,"a":2}}`,
		"duplicate in an array element": `{"keys":[{"v":1,"v":2}]}`,
		"unknown member":                `{"nme":"a"}`,
		"trailing closing brace":        `{"name":"a"}}`,
		"trailing closing bracket":      `{"name":"a"}]`,
		"trailing garbage":              `{"name":"a"} xyz`,
		"second value":                  `{"name":"a"}{"name":"b"}`,
		"not JSON":                      `name: a`,
	} {
		var c config
		err := Decode([]byte(doc), &c)
		assert.Error(t, err, name)
	}
}

func TestDecodeErrorsQuoteNoValue(t *testing.T) {
	var c config
	err := Decode([]byte(`{"name":"SECRET-KEY-MATERIAL","inner":{"A":"SECRET-2"}}`), &c)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "SECRET")
	err = Decode([]byte(`{"name":"a"} SECRET`), &c)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "SECRET")
}
