package main

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/kmsopen"
)

// TestKeysUnderParents: status shows which keys are wrapped under a
// parent, rotate --parent and rewrap rewrap the children locally, rewrap
// --to-parents migrates KEK-wrapped children, and shredding the tenant
// destroys its parent key and its patients' keys.
func TestKeysUnderParents(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	kekURI := "local://" + filepath.Join(dir, "kek.json")
	dbPath := filepath.Join(dir, "keys.db")
	vars := map[string]string{"PHICRYPT_KEK": kekURI, "PHICRYPT_KEYS_DSN": "sqlite:" + dbPath}
	r := runIn(t, vars, "keys", "init", "--create")
	require.Equal(t, exitOK, r.code, r.stderr)

	kek, err := kmsopen.Open(ctx, kekURI)
	require.NoError(t, err)
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	require.NoError(t, err)
	defer db.Close()
	store, err := keys.NewSQLStore(ctx, db, keys.SQLite)
	require.NoError(t, err)
	flat, err := keys.New(keys.Config{KEK: kek, Store: store})
	require.NoError(t, err)
	_, err = flat.EncryptionKey(ctx, "tenant:a/patient/old")
	require.NoError(t, err)
	kr, err := keys.New(keys.Config{KEK: kek, Store: store, Parent: keys.TenantParent})
	require.NoError(t, err)
	for i := range 3 {
		_, err := kr.EncryptionKey(ctx, fmt.Sprintf("tenant:a/patient/%d", i))
		require.NoError(t, err)
	}

	r = runIn(t, vars, "keys", "status", "--scope", "tenant:a/patient/1")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, keys.ParentWrapPrefix+"1:tenant:a")

	r = runIn(t, vars, "keys", "rewrap", "--to-parents")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "moved 1 under their parent key")

	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:a", "--parent")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "parent of tenant:a: version 2 is active")
	r = runIn(t, vars, "keys", "rewrap")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "rewrapped 4 locally under their parent key's new version")
	r = runIn(t, vars, "keys", "status", "--scope", "tenant:a/patient/old")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, keys.ParentWrapPrefix+"2:tenant:a")

	r = runIn(t, vars, "keys", "shred", "--scope", "tenant:a", "--yes")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "destroyed 6 key versions in 1 key sets of tenant:a and 4 key sets of 4 scopes under it")
	fresh, err := keys.New(keys.Config{KEK: kek, Store: store})
	require.NoError(t, err)
	_, err = fresh.DecryptionKey(ctx, "tenant:a/patient/2", 1)
	assert.ErrorIs(t, err, keys.ErrKeyDestroyed)
}
