package kmsopen_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmsopen"
	"github.com/phicrypt/phicrypt/kms/local"
)

func TestOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kek.json")
	_, err := local.Create(path, local.Options{KeyID: "local:kmsopen"})
	require.NoError(t, err)
	kek, err := kmsopen.Open(ctx, "local://"+path)
	require.NoError(t, err)
	assert.Equal(t, "local:kmsopen", kek.(kms.Identifier).KeyID())
	_, bare := kek.(*local.KEK)
	assert.False(t, bare, "Open puts the backend behind kms.Resilient")
	raw, err := kms.Open(ctx, "local://"+path, kmsopen.Openers())
	require.NoError(t, err)
	assert.IsType(t, &local.KEK{}, raw, "kms.Open with Openers returns the backend alone")

	for _, scheme := range []string{"local", "vault", "aws-kms", "gcp-kms"} {
		assert.Contains(t, kmsopen.Openers(), scheme)
	}
	_, err = kmsopen.Open(ctx, "nope://x")
	assert.ErrorIs(t, err, kms.ErrInvalidInput)
}
