package keys_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

// entryPoints calls every Keyring method that chooses a key, for scope.
func entryPoints(kr *keys.Keyring) map[string]func(ctx context.Context, scope string) error {
	index := func(scope string) keys.ID { return keys.ID{Scope: scope, Name: "index/patients/ssn"} }
	return map[string]func(ctx context.Context, scope string) error{
		"EncryptionKey": func(ctx context.Context, s string) error { _, err := kr.EncryptionKey(ctx, s); return err },
		"DecryptionKey": func(ctx context.Context, s string) error { _, err := kr.DecryptionKey(ctx, s, 1); return err },
		"Deterministic.EncryptionKey": func(ctx context.Context, s string) error {
			_, err := kr.Deterministic().EncryptionKey(ctx, s)
			return err
		},
		"Deterministic.DecryptionKey": func(ctx context.Context, s string) error {
			_, err := kr.Deterministic().DecryptionKey(ctx, s, 1)
			return err
		},
		"IndexKey": func(ctx context.Context, s string) error {
			_, err := kr.IndexKey(ctx, s, "patients", "ssn")
			return err
		},
		"IndexKeys": func(ctx context.Context, s string) error {
			_, err := kr.IndexKeys(ctx, s, "patients", "ssn")
			return err
		},
		"Rotate(data)": func(ctx context.Context, s string) error {
			_, err := kr.Rotate(ctx, keys.DataKey(s))
			return err
		},
		"Rotate(index)": func(ctx context.Context, s string) error { _, err := kr.Rotate(ctx, index(s)); return err },
		"Rotate(deterministic)": func(ctx context.Context, s string) error {
			_, err := kr.Rotate(ctx, keys.ID{Scope: s, Name: keys.DeterministicKeyName})
			return err
		},
		"SetState": func(ctx context.Context, s string) error {
			return kr.SetState(ctx, keys.DataKey(s), 1, keys.Compromised)
		},
		"SetMinDecryptVersion": func(ctx context.Context, s string) error {
			return kr.SetMinDecryptVersion(ctx, keys.DataKey(s), 0)
		},
		"Destroy": func(ctx context.Context, s string) error { _, err := kr.Destroy(ctx, s); return err },
		"ActiveVersion": func(ctx context.Context, s string) error {
			_, err := kr.ActiveVersion(ctx, keys.DataKey(s))
			return err
		},
	}
}

// TestEmptyScopeIsRefused checks that no key is ever chosen for the empty
// scope: Destroy refuses it, so such a key could never be shredded (and
// Destroy("") would list every scope).
func TestEmptyScopeIsRefused(t *testing.T) {
	ctx := context.Background()
	store := keys.NewMemoryStore()
	kr := newKeyring(t, keys.Config{Store: store})
	_, err := kr.EncryptionKey(ctx, "tenant:a")
	require.NoError(t, err)
	for name, call := range entryPoints(kr) {
		t.Run(name, func(t *testing.T) {
			assert.ErrorIs(t, call(ctx, ""), keys.ErrInvalidID)
		})
	}
	sets, err := kr.Status(ctx, "tenant:a")
	require.NoError(t, err)
	all, err := kr.Status(ctx, "")
	require.NoError(t, err)
	require.Len(t, all, 2, "no key set was created for the empty scope: tenant:a's and the metadata key")
	require.Len(t, sets, 1)
	assert.Equal(t, "tenant:a", sets[0].ID.Scope)
	_, err = kr.EncryptionKey(ctx, "tenant:a")
	assert.NoError(t, err, "Destroy(\"\") destroyed nothing")
}

// TestControlCharacterScopeIsRefused: no key set is created for a scope
// with a control or bidirectional formatting character, or invalid UTF-8,
// which would break or spoof the lines of keys status and the audit log.
func TestControlCharacterScopeIsRefused(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t, keys.Config{})
	entries := entryPoints(kr)
	for _, scope := range []string{"tenant:x\ny", "tenant:x\x00", "tenant:\x1b[2Jx", "tenant:x\u0085", "tenant:\u202ex", "tenant:\xffx"} {
		for _, name := range []string{"EncryptionKey", "Deterministic.EncryptionKey", "IndexKey"} {
			assert.ErrorIs(t, entries[name](ctx, scope), keys.ErrInvalidID, "%s(%q)", name, scope)
		}
		_, err := kr.Rotate(ctx, keys.DataKey(scope))
		assert.ErrorIs(t, err, keys.ErrInvalidID, "Rotate(%q)", scope)
	}
	all, err := kr.Status(ctx, "")
	require.NoError(t, err)
	assert.Empty(t, all, "no key set was created")
	_, err = kr.EncryptionKey(ctx, "tenant:zürich/patient/ß")
	assert.NoError(t, err, "printable Unicode is a scope")
}

// TestReservedScopeIsRefused checks that callers can create, use, rotate,
// retire or destroy no key under ReservedScopePrefix.
func TestReservedScopeIsRefused(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t, keys.Config{})
	for _, scope := range []string{"phicrypt:audit", "phicrypt:", "phicrypt:tenant:a"} {
		for name, call := range entryPoints(kr) {
			t.Run(scope+"/"+name, func(t *testing.T) {
				err := call(ctx, scope)
				assert.ErrorIs(t, err, keys.ErrReservedScope)
				assert.ErrorIs(t, err, keys.ErrInvalidID)
				assert.NotContains(t, err.Error(), scope, "errors do not show scopes")
			})
		}
	}
	// The audit chain key's own ID, with a lifecycle method.
	chain := keys.ID{Scope: "phicrypt:audit", Name: "chain"}
	assert.ErrorIs(t, kr.SetState(ctx, chain, 1, keys.DecryptOnly), keys.ErrReservedScope)
	_, err := kr.Rotate(ctx, chain)
	assert.ErrorIs(t, err, keys.ErrReservedScope)
	// Lookalikes are ordinary scopes.
	_, err = kr.EncryptionKey(ctx, "Phicrypt:audit")
	assert.NoError(t, err)
	_, err = kr.EncryptionKey(ctx, "tenant:phicrypt:audit")
	assert.NoError(t, err)
}

// TestKeySetNamesAreChecked: lifecycle methods take IDs, whose names must
// be ones the keyring gives out.
func TestKeySetNamesAreChecked(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t, keys.Config{})
	for _, name := range []string{"", "chain", "index/", "index/patients", "index/patients/", "index/a/b/c", "index/p/c\x00"} {
		_, err := kr.Rotate(ctx, keys.ID{Scope: "tenant:a", Name: name})
		assert.ErrorIs(t, err, keys.ErrInvalidID, "%q", name)
	}
	id, err := keys.IndexKeyID("tenant:a", "patients", "ssn")
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, id)
	assert.NoError(t, err)
}

// TestIndexKeyCacheKeyIsUnambiguous: a NUL in a column must not make the
// cached key of (scope, table, column) another scope's; a scope with a
// NUL gets no key set either (TestControlCharacterScopeIsRefused).
func TestIndexKeyCacheKeyIsUnambiguous(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t, keys.Config{})
	_, err := kr.IndexKey(ctx, "s\x00t", "p", "c")
	require.ErrorIs(t, err, keys.ErrInvalidID)
	_, err = kr.IndexKey(ctx, "t", "p", "c\x00s")
	assert.ErrorIs(t, err, keys.ErrInvalidID)
	_, err = kr.IndexKeys(ctx, "t", "p", "c\x00s")
	assert.ErrorIs(t, err, keys.ErrInvalidID)
}

// TestAuditLogCannotBeShredded: the audit log's chain key lives in a
// reserved scope. Destroy, Rotate and SetState refuse it, the log keeps
// verifying, and Rewrap still rewraps its key after a KEK rotation.
func TestAuditLogCannotBeShredded(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/kek.json"
	kek, err := local.Create(path, local.Options{KeyID: "local:audit-test"})
	require.NoError(t, err)
	db := sqliteDB(t)

	_, err = keys.OpenAuditLog(ctx, db, keys.SQLite, kek)
	require.ErrorIs(t, err, keys.ErrNoAuditLog, "OpenAuditLog creates nothing")
	log, err := keys.NewAuditLog(ctx, db, keys.SQLite, kek)
	require.NoError(t, err)
	store, err := keys.NewSQLStore(ctx, db, keys.SQLite)
	require.NoError(t, err)
	kr := newKeyring(t, keys.Config{KEK: kek, Store: store, Auditor: log})
	_, err = kr.EncryptionKey(ctx, "tenant:a")
	require.NoError(t, err)

	_, err = kr.Destroy(ctx, "phicrypt:audit")
	assert.ErrorIs(t, err, keys.ErrReservedScope)
	chain := keys.ID{Scope: "phicrypt:audit", Name: "chain"}
	assert.ErrorIs(t, kr.SetState(ctx, chain, 1, keys.DecryptOnly), keys.ErrReservedScope)
	assert.ErrorIs(t, kr.SetMinDecryptVersion(ctx, chain, 1), keys.ErrReservedScope)
	_, err = kr.Rotate(ctx, chain)
	assert.ErrorIs(t, err, keys.ErrReservedScope)
	sets, err := kr.Status(ctx, "phicrypt:audit")
	require.NoError(t, err)
	require.Len(t, sets, 1)
	vr, err := log.Verify(ctx, keys.VerifyOptions{})
	require.NoError(t, err)
	assert.Equal(t, int64(5), vr.Events, "a create and 4 refusals")
	rows, err := db.QueryContext(ctx, "SELECT event FROM phicrypt_audit ORDER BY seq")
	require.NoError(t, err)
	var refusals []string
	for rows.Next() {
		var e string
		require.NoError(t, rows.Scan(&e))
		if strings.Contains(e, `"error_class":"reserved-scope"`) {
			refusals = append(refusals, e)
		}
	}
	require.NoError(t, rows.Err())
	require.Len(t, refusals, 4, "each attempt on the audit key is on record")
	assert.Contains(t, refusals[0], `"op":"destroy","scope":"phicrypt:audit"`)
	assert.Equal(t, keys.Active, sets[0].Versions[0].State, "the chain key is untouched")

	// KEK rotation: Rewrap covers the chain key, and the log still opens
	// and verifies once the KEK's old version is gone.
	kek2, err := local.Rotate(path, local.Options{})
	require.NoError(t, err)
	kr2 := newKeyring(t, keys.Config{KEK: kek2, Store: store, Auditor: log})
	report, err := kr2.Rewrap(ctx, keys.RewrapOptions{})
	require.NoError(t, err)
	assert.Equal(t, 3, report.Rewrapped, "the data key, the metadata key and the chain key")
	reopened, err := keys.OpenAuditLog(ctx, db, keys.SQLite, kek2)
	require.NoError(t, err)
	require.NoError(t, reopened.Audit(ctx, keys.Event{Op: keys.OpKEKRotate, KEKID: "local:audit-test", Version: 2, Outcome: keys.Success}))
	vr, err = reopened.Verify(ctx, keys.VerifyOptions{})
	require.NoError(t, err)
	assert.Equal(t, int64(9), vr.Events, "and 3 rewraps and the KEK rotation")
}
