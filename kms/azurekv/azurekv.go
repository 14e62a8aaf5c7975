// Package azurekv is a KEK held in Azure Key Vault or an Azure Key Vault
// Managed HSM. The key never leaves Azure: Wrap and Unwrap call the
// service's wrapKey and unwrapKey operations through the Azure SDK for Go
// (azkeys), with RSA-OAEP-256 for RSA keys (Key Vault, RSA-HSM keys in
// Premium vaults and Managed HSMs) or A256KW, AES key wrap (RFC 3394), for
// the AES keys (oct-HSM) that only Managed HSMs hold.
//
// It is a module of its own (github.com/phicrypt/phicrypt/kms/azurekv), so
// that only applications that use Azure pay for its SDK in their go.mod.
//
// Most applications open a KEK from a URI with an [Opener], or call [New]
// with a [Config], and hand it to the keys or envelope packages behind
// kms.Resilient (the SDK's own retries are off: see Errors).
//
// # Binding the AAD
//
// wrapKey and unwrapKey take no associated data: neither RSA-OAEP nor AES
// key wrap has any. So the AAD is bound inside the wrapped plaintext, as
// kms/pkcs11 does for its KWP mechanism (Vault's backend refuses Transit
// key types that cannot bind AAD; Key Vault has no key type that can). What
// the service wraps is
//
//	R (16 random bytes) || n (1 byte) || DEK (n bytes) || T (32 bytes) || zeros to a multiple of 8
//
// with T = SHA-256("phicrypt/kms/azurekv aad v1" || 0x00 || key id ||
// 0x00 || algorithm || 0x00 || AAD). Unwrap has the service unwrap, then
// recomputes T from the AAD it is given and compares it in constant time:
// a wrong AAD, key or algorithm fails with kms.ErrUnwrapFailed, never
// returning a data key. R makes A256KW, which is deterministic, randomized
// (RSA-OAEP is randomized by itself). A changed ciphertext fails the
// service's own check (OAEP decoding, or AES key wrap's integrity check)
// or T's. The AAD is never dropped.
//
// Know what this binding does not give: an RSA public key is public, so
// anyone who reads it (keys/get) can make a wrapped key of their own
// choosing for any AAD without Key Vault; only the holder of unwrapKey can
// open one. A wrapped key is confidential and bound to its AAD, but not
// proof that this application made it: keep the key store writable only by
// the application (the keys package authenticates its metadata), or use a
// Managed HSM's AES key, which no one can wrap with outside the HSM.
//
// A wrapped key is
//
//	0x01 || algorithm (1: RSA-OAEP-256, 2: A256KW) || len(version) (1 byte) || version || the service's result
//
// The version is the key version that wrapped it, which Unwrap asks for.
//
// # Key versions
//
// Wrap uses the key's current version (or [Config.Version], when pinned)
// and records the version that the service reports in the wrapped key, so
// that rotating the key in Key Vault (a new version) takes effect on the
// next Wrap while every older version still unwraps what it wrapped.
// Disabling an old version makes its wrapped keys fail with
// kms.ErrPermissionDenied; rewrap them first (keys.Keyring.Rewrap, which
// calls Unwrap then Wrap: the service has no rewrap operation).
//
// # Errors
//
// Errors are *kms.Error with a kms kind:
//
//   - HTTP 429 (throttling): kms.ErrThrottled, which matches
//     kms.ErrUnavailable and is retried by kms.WithRetry and
//     kms.Resilient; 408 and 5xx, and failures to reach the vault:
//     kms.ErrUnavailable.
//   - 401, 403 (no access policy or RBAC role, a disabled key or version,
//     an operation not in the key's key_ops) and credentials that cannot
//     get a token: kms.ErrPermissionDenied.
//   - 404 (no such key): kms.ErrKeyNotFound. When unwrapKey answers 404
//     for the version a wrapped key names, Unwrap reads the key's current
//     version (keys/get): if the key exists, the wrapped key names a version
//     it never had, and Unwrap fails with kms.ErrUnwrapFailed, as for any
//     tampered wrapped key.
//   - 400 on unwrap (the service could not unwrap: wrong key or tampered
//     ciphertext) and a T that does not match: kms.ErrUnwrapFailed; 400 on
//     wrap: kms.ErrInvalidInput.
//
// The cause is a [*ResponseError] with the HTTP status and the service's
// error code, never the response body. The SDK's retries are turned off
// (ClientOptions.Retry.MaxRetries = -1) so that retries are decided once,
// by kms.Resilient, whatever the backend.
//
// # Tests
//
// No Key Vault emulator exists that runs offline, so this package is
// tested against an in-process HTTPS server that implements the REST
// operations the SDK calls (the bearer-token challenge, get key, wrapkey,
// unwrapkey, with real RSA-OAEP-256 and AES key wrap, versions, and
// injected 4xx/5xx answers), under the vault host names the SDK checks,
// and passes the kmstest conformance suite there. It has not been run
// against Azure by these tests.
package azurekv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/phicrypt/phicrypt/kms"
)

// Algorithms Wrap and Unwrap use.
const (
	// RSAOAEP256 is RSA-OAEP with SHA-256, for RSA and RSA-HSM keys.
	RSAOAEP256 = azkeys.EncryptionAlgorithmRSAOAEP256
	// A256KW is AES-256 key wrap (RFC 3394), for oct-HSM keys of a Managed
	// HSM.
	A256KW = azkeys.EncryptionAlgorithmA256KW
)

// Config configures New.
type Config struct {
	// VaultURL is the vault's URL, "https://NAME.vault.azure.net" (or
	// another cloud's vault domain) or a Managed HSM's
	// "https://NAME.managedhsm.azure.net". Required.
	VaultURL string
	// Key is the key's name. Required.
	Key string
	// Version pins the key version that Wrap uses. Empty (recommended):
	// the key's current version at each call, so that a rotation in Key
	// Vault takes effect at once. Unwrap always uses the version recorded
	// in the wrapped key.
	Version string
	// Algorithm is RSAOAEP256 or A256KW. Empty: New reads the key (which
	// needs the keys/get permission) and chooses from its type: RSA
	// keys use RSAOAEP256, AES (oct) keys A256KW; other types are refused.
	// Set it to run with only wrapKey and unwrapKey permissions.
	Algorithm azkeys.EncryptionAlgorithm
	// Credential authenticates to Key Vault: typically
	// azidentity.NewDefaultAzureCredential (workload or managed identity,
	// environment, Azure CLI). Required.
	Credential azcore.TokenCredential
	// ClientOptions are passed to azkeys.NewClient (transport, cloud,
	// logging); nil for the defaults. Retries are turned off whatever they
	// say.
	ClientOptions *azkeys.ClientOptions
	// KeyID is the key id that wrapped keys carry; by default
	// "azure-kv:HOST/keys/NAME", as in "azure-kv:phi.vault.azure.net/keys/kek".
	KeyID string
}

// String describes the configuration; the credential and the client
// options, which may hold tokens or secrets, are shown by their type
// only.
func (c Config) String() string {
	cred := "none"
	if c.Credential != nil {
		cred = strings.TrimPrefix(fmt.Sprintf("%T", c.Credential), "*")
	}
	return fmt.Sprintf("azurekv.Config{VaultURL: %q, Key: %q, Version: %q, Algorithm: %q, KeyID: %q, Credential: %s, ClientOptions: %t}",
		c.VaultURL, c.Key, c.Version, c.Algorithm, c.KeyID, cred, c.ClientOptions != nil)
}

// GoString is String.
func (c Config) GoString() string { return c.String() }

// Format prints String for every verb, so that no verb prints the
// credential's fields.
func (c Config) Format(f fmt.State, verb rune) { fmt.Fprint(f, c.String()) }

// LogValue logs String.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalJSON encodes String.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// KEK is a key in Azure Key Vault. It implements kms.KEK and
// kms.Identifier, and is safe for concurrent use.
type KEK struct {
	client  *azkeys.Client
	name    string
	version string
	alg     azkeys.EncryptionAlgorithm
	algByte byte
	id      string
}

var (
	_ kms.KEK        = (*KEK)(nil)
	_ kms.Identifier = (*KEK)(nil)
)

// Scheme is the key id and URI scheme of Azure Key Vault keys.
const Scheme = "azure-kv"

// New returns the KEK of cfg. Unless cfg.Algorithm is set, it reads the
// key to choose the algorithm, so a missing key or a missing permission
// fails here.
func New(ctx context.Context, cfg Config) (*KEK, error) {
	bad := func(format string, args ...any) error {
		return kms.NewError(ctx, "open", cfg.KeyID, kms.ErrInvalidInput, fmt.Errorf("azurekv: "+format, args...))
	}
	u, err := url.Parse(cfg.VaultURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" {
		return nil, bad("VaultURL must be https://HOST, such as https://NAME.vault.azure.net")
	}
	if !validName(cfg.Key) {
		return nil, bad("key name must be 1 to 127 letters, digits and dashes")
	}
	if cfg.Version != "" && !validVersion(cfg.Version) {
		return nil, bad("key version must be letters and digits")
	}
	if cfg.Credential == nil {
		return nil, bad("Config needs a Credential")
	}
	id := cfg.KeyID
	if id == "" {
		id = Scheme + ":" + strings.ToLower(u.Host) + "/keys/" + cfg.Key
	}
	if err := kms.ValidateKeyID(id); err != nil {
		return nil, kms.NewError(ctx, "open", "", kms.ErrInvalidInput, err)
	}
	var opts azkeys.ClientOptions
	if cfg.ClientOptions != nil {
		opts = *cfg.ClientOptions
	}
	opts.Retry.MaxRetries = -1 // retries are kms.Resilient's
	client, err := azkeys.NewClient("https://"+u.Host, cfg.Credential, &opts)
	if err != nil {
		return nil, kms.NewError(ctx, "open", id, kms.ErrInvalidInput, fmt.Errorf("azurekv: %w", err))
	}
	k := &KEK{client: client, name: cfg.Key, version: cfg.Version, id: id}
	alg := cfg.Algorithm
	if alg == "" {
		resp, err := client.GetKey(ctx, cfg.Key, cfg.Version, nil)
		if err != nil {
			return nil, classify(ctx, "open", id, err)
		}
		if resp.Key == nil || resp.Key.Kty == nil {
			return nil, kms.NewError(ctx, "open", id, kms.ErrUnavailable, errors.New("azurekv: the service returned a key without a type"))
		}
		switch *resp.Key.Kty {
		case azkeys.KeyTypeRSA, azkeys.KeyTypeRSAHSM:
			alg = RSAOAEP256
		case azkeys.KeyTypeOct, azkeys.KeyTypeOctHSM:
			alg = A256KW
		default:
			return nil, bad("key type %s cannot wrap keys; use an RSA key, or an oct-HSM key in a Managed HSM", *resp.Key.Kty)
		}
	}
	switch alg {
	case RSAOAEP256:
		k.algByte = 1
	case A256KW:
		k.algByte = 2
	default:
		return nil, bad("algorithm %s is not supported; use RSA-OAEP-256 or A256KW", alg)
	}
	k.alg = alg
	return k, nil
}

// KeyID returns the key id that wrapped keys carry.
func (k *KEK) KeyID() string { return k.id }

// Algorithm returns the algorithm the KEK wraps with.
func (k *KEK) Algorithm() azkeys.EncryptionAlgorithm { return k.alg }

// Layout of the wrapped plaintext.
const (
	randSize = 16
	tagSize  = sha256.Size
	aadLabel = "phicrypt/kms/azurekv aad v1"
	format1  = 0x01
)

// tag is T: the digest that binds the AAD inside the wrapped plaintext.
func (k *KEK) tag(aad []byte) []byte {
	h := sha256.New()
	h.Write([]byte(aadLabel))
	h.Write([]byte{0})
	h.Write([]byte(k.id))
	h.Write([]byte{0})
	h.Write([]byte(k.alg))
	h.Write([]byte{0})
	h.Write(aad)
	return h.Sum(nil)
}

// Wrap has the service wrap dek, with aad bound inside the wrapped
// plaintext, under the key's current version (or Config.Version).
func (k *KEK) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	if err := kms.CheckWrap(dek, aad); err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrInvalidInput, err)
	}
	if err := ctx.Err(); err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, err, nil)
	}
	n := randSize + 1 + len(dek) + tagSize
	pt := make([]byte, (n+7)/8*8)
	defer clear(pt)
	rand.Read(pt[:randSize])
	pt[randSize] = byte(len(dek))
	copy(pt[randSize+1:], dek)
	copy(pt[randSize+1+len(dek):], k.tag(aad))

	alg := k.alg
	resp, err := k.client.WrapKey(ctx, k.name, k.version, azkeys.KeyOperationParameters{Algorithm: &alg, Value: pt}, nil)
	if err != nil {
		return kms.WrappedKey{}, classify(ctx, "wrap", k.id, err)
	}
	if resp.KID == nil || resp.KID.Name() != k.name || !validVersion(resp.KID.Version()) || len(resp.Result) == 0 {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrUnavailable, errors.New("azurekv: the service's answer names no version of this key or holds no result"))
	}
	version := resp.KID.Version()
	ct := make([]byte, 0, 3+len(version)+len(resp.Result))
	ct = append(ct, format1, k.algByte, byte(len(version)))
	ct = append(ct, version...)
	ct = append(ct, resp.Result...)
	if len(ct) > kms.MaxWrappedSize {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrInvalidInput, fmt.Errorf("azurekv: wrapped key is %d bytes, limit %d (use an RSA key of at most 4096 bits)", len(ct), kms.MaxWrappedSize))
	}
	return kms.WrappedKey{KeyID: k.id, Ciphertext: ct}, nil
}

// Unwrap has the service unwrap wk with the key version that wrapped it,
// then checks that aad is the one bound at Wrap.
func (k *KEK) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	if err := kms.CheckUnwrap(k.id, wk, aad); err != nil {
		return nil, kms.NewError(ctx, "unwrap", k.id, kms.KindOf(err), err)
	}
	if err := ctx.Err(); err != nil {
		return nil, kms.NewError(ctx, "unwrap", k.id, err, nil)
	}
	failed := func(why string) error {
		return kms.NewError(ctx, "unwrap", k.id, kms.ErrUnwrapFailed, errors.New("azurekv: "+why))
	}
	ct := wk.Ciphertext
	if len(ct) < 4 || ct[0] != format1 || ct[1] != k.algByte {
		return nil, failed("wrapped key has an unknown format or another algorithm")
	}
	vlen := int(ct[2])
	if len(ct) < 3+vlen+1 || !validVersion(string(ct[3:3+vlen])) {
		return nil, failed("wrapped key has a malformed version")
	}
	version, body := string(ct[3:3+vlen]), ct[3+vlen:]
	alg := k.alg
	resp, err := k.client.UnwrapKey(ctx, k.name, version, azkeys.KeyOperationParameters{Algorithm: &alg, Value: bytes.Clone(body)}, nil)
	if err != nil {
		err = classify(ctx, "unwrap", k.id, err)
		if errors.Is(err, kms.ErrKeyNotFound) && k.keyExists(ctx) {
			// The key is there but not the version the wrapped key names:
			// the wrapped key is corrupt or tampered with.
			var re *ResponseError
			errors.As(err, &re)
			return nil, kms.NewError(ctx, "unwrap", k.id, kms.ErrUnwrapFailed, fmt.Errorf("azurekv: the wrapped key names no version of this key: %w", re))
		}
		return nil, err
	}
	pt := resp.Result
	defer clear(pt)
	if len(pt)%8 != 0 || len(pt) < randSize+1+kms.MinDataKeySize+tagSize {
		return nil, failed("unwrapped key has a wrong size")
	}
	n := int(pt[randSize])
	end := randSize + 1 + n + tagSize
	if n < kms.MinDataKeySize || n > kms.MaxDataKeySize || end > len(pt) || len(pt)-end >= 8 {
		return nil, failed("unwrapped key has a wrong length")
	}
	want := k.tag(aad)
	ok := subtle.ConstantTimeCompare(pt[randSize+1+n:end], want)
	for _, b := range pt[end:] {
		ok &= subtle.ConstantTimeByteEq(b, 0)
	}
	if ok != 1 {
		return nil, failed("wrong associated data or key")
	}
	return bytes.Clone(pt[randSize+1 : randSize+1+n]), nil
}

// keyExists reports whether the key exists (its current version can be
// read), to tell a missing key from a missing version.
func (k *KEK) keyExists(ctx context.Context) bool {
	_, err := k.client.GetKey(ctx, k.name, "", nil)
	return err == nil
}

// validName reports whether s is a Key Vault object name: 1 to 127
// letters, digits and dashes.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 127 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validVersion reports whether s is a key version: 1 to 64 letters and
// digits (Key Vault's are 32 hexadecimal digits).
func validVersion(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
