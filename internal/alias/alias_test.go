package alias

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestAnyOverlap(t *testing.T) {
	buf := make([]byte, 10)
	assert.True(t, AnyOverlap(buf[:5], buf[4:]))
	assert.True(t, AnyOverlap(buf[2:3], buf))
	assert.False(t, AnyOverlap(buf[:5], buf[5:]))
	assert.False(t, AnyOverlap(buf[:0], buf))
	assert.False(t, AnyOverlap(buf, make([]byte, 10)))
}
