package awskms_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/awskms"
)

var openers = map[string]kms.Opener{awskms.Scheme: awskms.Open}

func TestOpen(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	key := s.symmetricKey(t)
	_, err := s.admin.CreateAlias(ctx, &sdk.CreateAliasInput{AliasName: aws.String("alias/phi"), TargetKeyId: aws.String(key)})
	require.NoError(t, err)
	out, err := s.admin.DescribeKey(ctx, &sdk.DescribeKeyInput{KeyId: aws.String(key)})
	require.NoError(t, err)

	// Credentials from the environment, as the SDK reads them.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	q := "endpoint=" + s.Endpoint
	for _, uri := range []string{
		"aws-kms:" + key + "?" + q,
		"aws-kms:///" + key + "?" + q,
		"aws-kms:alias/phi?region=" + s.Region + "&" + q,
		"aws-kms://alias/phi?region=" + s.Region + "&" + q,
		"aws-kms://" + *out.KeyMetadata.KeyId + "?region=" + s.Region + "&" + q,
	} {
		kek, err := kms.Open(ctx, uri, openers)
		require.NoError(t, err, uri)
		k := kek.(*awskms.KEK)
		assert.Equal(t, "aws-kms:"+key, k.KeyID(), uri)
		_, err = k.Wrap(ctx, newDEK(t), nil)
		assert.NoError(t, err, uri)
	}
	kek, err := kms.Open(ctx, "aws-kms:"+key+"?key-id=aws-kms:main&"+q, openers)
	require.NoError(t, err)
	assert.Equal(t, "aws-kms:main", kek.(kms.Identifier).KeyID())

	// The key id is a valid URI that opens the key.
	kek, err = kms.Open(ctx, "aws-kms:"+key+"?"+q, openers)
	require.NoError(t, err)
	keyID := kek.(*awskms.KEK).KeyID()
	kek, err = kms.Open(ctx, keyID+"?"+q, openers)
	require.NoError(t, err)
	assert.Equal(t, keyID, kek.(kms.Identifier).KeyID())
}

func TestOpenInvalidURIs(t *testing.T) {
	ctx := context.Background()
	for _, uri := range []string{
		"aws-kms:",
		"aws-kms://",
		"aws-kms:alias/phi?unknown=1",
		"aws-kms:alias/phi?region=a&region=b",
		"aws-kms:alias/phi?fips=maybe",
		"aws-kms:alias/phi?endpoint=http://kms.example.org",
		"aws-kms:alias/phi?endpoint=http://127.evil.example.org",
		"aws-kms:alias/phi?endpoint=ftp://127.0.0.1",
		"aws-kms:alias/phi?endpoint=https://user:pass@kms.example.org",
		"aws-kms:alias/phi?region=eu-west-1&key-id=bad",
		// An ARN after "//" is not a valid URL: its colons read as a port.
		"aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
	} {
		_, err := kms.Open(ctx, uri, openers)
		assert.ErrorIs(t, err, kms.ErrInvalidInput, uri)
	}
	_, err := kms.Open(ctx, "aws-kms://AKIAIOSFODNN7EXAMPLE:secret@alias/phi", openers)
	assert.ErrorIs(t, err, kms.ErrInvalidInput)
	assert.NotContains(t, fmt.Sprint(err), "secret")
}
