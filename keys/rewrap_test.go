package keys_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
	"github.com/phicrypt/phicrypt/kms/local"
)

// localKEKVersion reads the KEK version from a local wrapped key (format
// byte, then the version).
func localKEKVersion(wk kms.WrappedKey) uint32 { return binary.BigEndian.Uint32(wk.Ciphertext[1:5]) }

// populate creates n scopes with a data key and an index key each, and
// returns ciphertexts to check afterwards.
func populate(t *testing.T, kr *keys.Keyring, n int) map[string][]byte {
	ctx := context.Background()
	c := compact(t, kr)
	cts := map[string][]byte{}
	for i := 0; i < n; i++ {
		scope := fmt.Sprintf("patient:%04d", i)
		ct, err := c.Encrypt(ctx, []byte(scope), binding(scope, "r"))
		require.NoError(t, err)
		cts[scope] = ct
		_, err = kr.IndexKey(ctx, scope, "patients", "ssn")
		require.NoError(t, err)
	}
	return cts
}

func TestRewrapAfterKEKRotation(t *testing.T) {
	for name, newStore := range stores() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			_, path := newKEK(t)
			v1, err := local.New(local.Config{Path: path})
			require.NoError(t, err)
			store := newStore(t)
			cts := populate(t, newKeyring(t, keys.Config{KEK: v1, Store: store}), 30)
			_, err = newKeyring(t, keys.Config{KEK: v1, Store: store}).Destroy(ctx, "patient:0007")
			require.NoError(t, err)

			v2, err := local.Rotate(path, local.Options{})
			require.NoError(t, err)
			kek := kmstest.Instrument(v2)
			rec := &recorder{}
			kr := newKeyring(t, keys.Config{KEK: kek, Store: store, Auditor: rec})
			var progress []keys.RewrapReport
			report, err := kr.Rewrap(ctx, keys.RewrapOptions{BatchSize: 7, Progress: func(r keys.RewrapReport) { progress = append(progress, r) }})
			require.NoError(t, err)
			assert.Equal(t, 59, report.Rewrapped, "29 live scopes, 2 keys each, and the metadata key")
			assert.Equal(t, 2, report.Skipped, "the destroyed scope's keys")
			assert.Zero(t, report.Failed)
			assert.NotEmpty(t, progress)
			assert.Equal(t, 59, rec.count(keys.OpRewrap))

			sets, err := kr.Status(ctx, "")
			require.NoError(t, err)
			for _, ks := range sets {
				for _, r := range ks.Versions {
					if r.State != keys.Destroyed {
						assert.Equal(t, uint32(2), localKEKVersion(r.Wrapped), "every key is under the new KEK version")
					}
				}
			}
			// No data was touched: the old ciphertexts decrypt with a
			// keyring that only has the rotated KEK.
			c := compact(t, kr)
			for scope, ct := range cts {
				if scope == "patient:0007" {
					continue
				}
				pt, err := c.Decrypt(ctx, ct, binding(scope, "r"))
				require.NoError(t, err)
				assert.Equal(t, scope, string(pt))
			}
			// A second run finds nothing to do.
			again, err := kr.Rewrap(ctx, keys.RewrapOptions{WrappedBefore: report.Started})
			require.NoError(t, err)
			assert.Zero(t, again.Rewrapped)
		})
	}
}

// TestRewrapResumes kills a rewrap halfway with a KEK that fails after N
// calls, then resumes it: every key ends up rewrapped exactly once.
func TestRewrapResumes(t *testing.T) {
	ctx := context.Background()
	_, path := newKEK(t)
	v1, err := local.New(local.Config{Path: path})
	require.NoError(t, err)
	store := keys.NewMemoryStore()
	populate(t, newKeyring(t, keys.Config{KEK: v1, Store: store}), 25) // 50 keys
	v2, err := local.Rotate(path, local.Options{})
	require.NoError(t, err)

	kek := kmstest.Instrument(v2)
	kek.FailAfter(41) // 20 keys and a half: unwrap+wrap per key
	kr := newKeyring(t, keys.Config{KEK: kek, Store: store})
	first, err := kr.Rewrap(ctx, keys.RewrapOptions{BatchSize: 8})
	require.ErrorIs(t, err, kms.ErrUnavailable)
	assert.Equal(t, 20, first.Rewrapped)

	kek.FailAfter(-1)
	second, err := kr.Rewrap(ctx, keys.RewrapOptions{WrappedBefore: first.Started, BatchSize: 8})
	require.NoError(t, err)
	assert.Equal(t, 31, second.Rewrapped, "the resumed run does the rest (with the metadata key), and only the rest")

	sets, err := kr.Status(ctx, "")
	require.NoError(t, err)
	for _, ks := range sets {
		for _, r := range ks.Versions {
			assert.Equal(t, uint32(2), localKEKVersion(r.Wrapped))
		}
	}
}

// batchKEK is a local KEK with a batch Rewrap, to check that Rewrap uses
// the capability when a KEK offers it.
type batchKEK struct {
	*local.KEK
	calls int
	// fail is the index, counted over every call, of the one key whose
	// rewrap fails (as a KMS refuses a corrupted key); -1 for none.
	fail, seen int
}

func (b *batchKEK) Rewrap(ctx context.Context, wks []kms.WrappedKey, aads [][]byte) ([]kms.RewrapResult, error) {
	b.calls++
	out := make([]kms.RewrapResult, len(wks))
	for i := range wks {
		b.seen++
		if b.seen-1 == b.fail {
			out[i].Err = kms.ErrUnwrapFailed
			continue
		}
		raw, err := b.Unwrap(ctx, wks[i], aads[i])
		if err != nil {
			out[i].Err = err
			continue
		}
		out[i].Key, out[i].Err = b.Wrap(ctx, raw, aads[i])
	}
	return out, nil
}

func TestRewrapUsesBatchRewrapper(t *testing.T) {
	ctx := context.Background()
	_, path := newKEK(t)
	v1, err := local.New(local.Config{Path: path})
	require.NoError(t, err)
	store := keys.NewMemoryStore()
	populate(t, newKeyring(t, keys.Config{KEK: v1, Store: store}), 10)
	v2, err := local.Rotate(path, local.Options{})
	require.NoError(t, err)
	b := &batchKEK{KEK: v2, fail: 3} // one key fails: the others go on
	report, err := newKeyring(t, keys.Config{KEK: b, Store: store}).Rewrap(ctx, keys.RewrapOptions{BatchSize: 5})
	require.NoError(t, err)
	assert.Equal(t, 5, b.calls, "20 keys and the metadata key in batches of 5")
	assert.Equal(t, 20, report.Rewrapped)
	assert.Equal(t, 1, report.Failed)
}
