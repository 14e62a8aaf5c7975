// Package gcpkms is a KEK held in Google Cloud Key Management Service
// (Cloud KMS). The key never leaves Cloud KMS: Wrap and Unwrap call its
// Encrypt and Decrypt methods through Google's client
// (cloud.google.com/go/kms/apiv1, over gRPC).
//
// Most applications open a KEK from a URI with [Open], or call [New] with a
// [Config], and hand it to the keys or envelope packages.
//
// # Binding the AAD
//
// The AAD is Cloud KMS's additional_authenticated_data, bound by the
// server's AES-256-GCM to the ciphertext. Every request and response is
// checked end to end with CRC32C as Google recommends: the KEK sends the
// checksums of the plaintext, ciphertext and AAD, requires the server to
// confirm that it verified them (verified_plaintext_crc32c,
// verified_additional_authenticated_data_crc32c), and checks the checksums
// of what comes back. A server that does not confirm it received the AAD
// fails the call, so the AAD is never dropped silently. A mismatch is
// reported as kms.ErrUnavailable with ErrChecksum as cause: Google
// advises retrying.
//
// Only keys of purpose ENCRYPT_DECRYPT (symmetric) serve; Cloud KMS
// refuses Encrypt on others. Wrap uses the key's primary version; Unwrap
// finds the version in the ciphertext, so after rotation old wrapped keys
// still unwrap until their version is disabled or destroyed (then
// kms.ErrKeyNotFound) and there is nothing to rewrap: the KEK does not
// implement kms.Rewrapper.
//
// # Credentials and configuration
//
// New uses Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS,
// gcloud's credentials, the metadata server) unless Config.ClientOptions
// say otherwise. The client library's retries are turned off: wrap the
// KEK in the kms retry decorator, which retries only transient errors and
// honours the caller's context. The service account needs
// roles/cloudkms.cryptoKeyEncrypterDecrypter on the key.
//
// # Errors
//
// Failures are [*kms.Error] values classified from the gRPC status codes:
//
//   - kms.ErrKeyNotFound: NOT_FOUND; FAILED_PRECONDITION (a disabled or
//     destroyed key version); a wrapped key of another KEK.
//   - kms.ErrPermissionDenied: PERMISSION_DENIED, UNAUTHENTICATED.
//   - kms.ErrUnwrapFailed: INVALID_ARGUMENT from Decrypt (a ciphertext
//     that does not decrypt with this key and AAD).
//   - kms.ErrThrottled (which matches kms.ErrUnavailable):
//     RESOURCE_EXHAUSTED (a quota or rate limit).
//   - kms.ErrUnavailable: UNAVAILABLE, ABORTED,
//     INTERNAL, UNKNOWN, DEADLINE_EXCEEDED of Config.Timeout, transport
//     errors, and checksum mismatches.
//   - kms.ErrInvalidInput: arguments out of bounds, INVALID_ARGUMENT from
//     Encrypt, OUT_OF_RANGE, UNIMPLEMENTED.
//   - context.Canceled or context.DeadlineExceeded when the caller's
//     context ended.
//
// The cause is an [*RPCError] with the status code and the message with
// anything that looks like key material redacted.
//
// # Testing
//
// There is no Cloud KMS emulator. The tests run Google's real client
// stack (the gapic client, gRPC, protobuf) against an in-process gRPC
// server on 127.0.0.1 that implements the KeyManagementService Encrypt and
// Decrypt methods with real AES-256-GCM, AAD and CRC32C checks, over
// insecure transport credentials (in the tests only), with fault injection
// for the error mapping. They show that this package uses the API as
// documented; they cannot show how Cloud KMS itself behaves.
package gcpkms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	kmsapi "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/phicrypt/phicrypt/kms"
)

// DefaultTimeout bounds one call when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// ErrChecksum is the cause of a CRC32C mismatch between what the KEK sent
// or received and what Cloud KMS reports: data corrupted in transit, or a
// server that did not verify (and so may not have used) the AAD.
var ErrChecksum = errors.New("gcpkms: checksum mismatch")

// Config names a Cloud KMS key and how to reach it. Key is required.
type Config struct {
	// Key is the CryptoKey's resource name:
	// "projects/P/locations/L/keyRings/R/cryptoKeys/K".
	Key string
	// Endpoint overrides the API endpoint ("host:port"), for a regional or
	// Private Service Connect endpoint. By default the client's.
	Endpoint string
	// ClientOptions are passed to the client after Endpoint: credentials
	// (option.WithCredentialsFile, …), gRPC dial options. By default
	// Application Default Credentials.
	ClientOptions []option.ClientOption
	// Timeout bounds each call (the caller's context may end it sooner).
	// DefaultTimeout when zero.
	Timeout time.Duration
	// KeyID overrides the key id that wrapped keys carry. By default it is
	// "gcp-kms:" followed by Key.
	KeyID string

	// Client, if set, is the Cloud KMS client to call: the application's
	// own, with its credentials and connection pool. Endpoint and
	// ClientOptions must then be empty. The KEK does not change the
	// client's settings: each call passes Timeout and no retries as call
	// options (retries belong to kms.Resilient). Close does not close it:
	// the application does.
	Client *kmsapi.KeyManagementClient
}

// KEK is a symmetric Cloud KMS key. It implements kms.KEK and
// kms.Identifier and is safe for concurrent use. Close it when done.
type KEK struct {
	id       string
	key      string
	client   *kmsapi.KeyManagementClient
	owned    bool             // the KEK made client, and closes it
	callOpts []gax.CallOption // a timeout, no retries

	closeOnce sync.Once
	closeErr  error
}

var (
	_ kms.KEK        = (*KEK)(nil)
	_ kms.Identifier = (*KEK)(nil)
)

// keyNameRE matches a CryptoKey resource name (not a version).
var keyNameRE = regexp.MustCompile(`^projects/[^/\s]+/locations/[^/\s]+/keyRings/[^/\s]+/cryptoKeys/[^/\s]+$`)

// New returns the KEK that cfg names. It makes no call to Cloud KMS (the
// encrypter/decrypter role cannot read a key's metadata): a missing key or
// a key that cannot encrypt fails the first Wrap or Unwrap. Errors are
// *kms.Error values of op "open".
func New(ctx context.Context, cfg Config) (*KEK, error) {
	if err := ctx.Err(); err != nil {
		return nil, kms.NewError(ctx, "open", cfg.KeyID, err, nil)
	}
	if !keyNameRE.MatchString(cfg.Key) {
		return nil, kms.NewError(ctx, "open", cfg.KeyID, kms.ErrInvalidInput,
			fmt.Errorf("gcpkms: key %q is not projects/P/locations/L/keyRings/R/cryptoKeys/K", cfg.Key))
	}
	id := cfg.KeyID
	if id == "" {
		id = "gcp-kms:" + cfg.Key
	}
	if err := kms.ValidateKeyID(id); err != nil {
		return nil, kms.NewError(ctx, "open", "", kms.ErrInvalidInput, err)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	k := &KEK{id: id, key: cfg.Key, client: cfg.Client, callOpts: []gax.CallOption{
		gax.WithTimeout(timeout),
		// No retries, whatever the client's settings: they belong to
		// kms.Resilient, which retries only transient errors.
		gax.WithRetry(func() gax.Retryer { return nil }),
	}}
	if cfg.Client != nil {
		if cfg.Endpoint != "" || len(cfg.ClientOptions) > 0 {
			return nil, kms.NewError(ctx, "open", id, kms.ErrInvalidInput,
				errors.New("gcpkms: with Config.Client, leave Endpoint and ClientOptions empty"))
		}
		return k, nil
	}
	var opts []option.ClientOption
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.Endpoint))
	}
	opts = append(opts, cfg.ClientOptions...)
	client, err := kmsapi.NewKeyManagementClient(ctx, opts...)
	if err != nil {
		return nil, kms.NewError(ctx, "open", id, kms.ErrInvalidInput, fmt.Errorf("gcpkms: %w", err))
	}
	k.client, k.owned = client, true
	return k, nil
}

// KeyID returns the key id that wrapped keys carry.
func (k *KEK) KeyID() string { return k.id }

// castagnoli is the CRC32C table.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c returns the CRC32C (Castagnoli) of b, as Cloud KMS checks it.
func crc32c(b []byte) int64 {
	return int64(crc32.Checksum(b, castagnoli))
}

// Wrap encrypts dek with the key's primary version (Encrypt), binding aad
// as the additional authenticated data.
func (k *KEK) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	if err := ctx.Err(); err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, err, nil)
	}
	if err := kms.CheckWrap(dek, aad); err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrInvalidInput, err)
	}
	req := &kmspb.EncryptRequest{
		Name:            k.key,
		Plaintext:       dek,
		PlaintextCrc32C: wrapperspb.Int64(crc32c(dek)),
	}
	if len(aad) > 0 {
		req.AdditionalAuthenticatedData = aad
		req.AdditionalAuthenticatedDataCrc32C = wrapperspb.Int64(crc32c(aad))
	}
	resp, err := k.client.Encrypt(ctx, req, k.callOpts...)
	if err != nil {
		return kms.WrappedKey{}, k.error(ctx, "wrap", err)
	}
	switch {
	case !resp.GetVerifiedPlaintextCrc32C():
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrUnavailable, fmt.Errorf("%w: the server did not verify the data key's checksum", ErrChecksum))
	case len(aad) > 0 && !resp.GetVerifiedAdditionalAuthenticatedDataCrc32C():
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrUnavailable, fmt.Errorf("%w: the server did not verify the AAD's checksum", ErrChecksum))
	case resp.GetCiphertextCrc32C() == nil || resp.GetCiphertextCrc32C().GetValue() != crc32c(resp.GetCiphertext()):
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrUnavailable, fmt.Errorf("%w: ciphertext", ErrChecksum))
	case !strings.HasPrefix(resp.GetName(), k.key+"/cryptoKeyVersions/"):
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrUnavailable, errors.New("gcpkms: Encrypt used another key"))
	case len(resp.GetCiphertext()) == 0 || len(resp.GetCiphertext()) > kms.MaxWrappedSize:
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrUnavailable,
			fmt.Errorf("gcpkms: Encrypt returned a ciphertext of %d bytes", len(resp.GetCiphertext())))
	}
	return kms.WrappedKey{KeyID: k.id, Ciphertext: resp.GetCiphertext()}, nil
}

// Unwrap decrypts a key wrapped by any enabled version of this key
// (Decrypt), checking aad.
func (k *KEK) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, kms.NewError(ctx, "unwrap", k.id, err, nil)
	}
	if err := kms.CheckUnwrap(k.id, wk, aad); err != nil {
		return nil, kms.NewError(ctx, "unwrap", k.id, kindOf(err), err)
	}
	req := &kmspb.DecryptRequest{
		Name:             k.key,
		Ciphertext:       wk.Ciphertext,
		CiphertextCrc32C: wrapperspb.Int64(crc32c(wk.Ciphertext)),
	}
	if len(aad) > 0 {
		req.AdditionalAuthenticatedData = aad
		req.AdditionalAuthenticatedDataCrc32C = wrapperspb.Int64(crc32c(aad))
	}
	resp, err := k.client.Decrypt(ctx, req, k.callOpts...)
	if err != nil {
		return nil, k.error(ctx, "unwrap", err)
	}
	dek := resp.GetPlaintext()
	if resp.GetPlaintextCrc32C() == nil || resp.GetPlaintextCrc32C().GetValue() != crc32c(dek) {
		clear(dek)
		return nil, kms.NewError(ctx, "unwrap", k.id, kms.ErrUnavailable, fmt.Errorf("%w: data key", ErrChecksum))
	}
	if len(dek) < kms.MinDataKeySize || len(dek) > kms.MaxDataKeySize {
		clear(dek)
		return nil, kms.NewError(ctx, "unwrap", k.id, kms.ErrUnwrapFailed, errors.New("gcpkms: decrypted value is not a data key"))
	}
	return dek, nil
}

// kindOf returns the kms sentinel that err matches.
func kindOf(err error) error {
	for _, kind := range []error{kms.ErrInvalidInput, kms.ErrKeyNotFound, kms.ErrUnwrapFailed} {
		if errors.Is(err, kind) {
			return kind
		}
	}
	return kms.ErrUnwrapFailed
}

// Close closes the client's connections, unless the client was given in
// Config.Client. It is safe to call more than once; the KEK must not be
// used after.
func (k *KEK) Close() error {
	k.closeOnce.Do(func() {
		if !k.owned {
			return
		}
		if err := k.client.Close(); err != nil {
			k.closeErr = kms.NewError(context.Background(), "close", k.id, kms.ErrUnavailable, fmt.Errorf("gcpkms: %w", err))
		}
	})
	return k.closeErr
}

// String returns the key id and key name.
func (k *KEK) String() string {
	return fmt.Sprintf("gcpkms.KEK{KeyID: %q, Key: %q}", k.id, k.key)
}

// GoString is String.
func (k *KEK) GoString() string { return k.String() }

// Format prints String for every verb.
func (k *KEK) Format(f fmt.State, verb rune) { fmt.Fprint(f, k.String()) }

// LogValue logs the key id and key name.
func (k *KEK) LogValue() slog.Value {
	return slog.GroupValue(slog.String("key_id", k.id), slog.String("key", k.key))
}

// MarshalJSON encodes what LogValue logs.
func (k *KEK) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		KeyID string `json:"key_id"`
		Key   string `json:"key"`
	}{k.id, k.key})
}

// String describes the configuration; client options, which may hold
// credentials, are only counted.
func (c Config) String() string {
	return fmt.Sprintf("gcpkms.Config{Key: %q, Endpoint: %q, KeyID: %q, Timeout: %s, ClientOptions: %d}",
		c.Key, c.Endpoint, c.KeyID, c.Timeout, len(c.ClientOptions))
}

// GoString is String.
func (c Config) GoString() string { return c.String() }

// Format prints String for every verb.
func (c Config) Format(f fmt.State, verb rune) { fmt.Fprint(f, c.String()) }

// LogValue logs String.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalJSON encodes String.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }
