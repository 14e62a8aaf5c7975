// Package awskms is a KEK held in AWS Key Management Service. The key
// never leaves KMS: Wrap and Unwrap call the Encrypt and Decrypt APIs, and
// GenerateDataKey has KMS generate a data key.
//
// Most applications open a KEK from a URI with [Open], or call [New] with a
// [Config], and hand it to the keys or envelope packages.
//
// # Binding the AAD
//
// The AAD is bound as the encryption context {"phicrypt:aad":
// base64url(AAD)} (unpadded base64url, RFC 4648 section 5), which KMS
// authenticates with the ciphertext and requires, identical, to decrypt. A
// nil or empty AAD is sent as no encryption context at all. The context is
// not secret: CloudTrail logs it with every call, which makes each key use
// attributable (HIPAA audit controls) but means the AAD must not hold PHI.
//
// New calls DescribeKey once: it resolves an alias to its key's ARN (so a
// later change of the alias does not change which key unwraps) and
// refuses a key that cannot bind an encryption context (asymmetric, HMAC
// or non-ENCRYPT_DECRYPT keys) or that is not enabled. Unwrap passes the
// key's ARN to Decrypt, so KMS itself refuses a ciphertext of another key.
//
// # Wrapped keys and rotation
//
// A wrapped key's ciphertext is the CiphertextBlob that KMS returns, up to
// about 200 bytes for a 64-byte data key. It names the key and its backing
// key material; after automatic or on-demand rotation, KMS keeps the old
// material and decrypts old blobs, so this KEK does not implement
// kms.Rewrapper: there is nothing to rewrap.
//
// # Credentials and configuration
//
// New loads the SDK's default configuration (config.LoadDefaultConfig:
// the AWS_* environment variables, the shared config and credentials
// files, SSO, web identity, ECS and EC2 instance roles) and then applies
// Config: a Credentials provider, a Region (by default the one in a key
// ARN, else the SDK's), and an Endpoint (a VPC endpoint, or local-kms in
// tests). The SDK's own retries are turned off: wrap the KEK in the kms
// retry decorator, which retries only transient errors and honours the
// caller's context. The IAM policy needs kms:DescribeKey, kms:Encrypt and
// kms:Decrypt on the key, and kms:GenerateDataKey for GenerateDataKey; a
// condition on kms:EncryptionContextKeys can require "phicrypt:aad".
//
// # Errors
//
// Failures are [*kms.Error] values classified with the kms sentinels:
//
//   - kms.ErrKeyNotFound: NotFoundException, DisabledException,
//     KMSInvalidStateException (pending deletion or import), a wrapped key
//     of another KEK.
//   - kms.ErrPermissionDenied: AccessDeniedException and the errors of
//     missing, invalid or expired credentials.
//   - kms.ErrUnwrapFailed: InvalidCiphertextException,
//     IncorrectKeyException, a wrong encryption context.
//   - kms.ErrThrottled (which matches kms.ErrUnavailable):
//     ThrottlingException, RequestLimitExceeded, LimitExceededException,
//     any other 429.
//   - kms.ErrUnavailable: KMSInternalException, DependencyTimeoutException,
//     KeyUnavailableException, any 5xx, network errors and timeouts.
//   - kms.ErrInvalidInput: arguments out of bounds, a key that cannot
//     encrypt, or a request KMS refused as invalid.
//   - context.Canceled or context.DeadlineExceeded when the caller's
//     context ended.
//
// The cause is a [*ServiceError] with the error code, status and request
// id, and the message with anything that looks like key material redacted.
//
// # Testing
//
// The tests run the real SDK against local-kms (nsmithuk/local-kms) on
// 127.0.0.1, which implements the KMS JSON protocol: kmstest conformance
// with two keys, encryption contexts enforced by the server, aliases,
// disabled keys, and error mapping with injected faults.
package awskms

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/config"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/phicrypt/phicrypt/kms"
)

// ContextKey is the encryption context key that holds the AAD.
const ContextKey = "phicrypt:aad"

// Config names a KMS key and how to reach it. Key is required.
type Config struct {
	// Key names the KMS key: a key id, a key ARN, an alias ("alias/phi")
	// or an alias ARN. New resolves it to the key's ARN once.
	Key string
	// Region is the AWS region of the key. By default the region of Key
	// when it is an ARN, else the SDK's (AWS_REGION, shared config).
	Region string
	// Endpoint overrides the KMS endpoint URL, for a VPC endpoint or a
	// test server. By default the SDK resolves the region's endpoint.
	Endpoint string
	// FIPSEndpoint uses the region's FIPS 140 validated endpoint
	// (kms-fips.<region>.amazonaws.com). It is ignored with Endpoint.
	FIPSEndpoint bool
	// Credentials provides AWS credentials. By default the SDK's default
	// credential chain.
	Credentials aws.CredentialsProvider
	// KeyID overrides the key id that wrapped keys carry. By default it is
	// "aws-kms:" followed by the key's ARN, as resolved by New.
	KeyID string

	// AWSConfig, if set, is the application's AWS configuration (its
	// credential chain, such as an assume-role provider, its region, HTTP
	// client and middleware), used instead of loading the default one.
	// Region (or the region of a key ARN) and Credentials, when set,
	// override it. New works on a copy whose retryer is aws.NopRetryer:
	// retries belong to kms.Resilient.
	AWSConfig *aws.Config
	// Client, if set, is the KMS client to call, as it is: the
	// application's own, sharing its configuration and connection pool.
	// Region, Endpoint, FIPSEndpoint, Credentials and AWSConfig must then
	// be empty. Its retryer is kept: build it with aws.NopRetryer (or
	// RetryMaxAttempts 1) so that retries are kms.Resilient's alone.
	Client *awskms.Client
}

// KEK is a symmetric encryption key in AWS KMS. It implements kms.KEK and
// kms.Identifier and is safe for concurrent use. It holds no resources
// that need closing.
type KEK struct {
	id     string
	arn    string
	region string
	client *awskms.Client
}

var (
	_ kms.KEK        = (*KEK)(nil)
	_ kms.Identifier = (*KEK)(nil)
)

// New returns the KEK that cfg names, after checking with DescribeKey that
// the key exists, is enabled, and is a symmetric encryption key. Errors
// are *kms.Error values of op "open".
func New(ctx context.Context, cfg Config) (*KEK, error) {
	if err := ctx.Err(); err != nil {
		return nil, kms.NewError(ctx, "open", cfg.KeyID, err, nil)
	}
	if cfg.Key == "" {
		return nil, kms.NewError(ctx, "open", cfg.KeyID, kms.ErrInvalidInput, errors.New("awskms: Config.Key is required"))
	}
	if cfg.KeyID != "" {
		if err := kms.ValidateKeyID(cfg.KeyID); err != nil {
			return nil, kms.NewError(ctx, "open", "", kms.ErrInvalidInput, err)
		}
	}
	client, region, err := newClient(ctx, cfg)
	if err != nil {
		return nil, kms.NewError(ctx, "open", cfg.KeyID, kms.ErrInvalidInput, err)
	}
	k := &KEK{id: cfg.KeyID, region: region, client: client}

	out, err := client.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String(cfg.Key)})
	if err != nil {
		return nil, k.error(ctx, "open", err)
	}
	md := out.KeyMetadata
	if md == nil || md.Arn == nil {
		return nil, kms.NewError(ctx, "open", cfg.KeyID, kms.ErrUnavailable, errors.New("awskms: DescribeKey returned no key metadata"))
	}
	k.arn = *md.Arn
	if k.id == "" {
		k.id = "aws-kms:" + k.arn
		if err := kms.ValidateKeyID(k.id); err != nil {
			return nil, kms.NewError(ctx, "open", "", kms.ErrInvalidInput, err)
		}
	}
	switch {
	case md.KeyUsage != types.KeyUsageTypeEncryptDecrypt || md.KeySpec != types.KeySpecSymmetricDefault:
		return nil, kms.NewError(ctx, "open", k.id, kms.ErrInvalidInput,
			fmt.Errorf("awskms: key is %s for %s; an encryption context needs a SYMMETRIC_DEFAULT key for ENCRYPT_DECRYPT", md.KeySpec, md.KeyUsage))
	case !md.Enabled || md.KeyState != types.KeyStateEnabled:
		return nil, kms.NewError(ctx, "open", k.id, kms.ErrKeyNotFound, fmt.Errorf("awskms: key is %s", md.KeyState))
	}
	return k, nil
}

// newClient returns the KMS client of cfg and its region: cfg.Client, or
// a new client over cfg.AWSConfig or the default configuration.
func newClient(ctx context.Context, cfg Config) (*awskms.Client, string, error) {
	if cfg.Client != nil {
		if cfg.Region != "" || cfg.Endpoint != "" || cfg.FIPSEndpoint || cfg.Credentials != nil || cfg.AWSConfig != nil {
			return nil, "", errors.New("awskms: with Config.Client, leave Region, Endpoint, FIPSEndpoint, Credentials and AWSConfig empty")
		}
		region := cfg.Client.Options().Region
		if region == "" {
			return nil, "", errors.New("awskms: Config.Client has no region")
		}
		return cfg.Client, region, nil
	}
	region := cfg.Region
	if a, err := arn.Parse(cfg.Key); err == nil && region == "" {
		region = a.Region
	}
	var awsCfg aws.Config
	if cfg.AWSConfig != nil {
		awsCfg = cfg.AWSConfig.Copy()
		if region != "" {
			awsCfg.Region = region
		}
		if cfg.Credentials != nil {
			awsCfg.Credentials = cfg.Credentials
		}
	} else {
		opts := []func(*config.LoadOptions) error{}
		if region != "" {
			opts = append(opts, config.WithRegion(region))
		}
		if cfg.Credentials != nil {
			opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
		}
		var err error
		if awsCfg, err = config.LoadDefaultConfig(ctx, opts...); err != nil {
			return nil, "", fmt.Errorf("awskms: loading the AWS configuration: %w", err)
		}
	}
	// Retries belong to kms.Resilient, which retries only transient
	// errors and honours the caller's context.
	awsCfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} }
	awsCfg.RetryMaxAttempts = 0
	if awsCfg.Region == "" {
		return nil, "", errors.New("awskms: no region: set Config.Region, use a key ARN, or set AWS_REGION")
	}
	client := awskms.NewFromConfig(awsCfg, func(o *awskms.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		} else if cfg.FIPSEndpoint {
			o.EndpointOptions.UseFIPSEndpoint = aws.FIPSEndpointStateEnabled
		}
	})
	return client, awsCfg.Region, nil
}

// KeyID returns the key id that wrapped keys carry.
func (k *KEK) KeyID() string { return k.id }

// ARN returns the ARN of the KMS key.
func (k *KEK) ARN() string { return k.arn }

// encryptionContext returns the encryption context that binds aad: none
// for an empty AAD.
func encryptionContext(aad []byte) map[string]string {
	if len(aad) == 0 {
		return nil
	}
	return map[string]string{ContextKey: base64.RawURLEncoding.EncodeToString(aad)}
}

// Wrap encrypts dek under the key (Encrypt), binding aad as the
// encryption context.
func (k *KEK) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	if err := ctx.Err(); err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, err, nil)
	}
	if err := kms.CheckWrap(dek, aad); err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrInvalidInput, err)
	}
	out, err := k.client.Encrypt(ctx, &awskms.EncryptInput{
		KeyId:               aws.String(k.arn),
		Plaintext:           dek,
		EncryptionContext:   encryptionContext(aad),
		EncryptionAlgorithm: types.EncryptionAlgorithmSpecSymmetricDefault,
	})
	if err != nil {
		return kms.WrappedKey{}, k.error(ctx, "wrap", err)
	}
	if len(out.CiphertextBlob) == 0 || len(out.CiphertextBlob) > kms.MaxWrappedSize {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrUnavailable,
			fmt.Errorf("awskms: Encrypt returned a ciphertext of %d bytes", len(out.CiphertextBlob)))
	}
	return kms.WrappedKey{KeyID: k.id, Ciphertext: out.CiphertextBlob}, nil
}

// Unwrap decrypts a key wrapped by this KEK (Decrypt, naming the key so
// that KMS refuses a ciphertext of another key), checking aad.
func (k *KEK) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, kms.NewError(ctx, "unwrap", k.id, err, nil)
	}
	if err := kms.CheckUnwrap(k.id, wk, aad); err != nil {
		return nil, kms.NewError(ctx, "unwrap", k.id, kindOf(err), err)
	}
	out, err := k.client.Decrypt(ctx, &awskms.DecryptInput{
		KeyId:               aws.String(k.arn),
		CiphertextBlob:      wk.Ciphertext,
		EncryptionContext:   encryptionContext(aad),
		EncryptionAlgorithm: types.EncryptionAlgorithmSpecSymmetricDefault,
	})
	if err != nil {
		return nil, k.error(ctx, "unwrap", err)
	}
	if out.KeyId == nil || *out.KeyId != k.arn {
		clear(out.Plaintext)
		return nil, kms.NewError(ctx, "unwrap", k.id, kms.ErrUnwrapFailed, errors.New("awskms: Decrypt used another key"))
	}
	if len(out.Plaintext) < kms.MinDataKeySize || len(out.Plaintext) > kms.MaxDataKeySize {
		clear(out.Plaintext)
		return nil, kms.NewError(ctx, "unwrap", k.id, kms.ErrUnwrapFailed, errors.New("awskms: decrypted value is not a data key"))
	}
	return out.Plaintext, nil
}

// GenerateDataKey has KMS generate a random data key of size bytes
// (MinDataKeySize to MaxDataKeySize) and encrypt it under the key, bound
// to aad, in one call (GenerateDataKey). It returns the data key, which
// the caller should clear when done, and its wrapped form.
func (k *KEK) GenerateDataKey(ctx context.Context, size int, aad []byte) ([]byte, kms.WrappedKey, error) {
	const op = "generate"
	if err := ctx.Err(); err != nil {
		return nil, kms.WrappedKey{}, kms.NewError(ctx, op, k.id, err, nil)
	}
	if size < kms.MinDataKeySize || size > kms.MaxDataKeySize || len(aad) > kms.MaxAADSize {
		return nil, kms.WrappedKey{}, kms.NewError(ctx, op, k.id, kms.ErrInvalidInput,
			fmt.Errorf("%w: data key of %d bytes (want %d to %d) or AAD of %d bytes (limit %d)",
				kms.ErrInvalidInput, size, kms.MinDataKeySize, kms.MaxDataKeySize, len(aad), kms.MaxAADSize))
	}
	out, err := k.client.GenerateDataKey(ctx, &awskms.GenerateDataKeyInput{
		KeyId:             aws.String(k.arn),
		NumberOfBytes:     aws.Int32(int32(size)),
		EncryptionContext: encryptionContext(aad),
	})
	if err != nil {
		return nil, kms.WrappedKey{}, k.error(ctx, op, err)
	}
	if len(out.Plaintext) != size || len(out.CiphertextBlob) == 0 || len(out.CiphertextBlob) > kms.MaxWrappedSize {
		clear(out.Plaintext)
		return nil, kms.WrappedKey{}, kms.NewError(ctx, op, k.id, kms.ErrUnavailable, errors.New("awskms: malformed GenerateDataKey response"))
	}
	return out.Plaintext, kms.WrappedKey{KeyID: k.id, Ciphertext: out.CiphertextBlob}, nil
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

// String returns the key id, ARN and region, never credentials.
func (k *KEK) String() string {
	return fmt.Sprintf("awskms.KEK{KeyID: %q, ARN: %q, Region: %q}", k.id, k.arn, k.region)
}

// GoString is String.
func (k *KEK) GoString() string { return k.String() }

// Format prints String for every verb.
func (k *KEK) Format(f fmt.State, verb rune) { fmt.Fprint(f, k.String()) }

// LogValue logs the key id, ARN and region.
func (k *KEK) LogValue() slog.Value {
	return slog.GroupValue(slog.String("key_id", k.id), slog.String("arn", k.arn), slog.String("region", k.region))
}

// MarshalJSON encodes what LogValue logs.
func (k *KEK) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		KeyID  string `json:"key_id"`
		ARN    string `json:"arn"`
		Region string `json:"region"`
	}{k.id, k.arn, k.region})
}

// String describes the configuration; a credentials provider is shown by
// its type only.
func (c Config) String() string {
	creds := "default chain"
	if c.Credentials != nil {
		creds = strings.TrimPrefix(fmt.Sprintf("%T", c.Credentials), "*")
	}
	return fmt.Sprintf("awskms.Config{Key: %q, Region: %q, Endpoint: %q, FIPSEndpoint: %t, KeyID: %q, Credentials: %s}",
		c.Key, c.Region, c.Endpoint, c.FIPSEndpoint, c.KeyID, creds)
}

// GoString is String.
func (c Config) GoString() string { return c.String() }

// Format prints String for every verb.
func (c Config) Format(f fmt.State, verb rune) { fmt.Fprint(f, c.String()) }

// LogValue logs String.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalJSON encodes String.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }
