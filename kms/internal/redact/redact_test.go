package redact_test

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/phicrypt/phicrypt/kms/internal/redact"
)

func TestMessage(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	for _, secret := range []string{
		base64.StdEncoding.EncodeToString(key),
		base64.RawURLEncoding.EncodeToString(key),
		hex.EncodeToString(key),
		"vault:v12:" + base64.StdEncoding.EncodeToString(key),
	} {
		got := redact.Message("invalid ciphertext: " + secret + " (at byte 3)")
		assert.Equal(t, "invalid ciphertext: [redacted] (at byte 3)", got)
		assert.NotContains(t, got, secret)
	}
	assert.Equal(t, "permission denied", redact.Message("  permission\n\tdenied \n"))
	assert.Equal(t, "key not found", redact.Message("key not found"))

	long := redact.Message(strings.Repeat("é ", 300))
	assert.LessOrEqual(t, len(long), redact.MaxMessage+len("…"))
	assert.True(t, strings.HasSuffix(long, "…"))
	assert.True(t, strings.ToValidUTF8(long, "?") == long, "cut inside a rune")

	assert.Equal(t, []string{"a", "b"}, redact.Messages([]string{"a", " ", "b"}))
	assert.Nil(t, redact.Messages(nil))
}
