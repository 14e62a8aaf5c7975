// Package tinkkms serves any Tink AEAD as a phicrypt KEK, for teams already
// on Tink: a remote KMS through a Tink registry.KMSClient (Tink's clients
// for AWS KMS, GCP KMS, HashiCorp Vault, …) or a local keyset AEAD.
//
// Most applications should use this module's own backends (kms/vault,
// kms/awskms, kms/gcpkms, kms/pkcs11), which classify the KMS's errors,
// honour contexts, and rewrap in batches. This adapter is for a KMS that
// only a Tink client reaches, and for moving from Tink's envelope
// encryption to phicrypt.
//
// # Wrapped keys
//
// A wrapped key's ciphertext is the AEAD's ciphertext of the data key, with
// the caller's AAD as the AEAD's associated data; nothing is added. Its key
// id is the one given to New, or for FromClient "tink:" followed by the
// key URI (for example "tink:gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k").
// The URIs of Tink's fake KMS (fake-kms://…) hold their key, so their key
// id is "tink:fake-kms:" followed by 32 hex digits of the URI's SHA-256.
//
// # Contexts
//
// tink.AEAD has no context. When the AEAD also implements
// tink.AEADWithContext, calls go through it and the context reaches the
// KMS. Otherwise the context is checked before and after the call, which
// itself cannot be interrupted: a cancelled or expired context fails the
// call before it starts, and a call that returns after its context ended
// fails with the context's error (an unwrapped key is cleared). Give such
// a KMS client its own timeouts.
//
// # Errors
//
// Tink's AEADs do not classify their errors. A failed decryption is
// reported as kms.ErrUnwrapFailed, a failed encryption as
// kms.ErrUnavailable, except that an error from the network (a net.Error)
// is always kms.ErrUnavailable and a context error is reported as such.
// A KMS that refuses a decryption for lack of permission therefore shows as
// an unwrap failure: this adapter cannot tell it from a wrong key.
//
// # URIs
//
// There is no Scheme or Open: a Tink key URI names a key of a KMS whose
// client (with its credentials and options) the application builds and
// registers itself, and phicrypt cannot construct Tink clients from a URI
// alone. Build the client, then call FromClient.
//
// # FIPS 140-3
//
// A Tink keyset AEAD (AES-GCM with nonces that Tink generates) is refused
// by Go's FIPS 140-3 only mode (GODEBUG=fips140=only); a remote KMS AEAD
// does its cryptography in the KMS.
package tinkkms

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/tink-crypto/tink-go/v2/core/registry"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/phicrypt/phicrypt/kms"
)

// KEK is a key-encryption key served by a Tink AEAD. It implements kms.KEK
// and kms.Identifier, and is safe for concurrent use when its AEAD is (as
// Tink's are).
type KEK struct {
	id   string
	aead tink.AEAD            // nil when ctxd is set and has no plain form
	ctxd tink.AEADWithContext // nil when the AEAD has no context form
}

var (
	_ kms.KEK        = (*KEK)(nil)
	_ kms.Identifier = (*KEK)(nil)
)

// New returns a KEK that wraps with aead under key id keyID (see
// kms.ValidateKeyID). When aead also implements tink.AEADWithContext, calls
// use it.
func New(aead tink.AEAD, keyID string) (*KEK, error) {
	if aead == nil {
		return nil, kms.NewError(context.Background(), "open", keyID, kms.ErrInvalidInput, errors.New("tinkkms: AEAD is nil"))
	}
	if err := kms.ValidateKeyID(keyID); err != nil {
		return nil, kms.NewError(context.Background(), "open", "", kms.ErrInvalidInput, err)
	}
	k := &KEK{id: keyID, aead: aead}
	k.ctxd, _ = aead.(tink.AEADWithContext)
	return k, nil
}

// NewWithContext is New for an AEAD with contexts only.
func NewWithContext(aead tink.AEADWithContext, keyID string) (*KEK, error) {
	if aead == nil {
		return nil, kms.NewError(context.Background(), "open", keyID, kms.ErrInvalidInput, errors.New("tinkkms: AEAD is nil"))
	}
	if err := kms.ValidateKeyID(keyID); err != nil {
		return nil, kms.NewError(context.Background(), "open", "", kms.ErrInvalidInput, err)
	}
	return &KEK{id: keyID, ctxd: aead}, nil
}

// FromClient returns a KEK for the key that keyURI names in client's KMS,
// with the key id KeyID(keyURI). For another key id, call client.GetAEAD
// and New. It fails with kms.ErrInvalidInput when the client does not
// support the URI or cannot make its AEAD.
func FromClient(client registry.KMSClient, keyURI string) (*KEK, error) {
	if client == nil {
		return nil, kms.NewError(context.Background(), "open", "", kms.ErrInvalidInput, errors.New("tinkkms: client is nil"))
	}
	id, err := KeyID(keyURI)
	if err != nil {
		return nil, kms.NewError(context.Background(), "open", "", kms.ErrInvalidInput, err)
	}
	if !client.Supported(keyURI) {
		return nil, kms.NewError(context.Background(), "open", id, kms.ErrInvalidInput, errors.New("tinkkms: the client does not support this key URI"))
	}
	aead, err := client.GetAEAD(keyURI)
	if err != nil {
		// Not wrapped: a client's message may quote the URI, which for
		// some KMSs holds the key.
		return nil, kms.NewError(context.Background(), "open", id, kms.ErrInvalidInput, errors.New("tinkkms: the client could not make an AEAD for this key URI"))
	}
	return New(aead, id)
}

// fakeKMSPrefix starts the URIs of Tink's fake KMS, which hold their key.
const fakeKMSPrefix = "fake-kms://"

// KeyID returns the default key id of a Tink key URI: "tink:" followed by
// the URI, or for Tink's fake KMS, whose URIs hold the key, "tink:fake-kms:"
// followed by 32 hex digits of the URI's SHA-256. A URI with user
// information, or that would make an invalid key id, has no default.
func KeyID(keyURI string) (string, error) {
	if strings.HasPrefix(strings.ToLower(keyURI), fakeKMSPrefix) {
		sum := sha256.Sum256([]byte(keyURI))
		return "tink:fake-kms:" + hex.EncodeToString(sum[:16]), nil
	}
	// Tink's key URIs are not all RFC 3986 URIs (aws-kms://arn:aws:kms:…
	// has colons where a port would be), so they are not parsed as such.
	scheme, rest, ok := strings.Cut(keyURI, "://")
	if !ok || scheme == "" || rest == "" {
		return "", fmt.Errorf("tinkkms: key URI is not of the form scheme://key")
	}
	if authority, _, _ := strings.Cut(rest, "/"); strings.Contains(authority, "@") {
		return "", fmt.Errorf("tinkkms: key URI has user information: give a key id to New")
	}
	id := "tink:" + keyURI
	if err := kms.ValidateKeyID(id); err != nil {
		return "", fmt.Errorf("tinkkms: no default key id for this key URI: %w", err)
	}
	return id, nil
}

// KeyID returns the key id that wrapped keys carry.
func (k *KEK) KeyID() string { return k.id }

// Wrap encrypts dek with the AEAD, with aad as associated data.
func (k *KEK) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	if err := ctx.Err(); err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, err, nil)
	}
	if err := kms.CheckWrap(dek, aad); err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrInvalidInput, err)
	}
	var ct []byte
	var err error
	if k.ctxd != nil {
		ct, err = k.ctxd.EncryptWithContext(ctx, dek, aad)
	} else {
		ct, err = k.aead.Encrypt(dek, aad)
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kindOf(err, kms.ErrUnavailable), cause(err))
	}
	if len(ct) == 0 || len(ct) > kms.MaxWrappedSize {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrUnavailable,
			fmt.Errorf("tinkkms: the AEAD returned a %d-byte ciphertext, limit %d", len(ct), kms.MaxWrappedSize))
	}
	return kms.WrappedKey{KeyID: k.id, Ciphertext: ct}, nil
}

// Unwrap decrypts a key wrapped by Wrap with the same aad.
func (k *KEK) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, kms.NewError(ctx, "unwrap", k.id, err, nil)
	}
	if err := kms.CheckUnwrap(k.id, wk, aad); err != nil {
		return nil, kms.NewError(ctx, "unwrap", k.id, checkKind(err), err)
	}
	var dek []byte
	var err error
	if k.ctxd != nil {
		dek, err = k.ctxd.DecryptWithContext(ctx, wk.Ciphertext, aad)
	} else {
		dek, err = k.aead.Decrypt(wk.Ciphertext, aad)
	}
	if err == nil && ctx.Err() != nil {
		clear(dek)
		err = ctx.Err()
	}
	if err != nil {
		return nil, kms.NewError(ctx, "unwrap", k.id, kindOf(err, kms.ErrUnwrapFailed), cause(err))
	}
	if len(dek) < kms.MinDataKeySize || len(dek) > kms.MaxDataKeySize {
		// Not a data key this package wrapped, as the other backends
		// check: the caller must not take it for one.
		clear(dek)
		return nil, kms.NewError(ctx, "unwrap", k.id, kms.ErrUnwrapFailed, errors.New("tinkkms: decrypted value is not a data key"))
	}
	return dek, nil
}

// kindOf classifies an error of the AEAD: context and network errors as
// such, anything else as fallback.
func kindOf(err, fallback error) error {
	var netErr net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return context.DeadlineExceeded
	case errors.As(err, &netErr):
		return kms.ErrUnavailable
	}
	return fallback
}

// cause keeps the context and network errors of the AEAD for errors.Is and
// errors.As, and drops the others' text, which Tink does not promise to
// keep free of inputs.
func cause(err error) error {
	var netErr net.Error
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) {
		return err
	}
	return nil
}

// checkKind returns the sentinel of an error from kms.CheckUnwrap.
func checkKind(err error) error {
	for _, kind := range []error{kms.ErrInvalidInput, kms.ErrKeyNotFound} {
		if errors.Is(err, kind) {
			return kind
		}
	}
	return kms.ErrUnwrapFailed
}

// String returns the key id.
func (k *KEK) String() string { return fmt.Sprintf("tinkkms.KEK{KeyID: %q}", k.id) }

// GoString is String.
func (k *KEK) GoString() string { return k.String() }

// Format prints String for every verb.
func (k *KEK) Format(f fmt.State, verb rune) { fmt.Fprint(f, k.String()) }

// LogValue logs the key id.
func (k *KEK) LogValue() slog.Value { return slog.GroupValue(slog.String("key_id", k.id)) }

// MarshalJSON encodes the key id.
func (k *KEK) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		KeyID string `json:"key_id"`
	}{k.id})
}
