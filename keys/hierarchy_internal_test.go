package keys

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/local"
)

// TestParentWrapAADBindsIdentity checks that the AAD of a key wrapped
// under a parent names the child's scope, name, version and suite and the
// parent's scope and version unambiguously, and never equals a KEK
// wrapping's.
func TestParentWrapAADBindsIdentity(t *testing.T) {
	id := ID{Scope: "tenant:a/patient/1", Name: "data"}
	base := parentWrapAAD(id, 1, envelope.AES256GCM, "tenant:a", 1)
	for name, other := range map[string][]byte{
		"scope":          parentWrapAAD(ID{Scope: "tenant:a/patient/2", Name: "data"}, 1, envelope.AES256GCM, "tenant:a", 1),
		"name":           parentWrapAAD(ID{Scope: id.Scope, Name: "deterministic"}, 1, envelope.AES256GCM, "tenant:a", 1),
		"version":        parentWrapAAD(id, 2, envelope.AES256GCM, "tenant:a", 1),
		"suite":          parentWrapAAD(id, 1, envelope.XChaCha20Poly1305, "tenant:a", 1),
		"parent":         parentWrapAAD(id, 1, envelope.AES256GCM, "tenant:b", 1),
		"parent version": parentWrapAAD(id, 1, envelope.AES256GCM, "tenant:a", 2),
		"kek":            wrapAAD(id, 1, envelope.AES256GCM),
	} {
		assert.NotEqual(t, base, other, name)
	}
}

// TestParentWrappedKeyMoved: a child key wrapped under a parent does not
// unwrap as another child's, under another name, version or suite, or
// relabelled to another tenant's parent key.
func TestParentWrappedKeyMoved(t *testing.T) {
	ctx := context.Background()
	kek, err := local.Create(filepath.Join(t.TempDir(), "kek.json"), local.Options{KeyID: "local:hier"})
	require.NoError(t, err)
	k, err := New(Config{KEK: kek, Store: NewMemoryStore(), Parent: TenantParent})
	require.NoError(t, err)
	for _, scope := range []string{"tenant:a/patient/1", "tenant:a/patient/2", "tenant:b/patient/1"} {
		_, err := k.EncryptionKey(ctx, scope)
		require.NoError(t, err)
	}
	ks, err := k.cfg.Store.Get(ctx, DataKey("tenant:a/patient/1"))
	require.NoError(t, err)
	rec := ks.Versions[0]
	require.Equal(t, ParentWrapPrefix+"1:tenant:a", rec.Wrapped.KeyID)
	require.Len(t, rec.Wrapped.Ciphertext, 60)

	raw, err := k.unwrapKey(ctx, ks.ID, &rec)
	require.NoError(t, err, "the key opens where it belongs")
	assert.Len(t, raw, 32)

	moved := func(name string, id ID, r Record) {
		_, err := k.unwrapKey(ctx, id, &r)
		assert.ErrorIs(t, err, kms.ErrUnwrapFailed, name)
	}
	moved("other patient", DataKey("tenant:a/patient/2"), rec)
	moved("other name", ID{Scope: "tenant:a/patient/1", Name: DeterministicKeyName}, rec)
	r := rec
	r.Version = 2
	moved("other version", ks.ID, r)
	r = rec
	r.Suite = envelope.XChaCha20Poly1305
	moved("other suite", ks.ID, r)
	r = rec
	r.Wrapped.KeyID = ParentWrapPrefix + "1:tenant:b"
	moved("other tenant's parent", DataKey("tenant:b/patient/1"), r)
	moved("other tenant's parent, same scope", ks.ID, r)

	r = rec
	r.Wrapped.KeyID = ParentWrapPrefix + "x:tenant:a"
	_, err = k.unwrapKey(ctx, ks.ID, &r)
	assert.ErrorIs(t, err, ErrMetadataTampered, "a malformed parent reference")
	r.Wrapped.KeyID = ParentWrapPrefix + "7:tenant:a"
	_, err = k.unwrapKey(ctx, ks.ID, &r)
	assert.ErrorIs(t, err, ErrKeyNotFound, "an unknown parent version")
}
