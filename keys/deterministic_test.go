package keys_test

import (
	"context"
	"crypto/fips140"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/internal/bubble"
	"github.com/phicrypt/phicrypt/keys"
)

// TestDeterministicKeysDoNotRotateByThemselves: past MaxKeyAge and past
// the message budget, the randomized data key rotates and the
// deterministic (AES-SIV) key does not, so an equal value still encrypts
// to the ciphertext already stored, and lookups and unique constraints
// keep working. Rotate still rotates it on demand.
func TestDeterministicKeysDoNotRotateByThemselves(t *testing.T) {
	if fips140.Enabled() {
		t.Skip("AES-SIV is not FIPS 140-3 approved")
	}
	triggers := map[string]struct {
		cfg  keys.Config
		pass func()
	}{
		"MaxKeyAge": {
			cfg:  keys.Config{MaxKeyAge: time.Hour, CacheMaxAge: time.Minute},
			pass: func() { advance(2 * time.Hour) },
		},
		"message budget": {
			cfg:  keys.Config{MaxMessages: 3, ReserveBlock: 1},
			pass: func() {},
		},
	}
	for name, tc := range triggers {
		t.Run(name, func(t *testing.T) {
			bubble.Test(t, func(t *testing.T) {
				ctx := context.Background()
				cfg := tc.cfg
				kr := newKeyring(t, cfg)
				det, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr.Deterministic()})
				require.NoError(t, err)
				rnd := compact(t, kr)
				b := envelope.Binding{Scope: "tenant:a", Table: "patients", Column: "email"}

				stored, err := det.Encrypt(ctx, []byte("lemuel@example.org"), b)
				require.NoError(t, err)
				for i := 0; i < 10; i++ {
					tc.pass()
					got, err := det.Encrypt(ctx, []byte("lemuel@example.org"), b)
					require.NoError(t, err)
					assert.Equal(t, stored, got, "the lookup value matches the stored row")
					_, err = rnd.Encrypt(ctx, []byte("x"), b)
					require.NoError(t, err)
				}
				v, err := kr.ActiveVersion(ctx, keys.ID{Scope: "tenant:a", Name: keys.DeterministicKeyName})
				require.NoError(t, err)
				assert.Equal(t, uint32(1), v, "the deterministic key did not rotate")
				v, err = kr.ActiveVersion(ctx, keys.DataKey("tenant:a"))
				require.NoError(t, err)
				assert.Greater(t, v, uint32(1), "the randomized data key did, under the same settings")

				// On demand, it rotates: the new ciphertext differs, the old
				// one still decrypts.
				_, err = kr.Rotate(ctx, keys.ID{Scope: "tenant:a", Name: keys.DeterministicKeyName})
				require.NoError(t, err)
				got, err := det.Encrypt(ctx, []byte("lemuel@example.org"), b)
				require.NoError(t, err)
				assert.NotEqual(t, stored, got)
				pt, err := det.Decrypt(ctx, stored, b)
				require.NoError(t, err)
				assert.Equal(t, "lemuel@example.org", string(pt))
			})
		})
	}
}
