package kms_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
)

func TestValidateKeyID(t *testing.T) {
	for _, ok := range []string{"local:main", "vault:transit/phi", "aws-kms:arn:aws:kms:eu-west-1:111122223333:key/1234", "gcp-kms:projects/p/locations/l/keyRings/r/cryptoKeys/k", "pkcs11:token=hsm;object=kek", "a+b.c-1:x"} {
		assert.NoError(t, kms.ValidateKeyID(ok), ok)
	}
	for _, bad := range []string{"", "ab", "nocolon", ":x", "x:", "1ocal:x", "Local:x", "loc al:x", "local:a b", "local:\x00", "local:é", "local:" + strings.Repeat("x", kms.MaxKeyIDSize)} {
		assert.ErrorIs(t, kms.ValidateKeyID(bad), kms.ErrInvalidInput, "%q", bad)
	}
}

func TestError(t *testing.T) {
	cause := errors.New("connection refused")
	err := error(&kms.Error{Op: "wrap", KeyID: "vault:transit/phi", Kind: kms.ErrUnavailable, Err: cause})
	assert.Equal(t, "kms: wrap vault:transit/phi: unavailable: connection refused", err.Error())
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.ErrorIs(t, err, cause)
	assert.True(t, kms.IsTransient(err))
	assert.True(t, kms.IsTransient(fmt.Errorf("wrapped: %w", err)))

	assert.Equal(t, "kms: unwrap: unwrap failed", (&kms.Error{Op: "unwrap", Kind: kms.ErrUnwrapFailed}).Error())
	assert.False(t, kms.IsTransient(&kms.Error{Op: "unwrap", Kind: kms.ErrPermissionDenied}))
}

func TestNewErrorPrefersContextError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := kms.NewError(ctx, "unwrap", "local:x", kms.ErrUnavailable, errors.New("EOF"))
	assert.ErrorIs(t, err, context.Canceled)
	assert.False(t, kms.IsTransient(err), "an ended context is never retried")
	err = kms.NewError(context.Background(), "unwrap", "local:x", kms.ErrUnavailable, nil)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
}

func TestCheckArguments(t *testing.T) {
	assert.ErrorIs(t, kms.CheckWrap(make([]byte, 15), nil), kms.ErrInvalidInput)
	assert.ErrorIs(t, kms.CheckWrap(make([]byte, 32), make([]byte, kms.MaxAADSize+1)), kms.ErrInvalidInput)
	assert.NoError(t, kms.CheckWrap(make([]byte, 32), make([]byte, kms.MaxAADSize)))
	wk := kms.WrappedKey{KeyID: "local:a", Ciphertext: []byte{1}}
	assert.NoError(t, kms.CheckUnwrap("local:a", wk, nil))
	assert.ErrorIs(t, kms.CheckUnwrap("local:b", wk, nil), kms.ErrKeyNotFound)
	assert.ErrorIs(t, kms.CheckUnwrap("local:a", kms.WrappedKey{KeyID: "local:a"}, nil), kms.ErrUnwrapFailed)
}

func TestWrappedKeyStringHidesCiphertext(t *testing.T) {
	wk := kms.WrappedKey{KeyID: "local:a", Ciphertext: []byte("SECRETSECRET")}
	for _, s := range []string{fmt.Sprint(wk), fmt.Sprintf("%+v", wk), fmt.Sprintf("%#v", wk)} {
		assert.NotContains(t, s, "SECRET")
		assert.Contains(t, s, "12 bytes")
	}
}

func TestWrappedKeyLogHidesCiphertext(t *testing.T) {
	ct := []byte("SECRETSECRET")
	wk := kms.WrappedKey{KeyID: "local:a", Ciphertext: ct}
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&logs, nil), slog.NewTextHandler(&logs, nil)} {
		slog.New(h).Info("rewrapped", "key", wk, slog.Any("other", wk))
	}
	// Inside a container, the text handler prints with fmt (String); the
	// JSON handler uses encoding/json, which must keep the ciphertext
	// since stores may encode wrapped keys as JSON.
	slog.New(slog.NewTextHandler(&logs, nil)).Info("rewrapped", "keys", []kms.WrappedKey{wk}, "record", struct{ Wrapped kms.WrappedKey }{wk})
	for _, enc := range []string{"SECRET", base64.StdEncoding.EncodeToString(ct), hex.EncodeToString(ct)} {
		assert.NotContains(t, logs.String(), enc)
	}
	assert.Contains(t, logs.String(), "local:a")
}

func TestURIQuery(t *testing.T) {
	parse := func(s string) *url.URL {
		u, err := url.Parse(s)
		require.NoError(t, err)
		return u
	}
	q, err := kms.URIQuery(parse("x://h/k?a=1&b=two"), "a", "b", "c")
	require.NoError(t, err)
	assert.Equal(t, url.Values{"a": {"1"}, "b": {"two"}}, q)

	for uri, want := range map[string]string{
		"x://tok3n@h/k":     "credentials",
		"x://u:hunter2@h/k": "credentials",
		"x://h/k?a=1&d=2":   `unknown query parameter "d"`,
		"x://h/k?a=1&a=2":   `"a" given 2 times`,
		"x://h/k?a=%zz":     "does not parse",
	} {
		_, err := kms.URIQuery(parse(uri), "a", "b")
		require.Error(t, err, uri)
		assert.Contains(t, err.Error(), want, uri)
		assert.NotContains(t, err.Error(), "hunter2", uri)
		assert.NotContains(t, err.Error(), "tok3n", uri)
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	var got *url.URL
	openers := map[string]kms.Opener{
		"test": func(_ context.Context, u *url.URL) (kms.KEK, error) { got = u; return nil, nil },
	}
	_, err := kms.Open(ctx, "test://host/path?x=1", openers)
	require.NoError(t, err)
	assert.Equal(t, "host", got.Host)
	assert.Equal(t, "1", got.Query().Get("x"))

	_, err = kms.Open(ctx, "TEST://host/path", openers)
	assert.NoError(t, err, "schemes are case-insensitive")

	_, err = kms.Open(ctx, "other://user:hunter2@host/k", openers)
	assert.ErrorIs(t, err, kms.ErrInvalidInput)
	assert.NotContains(t, err.Error(), "hunter2")

	// A user name alone may be a token (https://TOKEN@host): like
	// URIQuery, Open never repeats it.
	_, err = kms.Open(ctx, "vualt://hvs.tok3n@vault.example.org:8200/transit/keys/phi", openers)
	assert.ErrorIs(t, err, kms.ErrInvalidInput)
	assert.NotContains(t, err.Error(), "tok3n")
	assert.Contains(t, err.Error(), "vault.example.org:8200/transit/keys/phi")

	_, err = kms.Open(ctx, "::not a uri", openers)
	assert.ErrorIs(t, err, kms.ErrInvalidInput)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = kms.Open(cctx, "test://h/p", openers)
	assert.ErrorIs(t, err, context.Canceled)
}
