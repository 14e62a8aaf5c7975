package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms/local"
)

func TestQuickstart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys", "kek.json")

	var first bytes.Buffer
	require.NoError(t, run(ctx, &first, path))
	out := first.String()
	assert.Contains(t, out, "created local KEK local:quickstart")
	assert.Contains(t, out, "KMS calls to encrypt 13 fields: 1")
	assert.Contains(t, out, "KMS calls in all: 2")
	assert.Contains(t, out, "moved to another patient's row: envelope: message authentication failed")

	// The stored section shows ciphertexts only, no PHI.
	storedPart := out[strings.Index(out, "as stored"):strings.Index(out, "decrypted back")]
	for _, phi := range []string{"999-32-6219", "Ignacio928", "Gottlieb798", "1993-05-10", "182 Stanton Neck", "S99914757", "X51719676X"} {
		assert.NotContains(t, storedPart, phi)
		assert.Contains(t, out[strings.Index(out, "decrypted back"):], phi)
	}

	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	var second bytes.Buffer
	require.NoError(t, run(ctx, &second, path))
	assert.Contains(t, second.String(), "using local KEK local:quickstart")
}

func TestQuickstartRefusesOpenKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek.json")
	require.NoError(t, run(context.Background(), &bytes.Buffer{}, path))
	require.NoError(t, os.Chmod(path, 0o644))
	err := run(context.Background(), &bytes.Buffer{}, path)
	assert.ErrorIs(t, err, local.ErrInsecurePermissions)
}
