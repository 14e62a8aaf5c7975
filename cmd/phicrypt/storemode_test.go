package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNewKeyStoreIsOwnerOnly: keys init creates the SQLite key store
// readable by its owner only, as the KEK file: it
// holds the wrapped keys and the audit log, whose scopes name patients.
func TestNewKeyStoreIsOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.db")
	vars := map[string]string{"PHICRYPT_KEK": "local://" + filepath.Join(dir, "kek.json"), "PHICRYPT_KEYS_DSN": "sqlite:" + path}
	r := runIn(t, vars, "keys", "init", "--create")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:a", "--create")
	require.Equal(t, exitOK, r.code, r.stderr)
	// (SQLite gives its -wal and -shm files the database's mode; they
	// are gone once the command has closed the database.)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}
