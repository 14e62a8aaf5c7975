package awskms_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/awskms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
)

func newDEK(t testing.TB) []byte {
	t.Helper()
	dek := make([]byte, 32)
	_, err := rand.Read(dek)
	require.NoError(t, err)
	return dek
}

// TestConformance runs kmstest against local-kms. Its Tamper check is
// skipped (see TestMain): local-kms does not authenticate the key ARN at
// the head of its ciphertext blobs, and its server crashes on some
// truncated blobs, where AWS KMS authenticates the whole blob.
// TestTamper checks what local-kms does authenticate.
func TestConformance(t *testing.T) {
	s := startServer(t)
	a := s.open(t, s.symmetricKey(t))
	b := s.open(t, s.symmetricKey(t))
	kmstest.Run(t, kmstest.Config{KEK: a, Other: b})
}

// local-kms's blob is the ARN's length (1 byte), the ARN, the backing key
// version (4 bytes), then the AES-GCM nonce, ciphertext and tag, with the
// encryption context as associated data.
func TestTamper(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	k := s.open(t, s.symmetricKey(t))
	dek, aad := newDEK(t), []byte("aad")
	wk, err := k.Wrap(ctx, dek, aad)
	require.NoError(t, err)
	header := 1 + int(wk.Ciphertext[0])
	require.Equal(t, k.ARN(), string(wk.Ciphertext[1:header]), "local-kms's blob format changed")

	try := func(ct []byte) ([]byte, error) {
		return k.Unwrap(ctx, kms.WrappedKey{KeyID: k.KeyID(), Ciphertext: ct}, aad)
	}
	// The version, nonce, ciphertext and tag are authenticated.
	for i := header; i < len(wk.Ciphertext); i++ {
		for _, bit := range []byte{0x01, 0x80} {
			ct := bytes.Clone(wk.Ciphertext)
			ct[i] ^= bit
			got, err := try(ct)
			assert.Nil(t, got)
			assert.ErrorIs(t, err, kms.ErrUnwrapFailed, "byte %d bit %#x", i, bit)
		}
	}
	for n := header + 4 + 12 + 1; n < len(wk.Ciphertext); n++ {
		_, err := try(bytes.Clone(wk.Ciphertext[:n]))
		assert.ErrorIs(t, err, kms.ErrUnwrapFailed, "truncated to %d", n)
	}
	// The ARN is not: local-kms decrypts with the key that Decrypt names
	// and ignores it. AWS KMS authenticates it. Should local-kms start
	// checking it, the Tamper check of TestConformance can run again.
	ct := bytes.Clone(wk.Ciphertext)
	ct[header-1] ^= 0x01
	got, err := try(ct)
	if err == nil {
		assert.Equal(t, dek, got)
		t.Log("local-kms ignores the key ARN in its ciphertext blobs when Decrypt names the key")
	}
}

// local-kms enforces the encryption context: the AAD is bound by the
// server, not by this package.
func TestEncryptionContextEnforcedByServer(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	keyARN := s.symmetricKey(t)
	k := s.open(t, keyARN)
	dek, aad := newDEK(t), []byte("tenant=st-mary;patient=42")
	wk, err := k.Wrap(ctx, dek, aad)
	require.NoError(t, err)

	decrypt := func(ec map[string]string) ([]byte, error) {
		out, err := s.admin.Decrypt(ctx, &sdk.DecryptInput{CiphertextBlob: wk.Ciphertext, KeyId: aws.String(keyARN), EncryptionContext: ec})
		if err != nil {
			return nil, err
		}
		return out.Plaintext, nil
	}
	got, err := decrypt(map[string]string{awskms.ContextKey: base64.RawURLEncoding.EncodeToString(aad)})
	require.NoError(t, err)
	assert.Equal(t, dek, got)
	for name, ec := range map[string]map[string]string{
		"none":      nil,
		"other":     {awskms.ContextKey: base64.RawURLEncoding.EncodeToString([]byte("tenant=st-mary;patient=43"))},
		"padded":    {awskms.ContextKey: base64.URLEncoding.EncodeToString(aad)},
		"other key": {"phicrypt:other": base64.RawURLEncoding.EncodeToString(aad)},
		"extra": {
			awskms.ContextKey: base64.RawURLEncoding.EncodeToString(aad),
			"x":               "y",
		},
	} {
		_, err := decrypt(ec)
		var ice *types.InvalidCiphertextException
		assert.ErrorAs(t, err, &ice, name)
	}

	// nil and empty AAD send no encryption context.
	wk, err = k.Wrap(ctx, dek, nil)
	require.NoError(t, err)
	got, err = decrypt(nil)
	require.NoError(t, err)
	assert.Equal(t, dek, got)
}

// Decrypt names the KEK's key, so a blob of another key does not unwrap,
// whatever its label.
func TestOtherKeysBlob(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	a, b := s.open(t, s.symmetricKey(t)), s.open(t, s.symmetricKey(t))
	wk, err := b.Wrap(ctx, newDEK(t), nil)
	require.NoError(t, err)
	_, err = a.Unwrap(ctx, wk, nil)
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)
	wk.KeyID = a.KeyID()
	_, err = a.Unwrap(ctx, wk, nil)
	assert.ErrorIs(t, err, kms.ErrUnwrapFailed)
}

func TestAlias(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	first, second := s.symmetricKey(t), s.symmetricKey(t)
	_, err := s.admin.CreateAlias(ctx, &sdk.CreateAliasInput{AliasName: aws.String("alias/phi"), TargetKeyId: aws.String(first)})
	require.NoError(t, err)

	k := s.open(t, "alias/phi")
	assert.Equal(t, first, k.ARN())
	assert.Equal(t, "aws-kms:"+first, k.KeyID(), "the key id names the key, not the alias")
	dek := newDEK(t)
	wk, err := k.Wrap(ctx, dek, []byte("a"))
	require.NoError(t, err)

	// Moving the alias does not change which key this KEK uses; a new KEK
	// from the alias is another key, and refuses the old wrapped keys.
	_, err = s.admin.UpdateAlias(ctx, &sdk.UpdateAliasInput{AliasName: aws.String("alias/phi"), TargetKeyId: aws.String(second)})
	require.NoError(t, err)
	got, err := k.Unwrap(ctx, wk, []byte("a"))
	require.NoError(t, err)
	assert.Equal(t, dek, got)
	moved := s.open(t, "alias/phi")
	assert.Equal(t, second, moved.ARN())
	_, err = moved.Unwrap(ctx, wk, []byte("a"))
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)

	// An alias ARN works too, and a bare key id.
	aliasARN := fmt.Sprintf("arn:aws:kms:%s:%s:alias/phi", s.Region, s.AccountID)
	assert.Equal(t, second, s.open(t, aliasARN).ARN())
	out, err := s.admin.DescribeKey(ctx, &sdk.DescribeKeyInput{KeyId: aws.String(first)})
	require.NoError(t, err)
	assert.Equal(t, first, s.open(t, *out.KeyMetadata.KeyId).ARN())
}

func TestKeyStates(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()

	_, err := awskms.New(ctx, s.config(fmt.Sprintf("arn:aws:kms:%s:%s:key/00000000-0000-0000-0000-000000000000", s.Region, s.AccountID)))
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)
	_, err = awskms.New(ctx, s.config("alias/none"))
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)

	key := s.symmetricKey(t)
	k := s.open(t, key)
	wk, err := k.Wrap(ctx, newDEK(t), nil)
	require.NoError(t, err)

	_, err = s.admin.DisableKey(ctx, &sdk.DisableKeyInput{KeyId: aws.String(key)})
	require.NoError(t, err)
	_, err = k.Wrap(ctx, newDEK(t), nil)
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)
	var se *awskms.ServiceError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "DisabledException", se.Code)
	var de *types.DisabledException
	assert.ErrorAs(t, err, &de, "the SDK's error type is reachable")
	_, err = k.Unwrap(ctx, wk, nil)
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)
	_, err = awskms.New(ctx, s.config(key))
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)

	_, err = s.admin.EnableKey(ctx, &sdk.EnableKeyInput{KeyId: aws.String(key)})
	require.NoError(t, err)
	_, err = k.Unwrap(ctx, wk, nil)
	require.NoError(t, err)

	_, err = s.admin.ScheduleKeyDeletion(ctx, &sdk.ScheduleKeyDeletionInput{KeyId: aws.String(key), PendingWindowInDays: aws.Int32(7)})
	require.NoError(t, err)
	_, err = k.Unwrap(ctx, wk, nil)
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)
	assert.False(t, kms.IsTransient(err))
}

// Keys that cannot bind an encryption context are refused by New.
func TestUnsupportedKeys(t *testing.T) {
	s := startServer(t)
	for name, key := range map[string]string{
		"RSA encryption": s.createKey(t, types.KeySpecRsa2048, types.KeyUsageTypeEncryptDecrypt),
		"ECC signing":    s.createKey(t, types.KeySpecEccNistP256, types.KeyUsageTypeSignVerify),
	} {
		_, err := awskms.New(context.Background(), s.config(key))
		assert.ErrorIs(t, err, kms.ErrInvalidInput, name)
	}
}

func TestGenerateDataKey(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	k := s.open(t, s.symmetricKey(t))
	for _, size := range []int{kms.MinDataKeySize, 32, kms.MaxDataKeySize} {
		aad := []byte("scope=patient:1")
		dek, wk, err := k.GenerateDataKey(ctx, size, aad)
		require.NoError(t, err)
		assert.Len(t, dek, size)
		got, err := k.Unwrap(ctx, wk, aad)
		require.NoError(t, err)
		assert.Equal(t, dek, got)
		_, err = k.Unwrap(ctx, wk, nil)
		assert.ErrorIs(t, err, kms.ErrUnwrapFailed)
	}
	for _, size := range []int{0, kms.MinDataKeySize - 1, kms.MaxDataKeySize + 1} {
		_, _, err := k.GenerateDataKey(ctx, size, nil)
		assert.ErrorIs(t, err, kms.ErrInvalidInput)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err := k.GenerateDataKey(cctx, 32, nil)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestConfig(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	key := s.symmetricKey(t)

	// The region comes from the ARN; an override key id is used as is.
	t.Setenv("AWS_REGION", "")
	cfg := s.config(key)
	cfg.Region = ""
	cfg.KeyID = "aws-kms:hospital-main"
	k, err := awskms.New(ctx, cfg)
	require.NoError(t, err)
	assert.Equal(t, "aws-kms:hospital-main", k.KeyID())
	wk, err := k.Wrap(ctx, newDEK(t), nil)
	require.NoError(t, err)
	assert.Equal(t, "aws-kms:hospital-main", wk.KeyID)

	// An alias names no region: without one, New refuses.
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_DEFAULT_REGION", "")
	cfg = s.config("alias/phi")
	cfg.Region = ""
	_, err = awskms.New(ctx, cfg)
	assert.ErrorIs(t, err, kms.ErrInvalidInput)

	for name, cfg := range map[string]awskms.Config{
		"no key":     {Endpoint: s.Endpoint, Credentials: dummy},
		"bad key id": {Key: key, KeyID: "no scheme", Endpoint: s.Endpoint, Credentials: dummy},
	} {
		_, err := awskms.New(ctx, cfg)
		assert.ErrorIs(t, err, kms.ErrInvalidInput, name)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = awskms.New(cctx, s.config(key))
	assert.ErrorIs(t, err, context.Canceled)
}

func TestNoSecretsInOutput(t *testing.T) {
	cfg := awskms.Config{Key: "alias/phi", Region: "eu-west-1", Credentials: dummy}
	creds, err := dummy.Retrieve(context.Background())
	require.NoError(t, err)
	var logged bytes.Buffer
	logConfig(&logged, cfg)
	type wrapper struct{ C awskms.Config }
	for _, out := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%+v", wrapper{cfg}), logged.String()} {
		assert.NotContains(t, out, creds.SecretAccessKey)
		assert.NotContains(t, out, creds.AccessKeyID)
		assert.Contains(t, out, "alias/phi")
	}
}

// countingCredentials is an application's credential chain (an
// assume-role provider, say), which counts the times it is asked.
type countingCredentials struct{ n atomic.Int32 }

func (c *countingCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c.n.Add(1)
	return dummy.Retrieve(ctx)
}

// The application's aws.Config or *kms.Client is used, with its
// credential chain, instead of the SDK's default configuration.
func TestBringYourOwnConfigOrClient(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	key := s.symmetricKey(t)
	// No default configuration to fall back on.
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")

	t.Run("aws.Config", func(t *testing.T) {
		creds := &countingCredentials{}
		appCfg := aws.Config{Region: s.Region, Credentials: aws.NewCredentialsCache(creds)}
		k, err := awskms.New(ctx, awskms.Config{Key: "alias/none-yet", AWSConfig: &appCfg, Endpoint: s.Endpoint})
		require.ErrorIs(t, err, kms.ErrKeyNotFound, "the alias does not exist: KMS was asked with the application's configuration")
		assert.Nil(t, k)
		assert.Positive(t, creds.n.Load(), "the application's credential chain signed the request")

		k, err = awskms.New(ctx, awskms.Config{Key: key, AWSConfig: &appCfg, Endpoint: s.Endpoint})
		require.NoError(t, err)
		wk, err := k.Wrap(ctx, newDEK(t), []byte("aad"))
		require.NoError(t, err)
		_, err = k.Unwrap(ctx, wk, []byte("aad"))
		assert.NoError(t, err)
		assert.Nil(t, appCfg.Retryer, "New works on a copy of the application's configuration")
	})

	t.Run("kms.Client", func(t *testing.T) {
		creds := &countingCredentials{}
		client := sdk.New(sdk.Options{
			Region:       s.Region,
			BaseEndpoint: aws.String(s.Endpoint),
			Credentials:  creds,
			Retryer:      aws.NopRetryer{},
		})
		k, err := awskms.New(ctx, awskms.Config{Key: key, Client: client})
		require.NoError(t, err)
		before := creds.n.Load()
		wk, err := k.Wrap(ctx, newDEK(t), nil)
		require.NoError(t, err)
		_, err = k.Unwrap(ctx, wk, nil)
		assert.NoError(t, err)
		assert.Greater(t, creds.n.Load(), before, "calls go through the given client")

		for name, cfg := range map[string]awskms.Config{
			"region":     {Key: key, Client: client, Region: "eu-west-1"},
			"endpoint":   {Key: key, Client: client, Endpoint: s.Endpoint},
			"aws.Config": {Key: key, Client: client, AWSConfig: &aws.Config{}},
			"no region":  {Key: key, Client: sdk.New(sdk.Options{Credentials: creds})},
		} {
			_, err := awskms.New(ctx, cfg)
			assert.ErrorIs(t, err, kms.ErrInvalidInput, name)
		}
	})
}
