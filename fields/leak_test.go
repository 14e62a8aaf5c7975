package fields_test

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

	"github.com/phicrypt/phicrypt/fields"
)

// TestLeakCanary formats every type of the package, sealed and unsealed,
// and every error it returns, every way a program might log them: neither
// the plaintext, nor a ciphertext, nor an index value may show.
func TestLeakCanary(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	const canary = "999-77-CANARY"
	p := loadCSV(t)[0]
	p.SSN = fields.New(canary)
	p.Last = fields.New("CanaryLastName")
	unsealed := *p
	require.NoError(t, c.Seal(ctx, p))
	ct, err := p.SSN.Value()
	require.NoError(t, err)
	idx, err := p.SSNIndex.Value()
	require.NoError(t, err)

	moved := load(t, p.ID, "tenant:2", store(t, p))
	errDecrypt := c.Open(ctx, moved)
	require.Error(t, errDecrypt)
	strict := &Patient{ID: "x", TenantID: "t"}
	require.NoError(t, strict.SSN.Scan(canary))
	errPlain := c.Open(ctx, strict)
	require.Error(t, errPlain)
	_, errValue := unsealed.SSN.Value()

	secrets := []string{canary, "CanaryLastName", ct.(string)[len("phicrypt:"):], hex.EncodeToString(idx.([]byte)), fmt.Sprint(idx)}
	objects := []any{p.SSN, &p.SSN, unsealed.SSN, p.SSNIndex, &p.SSNIndex, p, unsealed, c, errDecrypt, errPlain, errValue}
	for i, obj := range objects {
		var out []string
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
			out = append(out, fmt.Sprintf(verb, obj))
		}
		var buf bytes.Buffer
		// Without the time, whose digits could hold a hex index by chance.
		noTime := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}
		slog.New(slog.NewJSONHandler(&buf, noTime)).Info("m", "v", obj)
		slog.New(slog.NewTextHandler(&buf, noTime)).Info("m", "v", obj)
		out = append(out, buf.String())
		for _, s := range out {
			for _, secret := range secrets {
				assert.NotContains(t, s, secret, "object %d (%T)", i, obj)
			}
		}
	}
	for i, obj := range objects {
		j, err := json.Marshal(obj)
		if err != nil {
			continue
		}
		for _, secret := range secrets {
			assert.NotContains(t, string(j), secret, "object %d (%T) as JSON", i, obj)
		}
	}
}
