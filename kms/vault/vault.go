// Package vault is a KEK held in HashiCorp Vault's Transit secrets engine.
// The key never leaves Vault: Wrap and Unwrap send data keys to
// transit/encrypt and transit/decrypt, Rewrap re-encrypts stored keys under
// the newest key version in batches (transit/rewrap), and GenerateDataKey
// has Vault generate a data key (transit/datakey).
//
// Most applications open a KEK from a URI with [Open], or call [New] with a
// [Config], and hand it to the keys or envelope packages.
//
// # Binding the AAD
//
// Transit offers two ways to bind associated data, and the KEK uses the
// one that the key supports, after reading the key's configuration in New:
//
//   - A derived key (created with derived=true; recommended): the AAD is
//     the key derivation context. Vault derives a separate AES key for
//     each AAD (HKDF-SHA-256 by default), so a wrong AAD selects a wrong key
//     and fails GCM authentication. Every endpoint takes a context, so
//     Wrap, Unwrap, Rewrap and GenerateDataKey all bind the AAD inside
//     Vault. See [BindContext].
//   - A key that is not derived: the AAD is the AEAD's associated data
//     (Transit's associated_data parameter). Vault 1.21's transit/rewrap
//     accepts but ignores associated_data, and transit/datakey has no such
//     parameter, so Rewrap decrypts and re-encrypts through this process in
//     batches (the data keys pass through its memory, as with Unwrap then
//     Wrap, and are cleared after), and GenerateDataKey is refused. See
//     [BindAssociatedData].
//
// The AAD sent to Vault is a fixed label followed by the caller's AAD, so it
// is never empty (derived keys require a context) and a nil AAD is the same
// as an empty one. New refuses a key that cannot bind AAD: any type other
// than aes128-gcm96, aes256-gcm96 and chacha20-poly1305, and convergent
// (deterministic) keys. A response in which Vault says it ignored a
// parameter fails, so a server too old to know associated_data can never
// drop the AAD silently.
//
// Create a key for phicrypt with:
//
//	vault write -f transit/keys/phi type=aes256-gcm96 derived=true
//
// # Wrapped keys and versions
//
// A wrapped key's ciphertext is Vault's own string, "vault:v3:" and the
// base64 of the nonce, encrypted data key and tag, so that an operator
// can recognise it. [KeyVersion] reads the key version it names. Unwrap
// parses it strictly (canonical base64, no leading zeros) before sending
// it. After "vault write -f transit/keys/phi/rotate", Wrap uses the new
// version, Unwrap still opens the older ones until the key's
// min_decryption_version excludes them (then ErrKeyNotFound), and Rewrap
// moves wrapped keys to the newest version.
//
// # Authentication
//
// Config.Token authenticates with a Vault token. If the token is renewable
// and has a TTL, the KEK renews it in the background (api.LifetimeWatcher)
// until its maximum TTL. Config.AppRole logs in with AppRole (role id and
// secret id, each given or read from a file at every login), renews the
// token, and logs in again shortly before the token reaches its maximum
// TTL. Config.AuthMethod does the same with any api.AuthMethod, such as
// those of github.com/hashicorp/vault/api/auth/kubernetes, jwt, aws or
// approle. Config.Client passes the application's own *api.Client (its
// address, TLS and namespace); the KEK works on a clone of it. Close stops
// renewal and revokes a token that the KEK obtained by logging in. New
// reads nothing from the environment (not even VAULT_ADDR,
// VAULT_TOKEN or VAULT_SKIP_VERIFY); [Open] documents the variables it
// reads.
//
// The token's policy needs:
//
//	path "transit/keys/phi"              { capabilities = ["read"] }
//	path "transit/encrypt/phi"           { capabilities = ["update"] }
//	path "transit/decrypt/phi"           { capabilities = ["update"] }
//	path "transit/rewrap/phi"            { capabilities = ["update"] } # Rewrap
//	path "transit/datakey/plaintext/phi" { capabilities = ["update"] } # GenerateDataKey
//
// Grant update, not create, on transit/encrypt: with create, encrypting
// under a deleted key would silently create a new one.
//
// # Errors
//
// Failures are [*kms.Error] values classified with the kms sentinels:
//
//   - kms.ErrThrottled (which matches kms.ErrUnavailable): 429, a rate
//     limit quota.
//   - kms.ErrUnavailable: network errors, timeouts, a sealed Vault (503),
//     412 and other 5xx responses, malformed responses.
//   - kms.ErrPermissionDenied: 401 and 403 (a missing, expired or revoked
//     token, or a policy that forbids the path).
//   - kms.ErrKeyNotFound: 404 (no such mount), a missing transit key, a
//     key version below min_decryption_version, a wrapped key of another
//     KEK.
//   - kms.ErrUnwrapFailed: a ciphertext that does not parse or does not
//     authenticate with this key and AAD.
//   - kms.ErrInvalidInput: arguments out of bounds, or a request Vault
//     refused as malformed.
//   - context.Canceled or context.DeadlineExceeded when the caller's
//     context ended.
//
// The cause is often a [*ServerError] with Vault's status and messages.
// Errors never hold tokens, secret ids, data keys, AAD or ciphertexts:
// anything in Vault's messages that looks like a ciphertext or base64 data
// is redacted.
//
// The Vault client does not retry: wrap the KEK in the kms retry decorator,
// which retries only transient errors, with backoff.
//
// # Testing
//
// The tests run against a real Vault dev server (internal/testsvc):
// kmstest conformance with two keys of each binding, AAD binding enforced
// by the server, rotation and rewrap, AppRole login and token renewal, a
// sealed Vault, tokens without the policy, TLS with a client certificate
// through a TLS-terminating proxy, and a benchmark of batch rewrap.
package vault

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/vault/api"

	"github.com/phicrypt/phicrypt/kms"
)

// Defaults of Config.
const (
	// DefaultMount is the path where the transit engine is mounted.
	DefaultMount = "transit"
	// DefaultAppRoleMount is the path where the AppRole auth method is
	// mounted.
	DefaultAppRoleMount = "approle"
	// DefaultTimeout bounds one HTTP request when Config.Timeout is zero.
	DefaultTimeout = 30 * time.Second
	// DefaultRewrapBatchSize is the number of wrapped keys Rewrap sends in
	// one request when Config.RewrapBatchSize is zero.
	DefaultRewrapBatchSize = 1000
	// MaxRewrapBatchSize bounds Config.RewrapBatchSize: 10,000 items with
	// the largest AAD are about 30 MB, under Vault's default
	// max_request_size of 32 MiB.
	MaxRewrapBatchSize = 10000
)

// Config describes a transit key and how to reach and authenticate to
// Vault. Key, Address or Client, and one of Token, AppRole and AuthMethod
// (or a Client that has a token) are required. Its String, GoString,
// Format and LogValue methods never print the token or the AppRole
// credentials.
type Config struct {
	// Address is Vault's URL, e.g. "https://vault.example.org:8200".
	Address string
	// Namespace is the Vault Enterprise namespace of the mount and of the
	// AppRole login, if any.
	Namespace string
	// TLS configures TLS for an https Address.
	TLS TLSConfig

	// Mount is the path of the transit engine, DefaultMount when empty.
	Mount string
	// Key is the name of the transit key.
	Key string
	// KeyID overrides the key id that wrapped keys carry. By default it is
	// "vault:" followed by the namespace (if any), the mount and the key,
	// as in "vault:transit/phi": it does not name the server, so moving
	// Vault to another address keeps the ids of stored keys valid.
	KeyID string

	// Client, if set, is the application's Vault client: its address, TLS
	// settings, HTTP client and namespace are used, and Address, TLS and
	// Namespace must be empty. The KEK works on a clone (sharing its HTTP
	// client, with the SDK's retries off: they belong to kms.Resilient),
	// so logging in or renewing never changes the application's token.
	// Without Token, AppRole or AuthMethod, the KEK uses the client's
	// token. Close does not close the HTTP client's idle connections.
	Client *api.Client

	// Token authenticates with a Vault token.
	Token string
	// AppRole authenticates with the AppRole auth method.
	AppRole *AppRole
	// AuthMethod authenticates with any auth method of the Vault API: the
	// packages under github.com/hashicorp/vault/api/auth (kubernetes, jwt,
	// aws, gcp, azure, approle, ldap, userpass) provide them. The KEK logs
	// in with it at New, renews the token with a LifetimeWatcher while it
	// may be renewed, logs in again before it expires, and revokes it at
	// Close.
	AuthMethod api.AuthMethod

	// Timeout bounds each HTTP request (the caller's context may end it
	// sooner). DefaultTimeout when zero.
	Timeout time.Duration
	// RewrapBatchSize is the number of wrapped keys Rewrap sends to Vault in
	// one request, DefaultRewrapBatchSize when zero, at most
	// MaxRewrapBatchSize.
	RewrapBatchSize int
	// Logger receives token renewal and login events (never tokens). No
	// logging when nil.
	Logger *slog.Logger
}

// TLSConfig configures TLS to Vault. With none of its fields set, the
// system's roots verify the server.
type TLSConfig struct {
	// CACert is a PEM file of the CA certificates that verify Vault's
	// certificate, instead of the system's roots.
	CACert string
	// CACertPEM holds PEM CA certificates, as an alternative to CACert.
	CACertPEM []byte
	// ClientCert and ClientKey are PEM files of a client certificate and
	// its key, for Vault's TLS certificate auth or a listener that
	// requires client certificates.
	ClientCert string
	ClientKey  string
	// ServerName is the name to verify Vault's certificate against, when it
	// differs from the Address's host.
	ServerName string
	// InsecureSkipVerify accepts any certificate from the server. It makes
	// TLS useless against an active attacker: never use it outside tests.
	InsecureSkipVerify bool
}

// AppRole holds AppRole credentials. Each of the role id and secret id is
// given either directly or as a file, which is read again at every login
// (so a secret id can be rotated by replacing the file).
type AppRole struct {
	// Mount is the path of the AppRole auth method, DefaultAppRoleMount
	// when empty.
	Mount string
	// RoleID is the role id, or RoleIDFile a file holding it.
	RoleID     string
	RoleIDFile string
	// SecretID is the secret id, or SecretIDFile a file holding it. Both
	// empty for a role with bind_secret_id=false.
	SecretID     string
	SecretIDFile string
}

// Binding says how a KEK binds the AAD to its wraps.
type Binding int

const (
	// BindContext binds the AAD as the key derivation context of a derived
	// key: every operation binds it inside Vault.
	BindContext Binding = iota + 1
	// BindAssociatedData binds the AAD as the associated data of an AEAD
	// key that is not derived. Rewrap decrypts and re-encrypts through
	// this process; GenerateDataKey is refused.
	BindAssociatedData
)

// String returns "context" or "associated_data".
func (b Binding) String() string {
	switch b {
	case BindContext:
		return "context"
	case BindAssociatedData:
		return "associated_data"
	}
	return fmt.Sprintf("vault.Binding(%d)", int(b))
}

// aadLabel is prepended to the caller's AAD in what Vault binds, so that it
// is never empty and is apart from other uses of the same transit key.
const aadLabel = "phicrypt/kms/vault/v1\x00"

// supportedTypes are the transit key types that authenticate their
// ciphertexts and can bind AAD both ways.
var supportedTypes = map[string]bool{
	"aes128-gcm96":      true,
	"aes256-gcm96":      true,
	"chacha20-poly1305": true,
}

// KEK is a transit key in Vault. It implements kms.KEK, kms.Identifier and
// kms.Rewrapper, and is safe for concurrent use. Close it when done.
type KEK struct {
	id        string
	address   string
	mount     string
	key       string
	keyType   string
	binding   Binding
	batchSize int

	client    *api.Client
	transport *http.Transport
	auth      *authenticator

	closeOnce sync.Once
	closed    atomic.Bool
	closeErr  error
}

var (
	_ kms.KEK        = (*KEK)(nil)
	_ kms.Identifier = (*KEK)(nil)
	_ kms.Rewrapper  = (*KEK)(nil)
)

var (
	keyNameRE = regexp.MustCompile(`^\w(?:[\w\-.@]{0,126}\w)?$`)
	mountRE   = regexp.MustCompile(`^[\w\-.@]+(?:/[\w\-.@]+)*$`)
)

// New returns the KEK that cfg describes, after logging in if AppRole is
// set and reading the key's configuration to choose how to bind the AAD.
// Errors are *kms.Error values of op "open".
func New(ctx context.Context, cfg Config) (*KEK, error) {
	if err := ctx.Err(); err != nil {
		return nil, kms.NewError(ctx, "open", "", err, nil)
	}
	k, err := newKEK(cfg)
	if err != nil {
		return nil, kms.NewError(ctx, "open", cfg.KeyID, kms.ErrInvalidInput, err)
	}
	token := cfg.Token
	if cfg.Client != nil && cfg.Token == "" && cfg.AppRole == nil && cfg.AuthMethod == nil {
		token = cfg.Client.Token()
	}
	auth := &authenticator{client: k.client, approle: cfg.AppRole, method: cfg.AuthMethod, token: token, logger: cfg.Logger}
	if auth.logger == nil {
		auth.logger = slog.New(slog.DiscardHandler)
	}
	secret, err := auth.start(ctx)
	if err != nil {
		_ = auth.close()
		k.closeIdleConnections()
		return nil, k.error(ctx, "open", err)
	}
	k.auth = auth
	info, err := k.KeyInfo(ctx)
	if err == nil {
		err = k.chooseBinding(info)
	}
	if err != nil {
		var kerr *kms.Error
		if errors.As(err, &kerr) {
			kerr.Op = "open"
		} else {
			err = kms.NewError(ctx, "open", k.id, kms.ErrInvalidInput, err)
		}
		_ = auth.close()
		k.closeIdleConnections()
		return nil, err
	}
	auth.run(secret)
	return k, nil
}

// newKEK checks cfg and builds the KEK's client, without calling Vault.
func newKEK(cfg Config) (*KEK, error) {
	switch {
	case cfg.Client != nil && (cfg.Address != "" || cfg.Namespace != "" || cfg.TLS.CACert != "" || len(cfg.TLS.CACertPEM) > 0 ||
		cfg.TLS.ClientCert != "" || cfg.TLS.ClientKey != "" || cfg.TLS.ServerName != "" || cfg.TLS.InsecureSkipVerify):
		return nil, errors.New("vault: with Config.Client, leave Address, TLS and Namespace empty: the client's are used")
	case cfg.Client == nil && cfg.Address == "":
		return nil, errors.New("vault: Config.Address is required")
	}
	mount := strings.Trim(cfg.Mount, "/")
	if mount == "" {
		mount = DefaultMount
	}
	if !mountRE.MatchString(mount) || strings.Contains("/"+mount+"/", "/../") || strings.Contains("/"+mount+"/", "/./") {
		return nil, fmt.Errorf("vault: invalid mount path %q", cfg.Mount)
	}
	if !keyNameRE.MatchString(cfg.Key) {
		return nil, fmt.Errorf("vault: invalid transit key name %q", cfg.Key)
	}
	ns := strings.Trim(cfg.Namespace, "/")
	if ns != "" && (!mountRE.MatchString(ns) || strings.Contains("/"+ns+"/", "/../")) {
		return nil, fmt.Errorf("vault: invalid namespace %q", cfg.Namespace)
	}
	auths := 0
	for _, set := range []bool{cfg.Token != "", cfg.AppRole != nil, cfg.AuthMethod != nil} {
		if set {
			auths++
		}
	}
	switch {
	case auths > 1 || auths == 0 && cfg.Client == nil:
		return nil, errors.New("vault: set exactly one of Config.Token, Config.AppRole and Config.AuthMethod")
	case auths == 0 && cfg.Client.Token() == "":
		return nil, errors.New("vault: Config.Client has no token: set it, or set Config.Token, Config.AppRole or Config.AuthMethod")
	}
	if ar := cfg.AppRole; ar != nil {
		if (ar.RoleID == "") == (ar.RoleIDFile == "") {
			return nil, errors.New("vault: set exactly one of AppRole.RoleID and AppRole.RoleIDFile")
		}
		if ar.SecretID != "" && ar.SecretIDFile != "" {
			return nil, errors.New("vault: set at most one of AppRole.SecretID and AppRole.SecretIDFile")
		}
		if m := strings.Trim(ar.Mount, "/"); m != "" && !mountRE.MatchString(m) {
			return nil, fmt.Errorf("vault: invalid AppRole mount path %q", ar.Mount)
		}
	}
	idCfg := cfg
	if cfg.Client != nil {
		idCfg.Namespace = cfg.Client.Namespace()
	}
	id := DefaultKeyID(idCfg)
	if err := kms.ValidateKeyID(id); err != nil {
		return nil, err
	}
	batch := cfg.RewrapBatchSize
	switch {
	case batch == 0:
		batch = DefaultRewrapBatchSize
	case batch < 0 || batch > MaxRewrapBatchSize:
		return nil, fmt.Errorf("vault: Config.RewrapBatchSize must be 1 to %d", MaxRewrapBatchSize)
	}
	if cfg.Client != nil {
		client, err := cfg.Client.Clone()
		if err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		// Retries belong to kms.Resilient; the token, namespace and
		// request header are set on the clone whatever its Clone* settings.
		client.SetMaxRetries(0)
		client.SetToken(cfg.Client.Token())
		client.AddHeader(api.RequestHeaderName, "true")
		if ns := cfg.Client.Namespace(); ns != "" {
			client.SetNamespace(ns)
		}
		return &KEK{id: id, address: client.Address(), mount: mount, key: cfg.Key, batchSize: batch, client: client}, nil
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}

	// The client is built from Config alone: api.DefaultConfig would read
	// VAULT_ADDR, VAULT_SKIP_VERIFY and others from the environment.
	transport := cleanhttp.DefaultPooledTransport()
	// ConfigureTLS below fills in this config, and silently does nothing
	// without one.
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	ac := &api.Config{
		Address: cfg.Address,
		HttpClient: &http.Client{
			Transport: transport,
			// Vault answers some requests with redirects that the client
			// follows itself.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			// The timeout is the http.Client's, which covers reading the
			// body, rather than api.Config.Timeout, which cancels the
			// request when the api call returns and so cuts large
			// responses to raw requests short.
			Timeout: timeout,
		},
		// Retries belong to the kms retry decorator, which retries only
		// transient errors and honours the caller's context.
		MaxRetries: 0,
	}
	t := cfg.TLS
	if err := ac.ConfigureTLS(&api.TLSConfig{
		CACert:        t.CACert,
		CACertBytes:   t.CACertPEM,
		ClientCert:    t.ClientCert,
		ClientKey:     t.ClientKey,
		TLSServerName: t.ServerName,
		Insecure:      t.InsecureSkipVerify,
	}); err != nil {
		return nil, fmt.Errorf("vault: TLS configuration: %w", err)
	}
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	// api.NewClient reads VAULT_TOKEN, VAULT_NAMESPACE and VAULT_HEADERS:
	// undo that.
	client.ClearToken()
	client.SetHeaders(http.Header{api.RequestHeaderName: []string{"true"}})
	client.ClearNamespace()
	if ns != "" {
		client.SetNamespace(ns)
	}
	return &KEK{
		id:        id,
		address:   client.Address(),
		mount:     mount,
		key:       cfg.Key,
		batchSize: batch,
		client:    client,
		transport: transport,
	}, nil
}

// closeIdleConnections closes the idle connections of the transport that
// the KEK made, and leaves an application's client alone.
func (k *KEK) closeIdleConnections() {
	if k.transport != nil {
		k.transport.CloseIdleConnections()
	}
}

// DefaultKeyID returns the key id of the KEK that cfg describes:
// cfg.KeyID if set, else "vault:" followed by the namespace (if any), the
// mount and the key, as in "vault:transit/phi". It does not name the
// server.
func DefaultKeyID(cfg Config) string {
	if cfg.KeyID != "" {
		return cfg.KeyID
	}
	mount := strings.Trim(cfg.Mount, "/")
	if mount == "" {
		mount = DefaultMount
	}
	return "vault:" + strings.TrimPrefix(strings.Trim(cfg.Namespace, "/")+"/"+mount+"/"+cfg.Key, "/")
}

// KeyInfo is the configuration of a transit key, as Vault reports it.
type KeyInfo struct {
	// Type is the key type, e.g. "aes256-gcm96".
	Type string `json:"type"`
	// Derived reports whether the key derives a key per context.
	Derived bool `json:"derived"`
	// Convergent reports deterministic encryption (refused by New).
	Convergent bool `json:"convergent_encryption"`
	// LatestVersion is the version that new wraps use.
	LatestVersion int `json:"latest_version"`
	// MinDecryptionVersion is the oldest version that still unwraps.
	MinDecryptionVersion int `json:"min_decryption_version"`
	// MinEncryptionVersion is the oldest version that may wrap (0: latest).
	MinEncryptionVersion int `json:"min_encryption_version"`
	// SupportsEncryption and SupportsDecryption report the key's
	// capabilities.
	SupportsEncryption bool `json:"supports_encryption"`
	SupportsDecryption bool `json:"supports_decryption"`
}

// KeyInfo reads the key's configuration (transit/keys/<key>), for example
// to find which wrapped keys are older than LatestVersion.
func (k *KEK) KeyInfo(ctx context.Context) (KeyInfo, error) {
	var info KeyInfo
	if err := k.begin(ctx, "info"); err != nil {
		return info, err
	}
	if err := k.call(ctx, "info", http.MethodGet, k.path("keys"), nil, &info); err != nil {
		return KeyInfo{}, err
	}
	return info, nil
}

// chooseBinding picks how to bind the AAD from the key's configuration,
// refusing keys that cannot bind it.
func (k *KEK) chooseBinding(info KeyInfo) error {
	k.keyType = info.Type
	switch {
	case !supportedTypes[info.Type]:
		return kms.NewError(context.Background(), "open", k.id, kms.ErrInvalidInput,
			fmt.Errorf("vault: transit key type %q cannot bind associated data; use aes256-gcm96, aes128-gcm96 or chacha20-poly1305", info.Type))
	case !info.SupportsEncryption || !info.SupportsDecryption:
		return kms.NewError(context.Background(), "open", k.id, kms.ErrInvalidInput, errors.New("vault: transit key does not support encryption"))
	case info.Convergent:
		return kms.NewError(context.Background(), "open", k.id, kms.ErrInvalidInput,
			errors.New("vault: transit key uses convergent (deterministic) encryption, which wrapping must not"))
	case info.Derived:
		k.binding = BindContext
	default:
		k.binding = BindAssociatedData
	}
	return nil
}

// KeyID returns the key id that wrapped keys carry.
func (k *KEK) KeyID() string { return k.id }

// Binding reports how the KEK binds the AAD, chosen from the key's
// configuration.
func (k *KEK) Binding() Binding { return k.binding }

// path returns the transit path of an endpoint for the key.
func (k *KEK) path(endpoint string) string {
	return k.mount + "/" + endpoint + "/" + k.key
}

// begin fails when ctx has ended or the KEK is closed.
func (k *KEK) begin(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return kms.NewError(ctx, op, k.id, err, nil)
	}
	if k.closed.Load() {
		return kms.NewError(ctx, op, k.id, kms.ErrUnavailable, fmt.Errorf("vault: KEK is closed: %w", net.ErrClosed))
	}
	return nil
}

// Wrap encrypts dek with the key's latest version (transit/encrypt),
// binding aad.
func (k *KEK) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	if err := k.begin(ctx, "wrap"); err != nil {
		return kms.WrappedKey{}, err
	}
	if err := kms.CheckWrap(dek, aad); err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrInvalidInput, err)
	}
	body := k.appendEncryptItem([]byte{}, dek, aad)
	defer clear(body)
	var out struct {
		Ciphertext string `json:"ciphertext"`
	}
	if err := k.call(ctx, "wrap", http.MethodPut, k.path("encrypt"), body, &out); err != nil {
		return kms.WrappedKey{}, err
	}
	ct := []byte(out.Ciphertext)
	if _, err := parseCiphertext(ct); err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrUnavailable, errors.New("vault: malformed ciphertext in response"))
	}
	return kms.WrappedKey{KeyID: k.id, Ciphertext: ct}, nil
}

// Unwrap decrypts a key wrapped by any version of the transit key that
// min_decryption_version allows (transit/decrypt), checking aad.
func (k *KEK) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	if err := k.begin(ctx, "unwrap"); err != nil {
		return nil, err
	}
	if err := k.checkUnwrap(wk, aad); err != nil {
		return nil, kms.NewError(ctx, "unwrap", k.id, kindOf(err), err)
	}
	body := k.appendDecryptItem([]byte{}, wk.Ciphertext, aad)
	var out struct {
		Plaintext []byte `json:"plaintext"`
	}
	if err := k.call(ctx, "unwrap", http.MethodPut, k.path("decrypt"), body, &out); err != nil {
		return nil, err
	}
	if len(out.Plaintext) < kms.MinDataKeySize || len(out.Plaintext) > kms.MaxDataKeySize {
		clear(out.Plaintext)
		return nil, kms.NewError(ctx, "unwrap", k.id, kms.ErrUnwrapFailed, errors.New("vault: decrypted value is not a data key"))
	}
	return out.Plaintext, nil
}

// checkUnwrap validates an Unwrap or Rewrap item before it is sent.
func (k *KEK) checkUnwrap(wk kms.WrappedKey, aad []byte) error {
	if err := kms.CheckUnwrap(k.id, wk, aad); err != nil {
		return err
	}
	if _, err := parseCiphertext(wk.Ciphertext); err != nil {
		return err
	}
	return nil
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

// appendAAD appends the JSON member that binds aad: "context" or
// "associated_data", base64 of the label and aad.
func (k *KEK) appendAAD(b, aad []byte) []byte {
	if k.binding == BindContext {
		b = append(b, `"context":"`...)
	} else {
		b = append(b, `"associated_data":"`...)
	}
	bound := make([]byte, 0, len(aadLabel)+len(aad))
	bound = append(append(bound, aadLabel...), aad...)
	b = base64.StdEncoding.AppendEncode(b, bound)
	return append(b, '"')
}

// appendEncryptItem appends {"plaintext":…,<aad>}. The request bodies are
// built by hand, into buffers that are cleared after use, rather than with
// encoding/json, whose pooled buffers would keep copies of data keys.
// Every value is base64 or a parsed ciphertext, so nothing needs escaping.
func (k *KEK) appendEncryptItem(b, dek, aad []byte) []byte {
	b = append(b, `{"plaintext":"`...)
	b = base64.StdEncoding.AppendEncode(b, dek)
	b = append(b, `",`...)
	b = k.appendAAD(b, aad)
	return append(b, '}')
}

// appendDecryptItem appends {"ciphertext":…,<aad>}; ct must have been
// checked by parseCiphertext.
func (k *KEK) appendDecryptItem(b, ct, aad []byte) []byte {
	b = append(b, `{"ciphertext":"`...)
	b = append(b, ct...)
	b = append(b, `",`...)
	b = k.appendAAD(b, aad)
	return append(b, '}')
}

// Close stops token renewal, revokes a token that the KEK obtained by
// logging in (waiting at most 5 seconds), and releases idle connections.
// Calls after Close fail with kms.ErrUnavailable. It is safe to call more
// than once.
func (k *KEK) Close() error {
	k.closeOnce.Do(func() {
		k.closed.Store(true)
		if k.auth != nil {
			if err := k.auth.close(); err != nil {
				k.closeErr = k.error(context.Background(), "close", err)
			}
		}
		k.closeIdleConnections()
	})
	return k.closeErr
}

// String returns the key id, address, mount, key and binding, never
// credentials.
func (k *KEK) String() string {
	return fmt.Sprintf("vault.KEK{KeyID: %q, Address: %q, Mount: %q, Key: %q, Binding: %s}", k.id, k.address, k.mount, k.key, k.binding)
}

// GoString is String.
func (k *KEK) GoString() string { return k.String() }

// Format prints String for every verb.
func (k *KEK) Format(f fmt.State, verb rune) { fmt.Fprint(f, k.String()) }

// LogValue logs the key id, address, mount, key and binding.
func (k *KEK) LogValue() slog.Value {
	return slog.GroupValue(slog.String("key_id", k.id), slog.String("address", k.address),
		slog.String("mount", k.mount), slog.String("key", k.key), slog.String("binding", k.binding.String()))
}

// MarshalJSON encodes what LogValue logs.
func (k *KEK) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		KeyID   string `json:"key_id"`
		Address string `json:"address"`
		Mount   string `json:"mount"`
		Key     string `json:"key"`
		Binding string `json:"binding"`
	}{k.id, k.address, k.mount, k.key, k.binding.String()})
}

// String describes the configuration without credentials.
func (c Config) String() string {
	var auths []string
	if c.Token != "" {
		auths = append(auths, "token")
	}
	if c.AppRole != nil {
		auths = append(auths, "approle")
	}
	if c.AuthMethod != nil {
		// The type only: an AuthMethod's fields may hold credentials.
		auths = append(auths, fmt.Sprintf("%T", c.AuthMethod))
	}
	auth := strings.Join(auths, " and ")
	switch {
	case auth == "" && c.Client != nil:
		auth = "client's token"
	case auth == "":
		auth = "none"
	}
	address := c.Address
	if c.Client != nil {
		address = c.Client.Address()
	}
	return fmt.Sprintf("vault.Config{Address: %q, Namespace: %q, Mount: %q, Key: %q, KeyID: %q, Auth: %s}",
		address, c.Namespace, c.Mount, c.Key, c.KeyID, auth)
}

// GoString is String.
func (c Config) GoString() string { return c.String() }

// Format prints String for every verb.
func (c Config) Format(f fmt.State, verb rune) { fmt.Fprint(f, c.String()) }

// LogValue logs the configuration without credentials.
func (c Config) LogValue() slog.Value {
	return slog.StringValue(c.String())
}

// MarshalJSON encodes the configuration without credentials.
func (c Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(c.String())
}

// String describes the AppRole configuration without credentials.
func (a AppRole) String() string {
	return fmt.Sprintf("vault.AppRole{Mount: %q, RoleIDFile: %q, SecretIDFile: %q}", a.Mount, a.RoleIDFile, a.SecretIDFile)
}

// GoString is String.
func (a AppRole) GoString() string { return a.String() }

// Format prints String for every verb.
func (a AppRole) Format(f fmt.State, verb rune) { fmt.Fprint(f, a.String()) }

// LogValue logs the AppRole configuration without credentials.
func (a AppRole) LogValue() slog.Value { return slog.StringValue(a.String()) }

// MarshalJSON encodes the AppRole configuration without credentials.
func (a AppRole) MarshalJSON() ([]byte, error) { return json.Marshal(a.String()) }
