package gcpkms_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/gcpkms"
)

var openers = map[string]kms.Opener{gcpkms.Scheme: gcpkms.Open}

func TestOpen(t *testing.T) {
	f, _ := startFake(t)
	ctx := context.Background()
	key := f.createKey(t)
	addr := f.addr
	for _, uri := range []string{
		"gcp-kms://" + key + "?endpoint=" + addr,
		"gcp-kms:" + key + "?endpoint=" + addr + "&timeout=5s",
		"gcp-kms:///" + key + "?endpoint=" + addr,
	} {
		kek, err := kms.Open(ctx, uri, openers)
		require.NoError(t, err, uri)
		k := kek.(*gcpkms.KEK)
		assert.Equal(t, "gcp-kms:"+key, k.KeyID())
		// Open uses TLS and Application Default Credentials: the fake
		// speaks plain gRPC, so the handshake fails.
		_, err = k.Wrap(ctx, newDEK(t), nil)
		assert.ErrorIs(t, err, kms.ErrUnavailable)
		require.NoError(t, k.Close())
	}
	kek, err := kms.Open(ctx, "gcp-kms:"+key+"?key-id=gcp-kms:main&endpoint="+addr, openers)
	require.NoError(t, err)
	assert.Equal(t, "gcp-kms:main", kek.(kms.Identifier).KeyID())
	require.NoError(t, kek.(*gcpkms.KEK).Close())
}

func TestOpenInvalidURIs(t *testing.T) {
	ctx := context.Background()
	const key = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
	for _, uri := range []string{
		"gcp-kms:",
		"gcp-kms://projects/p",
		"gcp-kms://" + key + "/cryptoKeyVersions/1",
		"gcp-kms://" + key + "?unknown=1",
		"gcp-kms://" + key + "?timeout=soon",
		"gcp-kms://" + key + "?timeout=-1s",
		"gcp-kms://" + key + "?endpoint=a&endpoint=b",
		"gcp-kms://" + key + "?key-id=bad",
		"gcp-kms://user:secret@" + key,
	} {
		_, err := kms.Open(ctx, uri, openers)
		assert.ErrorIs(t, err, kms.ErrInvalidInput, uri)
		if err != nil {
			assert.NotContains(t, err.Error(), "secret")
		}
	}
}
