package keys_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
)

// TestLeakCanary formats the package's types and errors every way a
// program might log them: no wrapped key bytes, no scope in errors.
func TestLeakCanary(t *testing.T) {
	ctx := context.Background()
	store := keys.NewMemoryStore()
	kr := newKeyring(t, keys.Config{Store: store})
	const scope = "patient:MRN-CANARY-0042"
	ik, err := kr.IndexKey(ctx, scope, "patients", "ssn")
	require.NoError(t, err)
	_, err = kr.EncryptionKey(ctx, scope)
	require.NoError(t, err)
	ks, err := store.Get(ctx, keys.DataKey(scope))
	require.NoError(t, err)
	wrapped := ks.Versions[0].Wrapped.Ciphertext
	mac := ik.Sum(nil, []byte("999-12-3456"))

	_, err = kr.Destroy(ctx, scope)
	require.NoError(t, err)
	_, errDestroyed := kr.DecryptionKey(ctx, scope, 1)
	errTransition := kr.SetState(ctx, keys.DataKey(scope), 1, keys.Active)
	_, errMissing := kr.DecryptionKey(ctx, "patient:MRN-CANARY-0043", 7)

	objects := []any{ik, *ik, ks, *ks, ks.Versions[0], kr}
	errs := []error{errDestroyed, errTransition, errMissing}
	for _, e := range errs {
		require.Error(t, e)
		objects = append(objects, e)
	}
	for i, obj := range objects {
		var out []string
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
			out = append(out, fmt.Sprintf(verb, obj))
		}
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "v", obj)
		out = append(out, buf.String())
		if j, err := json.Marshal(obj); err == nil {
			out = append(out, string(j))
		}
		for _, s := range out {
			assert.NotContains(t, s, string(wrapped), "object %d (%T)", i, obj)
			assert.NotContains(t, s, hex.EncodeToString(wrapped[len(wrapped)-16:]), "object %d (%T)", i, obj)
			assert.NotContains(t, s, fmt.Sprint(wrapped[len(wrapped)-16:]), "object %d (%T)", i, obj)
			assert.NotContains(t, s, hex.EncodeToString(mac), "object %d (%T)", i, obj)
		}
	}
	for _, e := range errs {
		assert.NotContains(t, e.Error(), "MRN-CANARY", "errors never name the scope")
	}
}
