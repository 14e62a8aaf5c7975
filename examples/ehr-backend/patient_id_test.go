package main

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Ids are version 7 UUIDs: time-ordered, so new rows append to the
// primary key's index.
func TestNewIDIsUUIDv7(t *testing.T) {
	before := time.Now().Truncate(time.Millisecond)
	a, b := newID(), newID()
	for _, id := range []string{a, b} {
		u, err := uuid.Parse(id)
		require.NoError(t, err)
		assert.Equal(t, uuid.Version(7), u.Version())
		assert.Equal(t, uuid.RFC4122, u.Variant())
		sec, nsec := u.Time().UnixTime()
		assert.False(t, time.Unix(sec, nsec).Before(before), "the id carries its creation time")
	}
	assert.NotEqual(t, a, b)
	assert.Less(t, a, b, "ids created in order sort in order")
}
