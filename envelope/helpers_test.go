package envelope_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/local"
)

// testKeyring derives the data key of (scope, version) from a seed, so that
// golden vectors can name their keys by seed. Versions 1..maxVersion exist;
// active is the version that encrypts. It counts key lookups.
type testKeyring struct {
	seed       []byte
	suite      envelope.Suite
	active     uint32
	maxVersion uint32
	lookups    atomic.Int64

	mu   sync.RWMutex
	deks map[dekID]*envelope.DEK
}

type dekID struct {
	scope   string
	version uint32
}

var _ envelope.Keyring = (*testKeyring)(nil)

func newTestKeyring(seed string, suite envelope.Suite) *testKeyring {
	return &testKeyring{seed: []byte(seed), suite: suite, active: 1, maxVersion: 3, deks: map[dekID]*envelope.DEK{}}
}

func (k *testKeyring) rawKey(scope string, version uint32) []byte {
	h := sha256.New()
	h.Write(k.seed)
	h.Write(binary.BigEndian.AppendUint32(nil, version))
	h.Write([]byte(scope))
	return h.Sum(nil)
}

func (k *testKeyring) dek(scope string, version uint32) (*envelope.DEK, error) {
	k.lookups.Add(1)
	if version == 0 || version > k.maxVersion {
		return nil, fmt.Errorf("testKeyring: version %d: %w", version, envelope.ErrKeyNotFound)
	}
	id := dekID{scope, version}
	k.mu.RLock()
	d := k.deks[id]
	k.mu.RUnlock()
	if d != nil {
		return d, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	raw := k.rawKey(scope, version)
	defer clear(raw)
	d, err := envelope.NewDEK(k.suite, version, raw)
	if err != nil {
		return nil, err
	}
	k.deks[id] = d
	return d, nil
}

func (k *testKeyring) EncryptionKey(_ context.Context, scope string) (*envelope.DEK, error) {
	return k.dek(scope, k.active)
}

func (k *testKeyring) DecryptionKey(_ context.Context, scope string, version uint32) (*envelope.DEK, error) {
	return k.dek(scope, version)
}

// newLocalKEK returns a fresh local KEK and its key file.
func newLocalKEK(t testing.TB) (*local.KEK, []byte) {
	t.Helper()
	data, err := local.Generate(local.Options{KeyID: "local:envelope-test"})
	require.NoError(t, err)
	k, err := local.New(local.Config{Data: data})
	require.NoError(t, err)
	return k, data
}

// aeadUnderTest is what Compact and SelfContained have in common.
type aeadUnderTest interface {
	Encrypt(ctx context.Context, plaintext []byte, b envelope.Binding) ([]byte, error)
	Decrypt(ctx context.Context, ciphertext []byte, b envelope.Binding) ([]byte, error)
}

// forms returns a Compact and a SelfContained in each encoding, keyed by
// name.
func forms(t testing.TB, kek kms.KEK) map[string]aeadUnderTest {
	t.Helper()
	out := map[string]aeadUnderTest{}
	for _, enc := range []envelope.Encoding{envelope.Binary, envelope.Text} {
		name := map[envelope.Encoding]string{envelope.Binary: "binary", envelope.Text: "text"}[enc]
		c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: newTestKeyring("forms", envelope.AES256GCM), Encoding: enc})
		require.NoError(t, err)
		out["compact/"+name] = c
		s, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, Encoding: enc})
		require.NoError(t, err)
		out["self-contained/"+name] = s
	}
	return out
}

var patientBinding = envelope.Binding{
	Scope:    "tenant:st-mary",
	Table:    "patients",
	Column:   "ssn",
	RecordID: "7c747494-9b3e-4a2f-8f4e-2d1f0c9a6b11",
}
