package vault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
	"github.com/phicrypt/phicrypt/kms/vault"
)

// aadLabel mirrors the package's label, to call Vault directly in tests.
const aadLabel = "phicrypt/kms/vault/v1\x00"

func newDEK(t testing.TB) []byte {
	t.Helper()
	dek := make([]byte, 32)
	_, err := rand.Read(dek)
	require.NoError(t, err)
	return dek
}

func TestConformance(t *testing.T) {
	s := sharedServer(t)
	for _, tc := range []struct {
		name string
		opts map[string]any
		want vault.Binding
	}{
		{"Derived", derived, vault.BindContext},
		{"DerivedChaCha", map[string]any{"type": "chacha20-poly1305", "derived": true}, vault.BindContext},
		{"AssociatedData", plain, vault.BindAssociatedData},
		{"AssociatedDataAES128", map[string]any{"type": "aes128-gcm96"}, vault.BindAssociatedData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := s.open(t, s.createKey(t, tc.opts))
			b := s.open(t, s.createKey(t, tc.opts))
			require.Equal(t, tc.want, a.Binding())
			kmstest.Run(t, kmstest.Config{KEK: a, Other: b})
		})
	}
}

// The server, not the client, refuses a wrong AAD: decrypting a wrapped
// key directly through the API works with the bound value and fails
// without it or with another.
func TestAADEnforcedByServer(t *testing.T) {
	s := sharedServer(t)
	ctx := context.Background()
	for name, opts := range map[string]map[string]any{"context": derived, "associated_data": plain} {
		t.Run(name, func(t *testing.T) {
			key := s.createKey(t, opts)
			k := s.open(t, key)
			dek, aad := newDEK(t), []byte("tenant=st-mary;patient=42")
			wk, err := k.Wrap(ctx, dek, aad)
			require.NoError(t, err)

			decrypt := func(bound []byte) ([]byte, error) {
				req := map[string]any{"ciphertext": string(wk.Ciphertext)}
				if bound != nil {
					req[name] = base64.StdEncoding.EncodeToString(bound)
				}
				sec, err := s.admin.Logical().WriteWithContext(ctx, "transit/decrypt/"+key, req)
				if err != nil {
					return nil, err
				}
				return base64.StdEncoding.DecodeString(sec.Data["plaintext"].(string))
			}
			got, err := decrypt(append([]byte(aadLabel), aad...))
			require.NoError(t, err)
			assert.Equal(t, dek, got)

			for _, bound := range [][]byte{
				append([]byte(aadLabel), "tenant=st-mary;patient=43"...),
				[]byte(aadLabel),
				aad,
			} {
				_, err := decrypt(bound)
				assert.ErrorContains(t, err, "Code: 400", "Vault must refuse a wrong %s", name)
			}
			if name == "associated_data" {
				// Without associated_data the GCM tag does not verify.
				_, err := decrypt(nil)
				assert.ErrorContains(t, err, "message authentication failed")
			} else {
				// A derived key requires a context.
				_, err := decrypt(nil)
				assert.ErrorContains(t, err, "context")
			}
		})
	}
}

// Vault 1.21's transit/rewrap accepts associated_data in batch items but
// does not use it, which is why Rewrap with BindAssociatedData decrypts
// and re-encrypts instead. If this test fails, Vault has learnt to rewrap
// with associated_data and Rewrap could use it.
func TestServerRewrapIgnoresAssociatedData(t *testing.T) {
	s := sharedServer(t)
	ctx := context.Background()
	key := s.createKey(t, plain)
	k := s.open(t, key)
	aad := []byte("x")
	wk, err := k.Wrap(ctx, newDEK(t), aad)
	require.NoError(t, err)
	sec, err := s.admin.Logical().WriteWithContext(ctx, "transit/rewrap/"+key, map[string]any{
		"batch_input": []map[string]any{{
			"ciphertext":      string(wk.Ciphertext),
			"associated_data": base64.StdEncoding.EncodeToString(append([]byte(aadLabel), aad...)),
		}},
	})
	require.NoError(t, err)
	item := sec.Data["batch_results"].([]any)[0].(map[string]any)
	assert.Contains(t, item["error"], "message authentication failed")
}

func TestRotationAndRewrap(t *testing.T) {
	s := sharedServer(t)
	ctx := context.Background()
	for name, opts := range map[string]map[string]any{"context": derived, "associated_data": plain} {
		t.Run(name, func(t *testing.T) {
			key := s.createKey(t, opts)
			k := s.open(t, key)

			const n = 20
			var (
				deks [][]byte
				aads [][]byte
				old  []kms.WrappedKey
			)
			for i := range n {
				dek, aad := newDEK(t), fmt.Appendf(nil, "row=%d", i)
				wk, err := k.Wrap(ctx, dek, aad)
				require.NoError(t, err)
				v, err := vault.KeyVersion(wk)
				require.NoError(t, err)
				require.Equal(t, 1, v)
				deks, aads, old = append(deks, dek), append(aads, aad), append(old, wk)
			}

			s.rotate(t, key)
			s.rotate(t, key)
			info, err := k.KeyInfo(ctx)
			require.NoError(t, err)
			assert.Equal(t, 3, info.LatestVersion)

			// Old wraps still unwrap; new wraps use the new version.
			got, err := k.Unwrap(ctx, old[0], aads[0])
			require.NoError(t, err)
			assert.Equal(t, deks[0], got)
			fresh, err := k.Wrap(ctx, deks[0], aads[0])
			require.NoError(t, err)
			v, err := vault.KeyVersion(fresh)
			require.NoError(t, err)
			assert.Equal(t, 3, v)

			// Rewrap moves every key to version 3, in batches of 7.
			cfg := s.config(key)
			cfg.RewrapBatchSize = 7
			small := s.openConfig(t, cfg)
			res, err := small.Rewrap(ctx, old, aads)
			require.NoError(t, err)
			require.Len(t, res, n)
			for i, r := range res {
				require.NoError(t, r.Err, "item %d", i)
				v, err := vault.KeyVersion(r.Key)
				require.NoError(t, err)
				assert.Equal(t, 3, v, "item %d", i)
				assert.Equal(t, k.KeyID(), r.Key.KeyID)
				got, err := k.Unwrap(ctx, r.Key, aads[i])
				require.NoError(t, err, "item %d", i)
				assert.Equal(t, deks[i], got, "item %d", i)
			}

			// Once min_decryption_version excludes version 1, the old wraps
			// fail as a retired key, and the rewrapped ones still unwrap.
			_, err = s.admin.Logical().WriteWithContext(ctx, "transit/keys/"+key+"/config", map[string]any{"min_decryption_version": 2})
			require.NoError(t, err)
			_, err = k.Unwrap(ctx, old[1], aads[1])
			assert.ErrorIs(t, err, kms.ErrKeyNotFound)
			assert.NotErrorIs(t, err, kms.ErrUnwrapFailed)
			res, err = k.Rewrap(ctx, old[:2], aads[:2])
			require.NoError(t, err)
			for _, r := range res {
				assert.ErrorIs(t, r.Err, kms.ErrKeyNotFound)
			}
			_, err = k.Unwrap(ctx, res[0].Key, aads[0])
			assert.Error(t, err)
		})
	}
}

func TestRewrapPerItemErrors(t *testing.T) {
	s := sharedServer(t)
	ctx := context.Background()
	for name, opts := range map[string]map[string]any{"context": derived, "associated_data": plain} {
		t.Run(name, func(t *testing.T) {
			k := s.open(t, s.createKey(t, opts))
			other := s.open(t, s.createKey(t, opts))
			s.rotate(t, strings.TrimPrefix(k.KeyID(), "vault:transit/"))

			wrap := func(kek *vault.KEK, aad string) kms.WrappedKey {
				wk, err := kek.Wrap(ctx, newDEK(t), []byte(aad))
				require.NoError(t, err)
				return wk
			}
			good := wrap(k, "good")
			require.True(t, bytes.HasPrefix(good.Ciphertext, []byte("vault:v2:")))
			tampered := wrap(k, "tampered")
			tampered.Ciphertext = bytes.Clone(tampered.Ciphertext)
			tampered.Ciphertext[len(tampered.Ciphertext)-3] ^= 0x01
			relabelled := wrap(other, "relabelled")
			relabelled.KeyID = k.KeyID()
			cases := []struct {
				name string
				wk   kms.WrappedKey
				aad  []byte
				want error
			}{
				{"good", good, []byte("good"), nil},
				{"wrong aad", wrap(k, "right"), []byte("wrong"), kms.ErrUnwrapFailed},
				{"tampered", tampered, []byte("tampered"), kms.ErrUnwrapFailed},
				{"other KEK", wrap(other, "other"), []byte("other"), kms.ErrKeyNotFound},
				{"other KEK's ciphertext", relabelled, []byte("relabelled"), kms.ErrUnwrapFailed},
				{"malformed", kms.WrappedKey{KeyID: k.KeyID(), Ciphertext: []byte("vault:v1:AAAA")}, nil, kms.ErrUnwrapFailed},
				{"empty", kms.WrappedKey{KeyID: k.KeyID()}, nil, kms.ErrUnwrapFailed},
				{"unknown version", kms.WrappedKey{KeyID: k.KeyID(), Ciphertext: bytes.Replace(good.Ciphertext, []byte("vault:v2:"), []byte("vault:v9:"), 1)}, []byte("good"), kms.ErrUnwrapFailed},
				{"aad too long", good, make([]byte, kms.MaxAADSize+1), kms.ErrInvalidInput},
				{"good again", good, []byte("good"), nil},
			}
			var wks []kms.WrappedKey
			var aads [][]byte
			for _, c := range cases {
				wks, aads = append(wks, c.wk), append(aads, c.aad)
			}
			res, err := k.Rewrap(ctx, wks, aads)
			require.NoError(t, err)
			require.Len(t, res, len(cases))
			for i, c := range cases {
				if c.want == nil {
					require.NoError(t, res[i].Err, c.name)
					v, err := vault.KeyVersion(res[i].Key)
					require.NoError(t, err)
					assert.Equal(t, 2, v, c.name)
					continue
				}
				assert.ErrorIs(t, res[i].Err, c.want, c.name)
				var kerr *kms.Error
				assert.ErrorAs(t, res[i].Err, &kerr, c.name)
				if len(c.wk.Ciphertext) > 0 {
					assert.NotContains(t, fmt.Sprint(res[i].Err), string(c.wk.Ciphertext), c.name)
				}
			}

			// A batch of only failures is still answered item by item.
			res, err = k.Rewrap(ctx, []kms.WrappedKey{tampered, tampered}, [][]byte{[]byte("tampered"), nil})
			require.NoError(t, err)
			for _, r := range res {
				assert.ErrorIs(t, r.Err, kms.ErrUnwrapFailed)
			}

			// Whole-call failures.
			_, err = k.Rewrap(ctx, wks, aads[:1])
			assert.ErrorIs(t, err, kms.ErrInvalidInput)
			res, err = k.Rewrap(ctx, nil, nil)
			assert.NoError(t, err)
			assert.Empty(t, res)
		})
	}
}

func TestGenerateDataKey(t *testing.T) {
	s := sharedServer(t)
	ctx := context.Background()
	k := s.open(t, s.createKey(t, derived))
	for _, size := range []int{16, 32, 64} {
		aad := []byte("scope=patient:1")
		dek, wk, err := k.GenerateDataKey(ctx, size, aad)
		require.NoError(t, err)
		assert.Len(t, dek, size)
		assert.False(t, bytes.Equal(dek, make([]byte, size)))
		got, err := k.Unwrap(ctx, wk, aad)
		require.NoError(t, err)
		assert.Equal(t, dek, got)
		_, err = k.Unwrap(ctx, wk, []byte("scope=patient:2"))
		assert.ErrorIs(t, err, kms.ErrUnwrapFailed)
	}
	for _, size := range []int{0, 8, 24, 128} {
		_, _, err := k.GenerateDataKey(ctx, size, nil)
		assert.ErrorIs(t, err, kms.ErrInvalidInput, "size %d", size)
	}
	_, _, err := k.GenerateDataKey(ctx, 32, make([]byte, kms.MaxAADSize+1))
	assert.ErrorIs(t, err, kms.ErrInvalidInput)

	// A key that is not derived cannot bind the AAD through transit/datakey.
	p := s.open(t, s.createKey(t, plain))
	_, _, err = p.GenerateDataKey(ctx, 32, nil)
	assert.ErrorIs(t, err, kms.ErrInvalidInput)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = k.GenerateDataKey(cctx, 32, nil)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestKeyVersion(t *testing.T) {
	for ct, want := range map[string]int{
		"vault:v1:" + strings.Repeat("A", 60):   1,
		"vault:v42:" + strings.Repeat("A", 60):  42,
		"vault:v123:" + strings.Repeat("A", 60): 123,
	} {
		v, err := vault.KeyVersion(kms.WrappedKey{Ciphertext: []byte(ct)})
		require.NoError(t, err, ct)
		assert.Equal(t, want, v)
	}
	for _, ct := range []string{
		"", "vault:", "vault:v:AAAA", "vault:v0:" + strings.Repeat("A", 60), "vault:v01:" + strings.Repeat("A", 60),
		"vault:v1" + strings.Repeat("A", 60), "vault:vx:" + strings.Repeat("A", 60), "vault:v1:" + strings.Repeat("A", 59),
		"vault:v1:" + strings.Repeat("A", 56) + "AAA=" /* non-zero padding bits are fine only when zero */ + "B",
		"vault:v1:" + strings.Repeat("A", 28) + "\n" + strings.Repeat("A", 32), "vault:v1:AAAA", "local:v1:" + strings.Repeat("A", 60),
		"vault:v1:" + strings.Repeat("A", 58) + "B=",
	} {
		_, err := vault.KeyVersion(kms.WrappedKey{Ciphertext: []byte(ct)})
		assert.ErrorIs(t, err, kms.ErrInvalidInput, "%q", ct)
	}
}

// Unsupported keys are refused when the KEK is created, never used with
// the AAD dropped.
func TestUnsupportedKeys(t *testing.T) {
	s := sharedServer(t)
	for name, opts := range map[string]map[string]any{
		"rsa":        {"type": "rsa-2048"},
		"ed25519":    {"type": "ed25519"},
		"hmac":       {"type": "hmac", "key_size": 32},
		"convergent": {"type": "aes256-gcm96", "derived": true, "convergent_encryption": true},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := vault.New(context.Background(), s.config(s.createKey(t, opts)))
			assert.ErrorIs(t, err, kms.ErrInvalidInput)
			var kerr *kms.Error
			require.ErrorAs(t, err, &kerr)
			assert.Equal(t, "open", kerr.Op)
		})
	}
}

func TestKeyNotFound(t *testing.T) {
	s := sharedServer(t)
	ctx := context.Background()
	_, err := vault.New(ctx, s.config("no-such-key"))
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)
	cfg := s.config("phi")
	cfg.Mount = "no-such-mount"
	_, err = vault.New(ctx, cfg)
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)

	// A key deleted after the KEK was created.
	key := s.createKey(t, derived)
	k := s.open(t, key)
	wk, err := k.Wrap(ctx, newDEK(t), nil)
	require.NoError(t, err)
	_, err = s.admin.Logical().WriteWithContext(ctx, "transit/keys/"+key+"/config", map[string]any{"deletion_allowed": true})
	require.NoError(t, err)
	_, err = s.admin.Logical().DeleteWithContext(ctx, "transit/keys/"+key)
	require.NoError(t, err)
	_, err = k.Unwrap(ctx, wk, nil)
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)
	_, err = k.Rewrap(ctx, []kms.WrappedKey{wk}, [][]byte{nil})
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)
	_, err = k.KeyInfo(ctx)
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)
}

func TestPermissionDenied(t *testing.T) {
	s := sharedServer(t)
	ctx := context.Background()
	key := s.createKey(t, derived)
	owner := s.open(t, key)
	wk, err := owner.Wrap(ctx, newDEK(t), nil)
	require.NoError(t, err)

	// A token without the policy cannot even read the key.
	cfg := s.config(key)
	cfg.Token = s.createToken(t, map[string]any{"policies": []string{"default"}})
	_, err = vault.New(ctx, cfg)
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)
	assert.NotContains(t, err.Error(), cfg.Token)
	assert.False(t, kms.IsTransient(err))

	// A token that may read the key but not use it.
	readOnly := s.putPolicy(t, `path "transit/keys/`+key+`" { capabilities = ["read"] }`)
	cfg.Token = s.createToken(t, map[string]any{"policies": []string{readOnly}})
	k := s.openConfig(t, cfg)
	_, err = k.Wrap(ctx, newDEK(t), nil)
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)
	_, err = k.Unwrap(ctx, wk, nil)
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)
	_, err = k.Rewrap(ctx, []kms.WrappedKey{wk}, [][]byte{nil})
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)
	_, _, err = k.GenerateDataKey(ctx, 32, nil)
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)

	// An unknown token, and a token revoked after the KEK was created.
	cfg.Token = "hvs.not-a-token"
	_, err = vault.New(ctx, cfg)
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)
	assert.NotContains(t, err.Error(), cfg.Token)

	full := s.putPolicy(t, policyFor(key))
	cfg.Token = s.createToken(t, map[string]any{"policies": []string{full}})
	k = s.openConfig(t, cfg)
	_, err = k.Unwrap(ctx, wk, nil)
	require.NoError(t, err)
	_, err = s.admin.Logical().WriteWithContext(ctx, "auth/token/revoke", map[string]any{"token": cfg.Token})
	require.NoError(t, err)
	_, err = k.Unwrap(ctx, wk, nil)
	assert.ErrorIs(t, err, kms.ErrPermissionDenied)
	assert.NotContains(t, fmt.Sprintf("%v %+v", err, err), cfg.Token)
}

func TestSealedVault(t *testing.T) {
	s := ownServer(t)
	ctx := context.Background()
	key := s.createKey(t, derived)
	k := s.open(t, key)
	wk, err := k.Wrap(ctx, newDEK(t), nil)
	require.NoError(t, err)

	_, err = s.admin.Logical().WriteWithContext(ctx, "sys/seal", nil)
	require.NoError(t, err)

	_, err = k.Wrap(ctx, newDEK(t), nil)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.True(t, kms.IsTransient(err))
	var se *vault.ServerError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 503, se.StatusCode)
	_, err = k.Unwrap(ctx, wk, nil)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	_, err = k.Rewrap(ctx, []kms.WrappedKey{wk}, [][]byte{nil})
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	_, err = vault.New(ctx, s.config(key))
	assert.ErrorIs(t, err, kms.ErrUnavailable)
}

// Two KEKs that reach the same key through different addresses carry the
// same key id, so moving Vault keeps stored keys valid.
func TestKeyIDDoesNotNameTheServer(t *testing.T) {
	s := sharedServer(t)
	ctx := context.Background()
	key := s.createKey(t, derived)
	a := s.open(t, key)
	cfg := s.config(key)
	cfg.Address = strings.Replace(s.Addr, "127.0.0.1", "localhost", 1)
	b := s.openConfig(t, cfg)
	assert.Equal(t, "vault:transit/"+key, a.KeyID())
	assert.Equal(t, a.KeyID(), b.KeyID())
	dek := newDEK(t)
	wk, err := a.Wrap(ctx, dek, nil)
	require.NoError(t, err)
	got, err := b.Unwrap(ctx, wk, nil)
	require.NoError(t, err)
	assert.Equal(t, dek, got)

	cfg.KeyID = "vault:hospital-main"
	c := s.openConfig(t, cfg)
	assert.Equal(t, "vault:hospital-main", c.KeyID())
	_, err = c.Unwrap(ctx, wk, nil)
	assert.ErrorIs(t, err, kms.ErrKeyNotFound, "a wrapped key names the key id it was wrapped under")
	cfg.Namespace = "ns1/team"
	cfg.KeyID = ""
	assert.Equal(t, "vault:ns1/team/transit/"+key, vault.DefaultKeyID(cfg))
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	base := vault.Config{Address: "http://127.0.0.1:1", Key: "phi", Token: "t"}
	for name, mutate := range map[string]func(*vault.Config){
		"no address":         func(c *vault.Config) { c.Address = "" },
		"no key":             func(c *vault.Config) { c.Key = "" },
		"key with slash":     func(c *vault.Config) { c.Key = "a/b" },
		"key with dots":      func(c *vault.Config) { c.Key = ".." },
		"mount with dots":    func(c *vault.Config) { c.Mount = "transit/../sys" },
		"mount with query":   func(c *vault.Config) { c.Mount = "transit?x=1" },
		"no auth":            func(c *vault.Config) { c.Token = "" },
		"two auths":          func(c *vault.Config) { c.AppRole = &vault.AppRole{RoleID: "r"} },
		"approle no role id": func(c *vault.Config) { c.Token, c.AppRole = "", &vault.AppRole{SecretID: "s"} },
		"approle two secret ids": func(c *vault.Config) {
			c.Token, c.AppRole = "", &vault.AppRole{RoleID: "r", SecretID: "s", SecretIDFile: "f"}
		},
		"bad key id":      func(c *vault.Config) { c.KeyID = "no scheme" },
		"batch too large": func(c *vault.Config) { c.RewrapBatchSize = vault.MaxRewrapBatchSize + 1 },
		"bad CA file":     func(c *vault.Config) { c.TLS.CACert = "/nonexistent/ca.pem" },
	} {
		cfg := base
		mutate(&cfg)
		_, err := vault.New(ctx, cfg)
		assert.ErrorIs(t, err, kms.ErrInvalidInput, name)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := vault.New(cctx, base)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestClose(t *testing.T) {
	s := sharedServer(t)
	ctx := context.Background()
	k, err := vault.New(ctx, s.config(s.createKey(t, derived)))
	require.NoError(t, err)
	wk, err := k.Wrap(ctx, newDEK(t), nil)
	require.NoError(t, err)
	require.NoError(t, k.Close())
	require.NoError(t, k.Close())
	_, err = k.Unwrap(ctx, wk, nil)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	_, err = k.Wrap(ctx, newDEK(t), nil)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
}

func TestNoSecretsInOutput(t *testing.T) {
	const token, secretID, roleID = "hvs.SECRET-TOKEN-VALUE", "SECRET-ID-VALUE", "ROLE-ID-VALUE"
	cfg := vault.Config{Address: "https://vault.example.org:8200", Key: "phi", Token: token}
	withRole := cfg
	withRole.Token = ""
	withRole.AppRole = &vault.AppRole{RoleID: roleID, SecretID: secretID}
	type wrapper struct{ C vault.Config }
	var logged bytes.Buffer
	for _, c := range []vault.Config{cfg, withRole} {
		for _, out := range []string{
			fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%s", c), fmt.Sprintf("%x", c),
			fmt.Sprintf("%+v", wrapper{c}), fmt.Sprintf("%+v", c.AppRole), fmt.Sprintf("%#v", c.AppRole),
		} {
			for _, secret := range []string{token, secretID, roleID} {
				assert.NotContains(t, out, secret)
			}
		}
		logSecrets(&logged, c)
	}
	for _, secret := range []string{token, secretID, roleID} {
		assert.NotContains(t, logged.String(), secret)
	}
	assert.Contains(t, logged.String(), "vault.example.org")
}
