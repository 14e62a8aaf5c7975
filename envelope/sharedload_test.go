package envelope_test

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/local"
)

// gatedKEK holds every Unwrap until release is closed.
type gatedKEK struct {
	*local.KEK
	release chan struct{}
}

func (g *gatedKEK) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	<-g.release
	return g.KEK.Unwrap(ctx, wk, aad)
}

// TestForgedCopyDoesNotFailTheGenuineValue opens a forged copy of a
// self-contained value (same wrapped key, another scope or KEK id) and,
// while its unwrap is in flight, the genuine value: concurrent readers
// share one unwrap only when it is the same KEK call, so the forgery's
// failure is its own. Keyed by the wrapped bytes alone, the cache handed
// the forgery's failure to the genuine value's reader.
func TestForgedCopyDoesNotFailTheGenuineValue(t *testing.T) {
	for name, forge := range map[string]func(ct []byte, b *envelope.Binding) []byte{
		"other scope": func(ct []byte, b *envelope.Binding) []byte { b.Scope = "tenant:attacker"; return ct },
		"other KEK id": func(ct []byte, b *envelope.Binding) []byte {
			v := append([]byte{}, ct...)
			v[6] ^= 0x20 // "local:…" becomes "Local:…", a KEK id no one has
			return v
		},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				kek, _ := newLocalKEK(t)
				writer, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek})
				require.NoError(t, err)
				ct, err := writer.Encrypt(ctx, []byte("999-12-3456"), patientBinding)
				require.NoError(t, err)
				g := &gatedKEK{KEK: kek, release: make(chan struct{})}
				reader, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: g})
				require.NoError(t, err)

				b := patientBinding
				forged := forge(ct, &b)
				forgery := make(chan error, 1)
				go func() { _, err := reader.Decrypt(ctx, forged, b); forgery <- err }()
				synctest.Wait() // the forgery's unwrap is in flight
				genuine := make(chan []byte, 1)
				go func() {
					pt, err := reader.Decrypt(ctx, ct, patientBinding)
					assert.NoError(t, err, "the genuine value with its own Binding")
					genuine <- pt
				}()
				synctest.Wait()
				close(g.release)

				assert.Error(t, <-forgery, "the forged copy opened")
				assert.Equal(t, "999-12-3456", string(<-genuine))
			})
		})
	}
}
