package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms/local"
)

// TestInitRefusesAnotherKEK: keys init on a key store that holds keys
// checks that the KEK unwraps them, not only that it wraps and unwraps a
// probe. A mistyped --kek (with --create, a new KEK file) fails before it
// is reported working, leaves no KEK file, and creates no audit log under
// the wrong KEK, which would make every later key command with the right
// one refuse to run.
func TestInitRefusesAnotherKEK(t *testing.T) {
	vars, dir := newKeyStore(t, "--audit-log=false")
	r := runIn(t, vars, "keys", "rotate", "--create", "--scope", "tenant:a")
	require.Equal(t, exitOK, r.code, r.stderr)

	typo := filepath.Join(dir, "kek-typo.json")
	r = runIn(t, with(vars, "PHICRYPT_KEK", "local://"+typo), "keys", "init", "--create")
	assert.Equal(t, exitFailure, r.code, r.stdout)
	assert.Contains(t, r.stderr, "does not unwrap the keys this key store holds")
	assert.NotContains(t, r.stdout, "works")
	assert.NotContains(t, r.stdout, "audit log ready")
	assert.NoFileExists(t, typo, "the KEK created for the refused run is removed")

	other := filepath.Join(dir, "other.json")
	_, err := local.Create(other, local.Options{})
	require.NoError(t, err)
	for _, args := range [][]string{{"keys", "init"}, {"keys", "init", "--audit-log=false"}} {
		r = runIn(t, with(vars, "PHICRYPT_KEK", "local://"+other), args...)
		assert.Equal(t, exitFailure, r.code, "%v: %s", args, r.stdout)
		assert.Contains(t, r.stderr, "does not unwrap the keys this key store holds", args)
		assert.NotContains(t, r.stdout, "works", args)
		assert.FileExists(t, other, "a KEK that this run did not create stays")
	}

	// The store's own KEK still runs every key command, and init with it
	// creates the audit log.
	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:a")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runIn(t, vars, "keys", "init")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "audit log ready")
	r = runIn(t, vars, "keys", "rotate", "--scope", "tenant:a")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runIn(t, vars, "audit", "verify")
	require.Equal(t, exitOK, r.code, r.stderr)
}
