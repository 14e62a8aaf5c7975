package migrate

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

// TestCompactHeader checks the header peek of the Reencrypt fast path
// against envelope.Inspect: the same key version for compact ciphertexts,
// binary or armored, in []byte or string, and nothing for anything else.
func TestCompactHeader(t *testing.T) {
	ctx := context.Background()
	kek, err := local.Create(filepath.Join(t.TempDir(), "kek.json"), local.Options{KeyID: "local:reseal-test"})
	require.NoError(t, err)
	kr, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore()})
	require.NoError(t, err)
	_, err = kr.EncryptionKey(ctx, "tenant:a")
	require.NoError(t, err)
	for range 6 { // version 7 has a header byte other than 0 and 1
		_, err := kr.Rotate(ctx, keys.DataKey("tenant:a"))
		require.NoError(t, err)
	}
	b := envelope.Binding{Scope: "tenant:a", Table: "t", Column: "c", RecordID: "1"}
	for _, enc := range []envelope.Encoding{envelope.Binary, envelope.Text} {
		c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr, Encoding: enc})
		require.NoError(t, err)
		for _, pt := range []string{"", "999-12-3456", strings.Repeat("x", 1000)} {
			ct, err := c.Encrypt(ctx, []byte(pt), b)
			require.NoError(t, err)
			info, err := envelope.Inspect(ct)
			require.NoError(t, err)
			require.Equal(t, uint32(7), info.KeyVersion)
			for _, v := range []any{ct, string(ct)} {
				version, text, ok := compactHeader(v)
				assert.True(t, ok)
				assert.Equal(t, info.KeyVersion, version)
				assert.Equal(t, enc == envelope.Text, text)
			}
		}
	}
	self, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek})
	require.NoError(t, err)
	sc, err := self.Encrypt(ctx, []byte("x"), b)
	require.NoError(t, err)
	for _, v := range []any{nil, "", "999-12-3456", []byte("phicrypt:"), "phicrypt:AAAA", []byte{0xF5, 1}, sc, int64(7)} {
		_, _, ok := compactHeader(v)
		assert.False(t, ok, "%v", v)
	}
}
