// Package local is a KEK held in a local key file, for development, tests,
// CI and air-gapped sites. Production deployments should keep their KEK in
// a KMS or HSM (kms/vault, kms/awskms, kms/gcpkms, kms/pkcs11), where the
// key never reaches the application's memory; this package is the embedded
// default that makes phicrypt work with no server.
//
// # Key file
//
// A key file is JSON holding one key id and one or more key versions, each
// 256 random bits:
//
//	{
//	  "format": "phicrypt-local-kek/v1",
//	  "key_id": "local:hospital-main",
//	  "keys": [{"version": 1, "created": "2026-11-29T05:41:00Z", "secret": "…"}]
//	}
//
// Wrap uses the newest version; Unwrap uses the version a wrapped key names,
// so a rotated file (Rotate) still unwraps every key it wrapped before.
//
// With a passphrase, "keys" is replaced by "sealed": the key list encrypted
// with AES-256-GCM under a key derived from the passphrase with Argon2id
// (RFC 9106; by default 3 passes over 64 MiB with 4 lanes), whose
// parameters and salt are in "kdf". The key id is bound to the sealed list.
//
// Argon2id (and BLAKE2b, which it is built on) is not FIPS 140-3 approved,
// so in FIPS 140-3 mode (GODEBUG=fips140=on or only, see crypto/fips140)
// New, Create, Generate and Rotate refuse passphrase-sealed key files with
// ErrNotApproved, before any key derivation, as the envelope package
// refuses XChaCha20-Poly1305 and AES-SIV. An approved passphrase KDF
// (PBKDF2-HMAC-SHA-256) would be far weaker against offline guessing than
// Argon2id; a FIPS deployment keeps its KEK in a KMS or HSM, or uses an
// unsealed key file protected by the file system (mode 0600) or by its
// secret store. Unsealed key files use only AES-256-GCM and work in FIPS
// mode.
//
// Open refuses a key file that its owner's group or others can read or
// write (mode must be 0600 or stricter, except on Windows). For containers,
// New accepts the file's contents from an environment variable (Config.Env),
// as JSON or as base64 of the JSON.
//
// # Wrapped keys
//
// A wrapped key is 1 format byte (0x01), the key version as a big-endian
// uint32, then AES-256-GCM's random 96-bit nonce, the encrypted data key
// and the 128-bit tag. The first five bytes and the caller's AAD are the
// AEAD's associated data. A key version must not wrap more than 2^32 data
// keys (random nonces); rotate long before.
package local

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/fips140"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/phicrypt/phicrypt/internal/strictjson"
	"github.com/phicrypt/phicrypt/kms"
)

// FormatName identifies the key file format.
const FormatName = "phicrypt-local-kek/v1"

// wrapFormat is the first byte of a wrapped key.
const wrapFormat = 0x01

// wrapHeaderSize is the format byte and the key version.
const wrapHeaderSize = 5

// Errors specific to key files. Failures of Wrap and Unwrap use the kms
// sentinels.
var (
	// ErrInsecurePermissions means the key file is readable or writable by
	// its group or by others.
	ErrInsecurePermissions = errors.New("local: key file permissions are too open")
	// ErrPassphraseRequired means the key file is sealed with a passphrase
	// and none was given.
	ErrPassphraseRequired = errors.New("local: key file needs a passphrase")
	// ErrWrongPassphrase means the passphrase did not unseal the key file
	// (or the sealed part was altered).
	ErrWrongPassphrase = errors.New("local: wrong passphrase")
	// ErrInvalidKeyFile means the key file is malformed.
	ErrInvalidKeyFile = errors.New("local: invalid key file")
	// ErrNotApproved means a passphrase-sealed key file was opened or
	// asked for while the program runs in FIPS 140-3 mode
	// (GODEBUG=fips140=on or only): its key derivation, Argon2id, is not
	// FIPS 140-3 approved. Use an unsealed key file or a KMS instead.
	ErrNotApproved = errors.New("local: passphrase-sealed key files use Argon2id, which is not FIPS 140-3 approved, and FIPS mode is on")
)

// checkApproved refuses passphrase sealing in FIPS 140-3 mode.
func checkApproved() error {
	if fips140.Enabled() {
		return ErrNotApproved
	}
	return nil
}

// Config says where the key file is. Exactly one of Path, Env and Data must
// be set.
type Config struct {
	// Path is the key file's path. Its permissions are checked.
	Path string
	// Env is the name of an environment variable holding the key file, as
	// JSON or as base64 of the JSON.
	Env string
	// Data is the key file's contents.
	Data []byte
	// Passphrase unseals a passphrase-protected key file. Sealed files
	// are refused with ErrNotApproved in FIPS 140-3 mode, passphrase or
	// not.
	Passphrase []byte
}

// redacted describes a secret by whether it is set, never by its value.
func redacted(b []byte) string {
	if len(b) == 0 {
		return "none"
	}
	return "REDACTED"
}

// String describes the configuration with the key file's contents shown
// by their size only and the passphrase redacted.
func (c Config) String() string {
	return fmt.Sprintf("local.Config{Path: %q, Env: %q, Data: %d bytes, Passphrase: %s}",
		c.Path, c.Env, len(c.Data), redacted(c.Passphrase))
}

// GoString is String.
func (c Config) GoString() string { return c.String() }

// Format prints String for every verb, so that no verb prints the key
// file's contents or the passphrase.
func (c Config) Format(f fmt.State, verb rune) { fmt.Fprint(f, c.String()) }

// LogValue logs String.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalJSON encodes String.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// KEK is a key-encryption key from a local key file. It implements
// kms.KEK and is safe for concurrent use.
type KEK struct {
	id       string
	current  uint32
	versions map[uint32]cipher.AEAD
}

var (
	_ kms.KEK        = (*KEK)(nil)
	_ kms.Identifier = (*KEK)(nil)
)

// New loads the KEK that cfg points to. Its errors are *kms.Error values
// (see kms.ErrKeyNotFound for a missing key file); the errors of this
// package (ErrInvalidKeyFile, ErrInsecurePermissions, …) match them too.
func New(cfg Config) (*KEK, error) {
	k, err := open(cfg)
	return k, fileError("open", err)
}

// fileError returns err, a failure to read, write or unseal a key file, as
// a *kms.Error of op whose kind callers can branch on whatever the
// backend: kms.ErrKeyNotFound for a missing file or an unset environment
// variable, kms.ErrPermissionDenied for a file that may not be read or
// whose permissions are too open and for a missing or wrong passphrase,
// kms.ErrInvalidInput for a malformed file or a sealed one in FIPS mode,
// and kms.ErrUnavailable for other I/O failures. The specific errors of
// this package still match with errors.Is.
func fileError(op string, err error) error {
	var kerr *kms.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &kerr):
		return err
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNoEnv):
		return kms.NewError(context.Background(), op, "", kms.ErrKeyNotFound, err)
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, ErrInsecurePermissions) ||
		errors.Is(err, ErrPassphraseRequired) || errors.Is(err, ErrWrongPassphrase):
		return kms.NewError(context.Background(), op, "", kms.ErrPermissionDenied, err)
	case errors.Is(err, ErrInvalidKeyFile) || errors.Is(err, ErrNotApproved) || errors.Is(err, kms.ErrInvalidInput) ||
		errors.Is(err, fs.ErrExist):
		return kms.NewError(context.Background(), op, "", kms.ErrInvalidInput, err)
	default:
		return kms.NewError(context.Background(), op, "", kms.ErrUnavailable, err)
	}
}

// errNoEnv is the cause of an unset or empty key file variable.
var errNoEnv = errors.New("environment variable not set")

func open(cfg Config) (*KEK, error) {
	set := 0
	for _, ok := range []bool{cfg.Path != "", cfg.Env != "", cfg.Data != nil} {
		if ok {
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("%w: set exactly one of Config.Path, Config.Env and Config.Data", ErrInvalidKeyFile)
	}
	data := cfg.Data
	switch {
	case cfg.Path != "":
		var err error
		if data, err = readKeyFile(cfg.Path); err != nil {
			return nil, err
		}
		defer clear(data)
	case cfg.Env != "":
		v, ok := os.LookupEnv(cfg.Env)
		if !ok || v == "" {
			return nil, fmt.Errorf("%w: %w: %s", ErrInvalidKeyFile, errNoEnv, cfg.Env)
		}
		v = strings.TrimSpace(v)
		if strings.HasPrefix(v, "{") {
			data = []byte(v)
		} else {
			var err error
			if data, err = base64.StdEncoding.DecodeString(v); err != nil {
				if data, err = base64.RawURLEncoding.DecodeString(v); err != nil {
					return nil, fmt.Errorf("%w: %s holds neither JSON nor base64", ErrInvalidKeyFile, cfg.Env)
				}
			}
		}
		defer clear(data)
	}
	f, err := parse(data)
	if err != nil {
		return nil, err
	}
	keys, err := f.unseal(cfg.Passphrase)
	if err != nil {
		return nil, err
	}
	defer clearKeys(keys)
	return newKEK(f.KeyID, keys)
}

func readKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("local: %w (create one with local.Create or phicrypt keys init --create)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrInvalidKeyFile, path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o, want 0600 (chmod 600 %s)", ErrInsecurePermissions, path, fi.Mode().Perm(), path)
	}
	if fi.Size() > maxFileSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalidKeyFile, path, maxFileSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	return data, nil
}

// maxFileSize and maxVersions bound what a key file may hold.
const (
	maxFileSize = 1 << 20
	maxVersions = 10000
)

func newKEK(id string, keys []keyVersion) (*KEK, error) {
	k := &KEK{id: id, versions: make(map[uint32]cipher.AEAD, len(keys))}
	for _, kv := range keys {
		b, err := aes.NewCipher(kv.Secret)
		if err != nil {
			return nil, fmt.Errorf("%w: version %d: %v", ErrInvalidKeyFile, kv.Version, err)
		}
		a, err := cipher.NewGCMWithRandomNonce(b)
		if err != nil {
			return nil, fmt.Errorf("local: %w", err)
		}
		k.versions[kv.Version] = a
		k.current = max(k.current, kv.Version)
	}
	return k, nil
}

// KeyID returns the key id that wrapped keys carry.
func (k KEK) KeyID() string { return k.id }

// Version returns the version new wraps use.
func (k KEK) Version() uint32 { return k.current }

// Wrap encrypts dek under the newest key version, binding aad.
func (k *KEK) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	if err := ctx.Err(); err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, err, nil)
	}
	if err := kms.CheckWrap(dek, aad); err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrInvalidInput, err)
	}
	a := k.versions[k.current]
	var hdr [wrapHeaderSize]byte
	hdr[0] = wrapFormat
	binary.BigEndian.PutUint32(hdr[1:], k.current)
	ct := make([]byte, 0, wrapHeaderSize+a.Overhead()+len(dek))
	ct = a.Seal(append(ct, hdr[:]...), nil, dek, additionalData(hdr[:], aad))
	return kms.WrappedKey{KeyID: k.id, Ciphertext: ct}, nil
}

// Unwrap decrypts a key wrapped by any version of this KEK.
func (k *KEK) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, kms.NewError(ctx, "unwrap", k.id, err, nil)
	}
	if err := kms.CheckUnwrap(k.id, wk, aad); err != nil {
		return nil, kms.NewError(ctx, "unwrap", k.id, kindOf(err), err)
	}
	ct := wk.Ciphertext
	if len(ct) < wrapHeaderSize || ct[0] != wrapFormat {
		return nil, kms.NewError(ctx, "unwrap", k.id, kms.ErrUnwrapFailed, nil)
	}
	a, ok := k.versions[binary.BigEndian.Uint32(ct[1:])]
	if !ok {
		// A version this file does not hold looks like tampering, and is
		// reported the same way.
		return nil, kms.NewError(ctx, "unwrap", k.id, kms.ErrUnwrapFailed, nil)
	}
	dek, err := a.Open(nil, nil, ct[wrapHeaderSize:], additionalData(ct[:wrapHeaderSize], aad))
	if err != nil {
		return nil, kms.NewError(ctx, "unwrap", k.id, kms.ErrUnwrapFailed, nil)
	}
	return dek, nil
}

// additionalData is the AEAD's associated data: the wrapped key's header
// and the caller's AAD.
func additionalData(hdr, aad []byte) []byte {
	ad := make([]byte, 0, len(hdr)+len(aad))
	return append(append(ad, hdr...), aad...)
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

// String returns the key id and the number of versions, never key bytes.
func (k KEK) String() string {
	return fmt.Sprintf("local.KEK{KeyID: %q, Version: %d, Versions: %d}", k.id, k.current, len(k.versions))
}

// GoString is String.
func (k KEK) GoString() string { return k.String() }

// Format prints String for every verb.
func (k KEK) Format(f fmt.State, verb rune) { fmt.Fprint(f, k.String()) }

// LogValue logs the key id and version.
func (k KEK) LogValue() slog.Value {
	return slog.GroupValue(slog.String("key_id", k.id), slog.Uint64("version", uint64(k.current)))
}

// MarshalJSON encodes the key id and version.
func (k KEK) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		KeyID   string `json:"key_id"`
		Version uint32 `json:"version"`
	}{k.id, k.current})
}

// file is the JSON form of a key file.
type file struct {
	Format string       `json:"format"`
	KeyID  string       `json:"key_id"`
	Keys   []keyVersion `json:"keys,omitempty"`
	KDF    *kdfParams   `json:"kdf,omitempty"`
	Sealed []byte       `json:"sealed,omitempty"`
}

type keyVersion struct {
	Version uint32    `json:"version"`
	Created time.Time `json:"created"`
	Secret  []byte    `json:"secret"`
}

// kdfParams are Argon2id's parameters.
type kdfParams struct {
	Algorithm string `json:"algorithm"`
	Salt      []byte `json:"salt"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// Argon2id limits: defaults from RFC 9106 section 4 (second recommended
// option), and caps that keep a hostile key file from exhausting memory.
const (
	defaultTime      = 3
	defaultMemoryKiB = 64 << 10
	defaultThreads   = 4
	maxTime          = 64
	maxMemoryKiB     = 4 << 20
)

func parse(data []byte) (*file, error) {
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidKeyFile, maxFileSize)
	}
	var f file
	if err := strictjson.Decode(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKeyFile, err)
	}
	if f.Format != FormatName {
		return nil, fmt.Errorf("%w: format is not %q", ErrInvalidKeyFile, FormatName)
	}
	if err := kms.ValidateKeyID(f.KeyID); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKeyFile, err)
	}
	switch {
	case f.KDF == nil && f.Sealed == nil:
		if err := checkKeys(f.Keys); err != nil {
			return nil, err
		}
	case f.KDF != nil && f.Sealed != nil && f.Keys == nil:
		p := f.KDF
		if p.Algorithm != "argon2id" || len(p.Salt) < 16 || p.Time < 1 || p.Time > maxTime ||
			p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxMemoryKiB || p.Threads < 1 {
			return nil, fmt.Errorf("%w: unsupported or out-of-range kdf parameters", ErrInvalidKeyFile)
		}
	default:
		return nil, fmt.Errorf("%w: needs either keys, or kdf and sealed", ErrInvalidKeyFile)
	}
	return &f, nil
}

func checkKeys(keys []keyVersion) error {
	if len(keys) == 0 || len(keys) > maxVersions {
		return fmt.Errorf("%w: needs 1 to %d key versions", ErrInvalidKeyFile, maxVersions)
	}
	seen := make(map[uint32]bool, len(keys))
	for _, kv := range keys {
		if kv.Version == 0 || seen[kv.Version] {
			return fmt.Errorf("%w: key versions must be positive and distinct", ErrInvalidKeyFile)
		}
		seen[kv.Version] = true
		if len(kv.Secret) != 32 {
			return fmt.Errorf("%w: version %d secret is not 256 bits", ErrInvalidKeyFile, kv.Version)
		}
	}
	return nil
}

func clearKeys(keys []keyVersion) {
	for _, kv := range keys {
		clear(kv.Secret)
	}
}

// sealAAD binds the key id and the kdf parameters to the sealed key list.
func (f *file) sealAAD() []byte {
	p := f.KDF
	return fmt.Appendf(nil, "%s\x00%s\x00%s\x00%x\x00%d\x00%d\x00%d", FormatName, f.KeyID, p.Algorithm, p.Salt, p.Time, p.MemoryKiB, p.Threads)
}

func (p *kdfParams) key(passphrase []byte) []byte {
	return argon2.IDKey(passphrase, p.Salt, p.Time, p.MemoryKiB, p.Threads, 32)
}

func sealer(key []byte) cipher.AEAD {
	b, _ := aes.NewCipher(key) // a 32-byte key never fails
	a, _ := cipher.NewGCMWithRandomNonce(b)
	return a
}

// unseal returns the file's key versions, unsealing them with passphrase
// if the file is protected.
func (f *file) unseal(passphrase []byte) ([]keyVersion, error) {
	if f.KDF == nil {
		if len(passphrase) > 0 {
			return nil, fmt.Errorf("%w: a passphrase was given but the key file is not sealed", ErrInvalidKeyFile)
		}
		return f.Keys, nil
	}
	if err := checkApproved(); err != nil {
		return nil, err
	}
	if len(passphrase) == 0 {
		return nil, ErrPassphraseRequired
	}
	key := f.KDF.key(passphrase)
	defer clear(key)
	plain, err := sealer(key).Open(nil, nil, f.Sealed, f.sealAAD())
	if err != nil {
		return nil, ErrWrongPassphrase
	}
	defer clear(plain)
	var keys []keyVersion
	if err := strictjson.Decode(plain, &keys); err != nil {
		return nil, fmt.Errorf("%w: sealed keys: %v", ErrInvalidKeyFile, err)
	}
	if err := checkKeys(keys); err != nil {
		clearKeys(keys)
		return nil, err
	}
	return keys, nil
}

// seal replaces the file's keys with their sealed form under a new salt.
func (f *file) seal(keys []keyVersion, passphrase []byte, p kdfParams) error {
	if err := checkApproved(); err != nil {
		return err
	}
	p.Algorithm = "argon2id"
	p.Salt = make([]byte, 16)
	rand.Read(p.Salt)
	f.KDF, f.Keys = &p, nil
	plain, err := json.Marshal(keys)
	if err != nil {
		return fmt.Errorf("local: %w", err)
	}
	defer clear(plain)
	key := p.key(passphrase)
	defer clear(key)
	f.Sealed = sealer(key).Seal(nil, nil, plain, f.sealAAD())
	return nil
}

// Options configure Generate and Create.
type Options struct {
	// KeyID is the key id, e.g. "local:hospital-main". By default
	// "local:" followed by 16 random hex digits.
	KeyID string
	// Passphrase, if set, seals the key file (Argon2id + AES-256-GCM).
	// Refused with ErrNotApproved in FIPS 140-3 mode.
	Passphrase []byte
	// Argon2id cost; RFC 9106's second recommended option (3 passes,
	// 64 MiB, 4 lanes) when zero.
	ArgonTime      uint32
	ArgonMemoryKiB uint32
	ArgonThreads   uint8
	// Now is the clock for "created"; time.Now when nil.
	Now func() time.Time
}

// String describes the options with the passphrase redacted.
func (o Options) String() string {
	return fmt.Sprintf("local.Options{KeyID: %q, Passphrase: %s, ArgonTime: %d, ArgonMemoryKiB: %d, ArgonThreads: %d}",
		o.KeyID, redacted(o.Passphrase), o.ArgonTime, o.ArgonMemoryKiB, o.ArgonThreads)
}

// GoString is String.
func (o Options) GoString() string { return o.String() }

// Format prints String for every verb, so that no verb prints the
// passphrase.
func (o Options) Format(f fmt.State, verb rune) { fmt.Fprint(f, o.String()) }

// LogValue logs String.
func (o Options) LogValue() slog.Value { return slog.StringValue(o.String()) }

// MarshalJSON encodes String.
func (o Options) MarshalJSON() ([]byte, error) { return json.Marshal(o.String()) }

func (o *Options) kdf() kdfParams {
	p := kdfParams{Time: o.ArgonTime, MemoryKiB: o.ArgonMemoryKiB, Threads: o.ArgonThreads}
	if p.Time == 0 {
		p.Time = defaultTime
	}
	if p.MemoryKiB == 0 {
		p.MemoryKiB = defaultMemoryKiB
	}
	if p.Threads == 0 {
		p.Threads = defaultThreads
	}
	return p
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now().UTC()
	}
	return time.Now().UTC()
}

func newVersion(v uint32, created time.Time) keyVersion {
	secret := make([]byte, 32)
	rand.Read(secret)
	return keyVersion{Version: v, Created: created.Truncate(time.Second), Secret: secret}
}

// Generate returns the contents of a new key file with one key version.
func Generate(opts Options) ([]byte, error) {
	v, err := generate(opts)
	return v, fileError("generate", err)
}

func generate(opts Options) ([]byte, error) {
	id := opts.KeyID
	if id == "" {
		r := make([]byte, 8)
		rand.Read(r)
		id = fmt.Sprintf("local:%x", r)
	}
	if err := kms.ValidateKeyID(id); err != nil {
		return nil, err
	}
	keys := []keyVersion{newVersion(1, opts.now())}
	defer clearKeys(keys)
	return encode(&file{Format: FormatName, KeyID: id}, keys, opts)
}

func encode(f *file, keys []keyVersion, opts Options) ([]byte, error) {
	if len(opts.Passphrase) > 0 {
		if err := f.seal(keys, opts.Passphrase, opts.kdf()); err != nil {
			return nil, err
		}
	} else {
		f.Keys, f.KDF, f.Sealed = keys, nil, nil
	}
	return json.MarshalIndent(f, "", "  ")
}

// Create writes a new key file at path with mode 0600 and returns its KEK.
// It fails if path exists.
func Create(path string, opts Options) (*KEK, error) {
	v, err := create(path, opts)
	return v, fileError("create", err)
}

func create(path string, opts Options) (*KEK, error) {
	data, err := Generate(opts)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	if err := writeFile(path, data, false); err != nil {
		return nil, err
	}
	return open(Config{Data: data, Passphrase: opts.Passphrase})
}

// Rotate adds a new key version to the key file at path, which becomes the
// version that wraps; older versions stay to unwrap what they wrapped. The
// file is replaced atomically. opts.Passphrase must be the file's passphrase
// if it has one (the file is resealed under a new salt); opts.KeyID must be
// empty or the file's key id. A file whose newest version is 2^32-1 cannot
// be rotated (ErrInvalidKeyFile) and is left as it is.
func Rotate(path string, opts Options) (*KEK, error) {
	v, err := rotate(path, opts)
	return v, fileError("rotate", err)
}

func rotate(path string, opts Options) (*KEK, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	f, err := parse(data)
	if err != nil {
		return nil, err
	}
	if opts.KeyID != "" && opts.KeyID != f.KeyID {
		return nil, fmt.Errorf("%w: key file holds key id %q, not %q", ErrInvalidKeyFile, f.KeyID, opts.KeyID)
	}
	keys, err := f.unseal(opts.Passphrase)
	if err != nil {
		return nil, err
	}
	keys = slices.Clone(keys)
	defer clearKeys(keys)
	if len(keys) >= maxVersions {
		return nil, fmt.Errorf("%w: already %d versions", ErrInvalidKeyFile, len(keys))
	}
	var latest uint32
	for _, kv := range keys {
		latest = max(latest, kv.Version)
	}
	if latest == math.MaxUint32 {
		// latest+1 would wrap to 0, which is not a valid version: the
		// file written would no longer open.
		return nil, fmt.Errorf("%w: version %d is the last one", ErrInvalidKeyFile, latest)
	}
	keys = append(keys, newVersion(latest+1, opts.now()))
	if f.KDF != nil && opts.ArgonTime == 0 && opts.ArgonMemoryKiB == 0 && opts.ArgonThreads == 0 {
		opts.ArgonTime, opts.ArgonMemoryKiB, opts.ArgonThreads = f.KDF.Time, f.KDF.MemoryKiB, f.KDF.Threads
	}
	out, err := encode(f, keys, opts)
	if err != nil {
		return nil, err
	}
	defer clear(out)
	if err := writeFile(path, out, true); err != nil {
		return nil, err
	}
	return open(Config{Data: out, Passphrase: opts.Passphrase})
}

// writeFile writes data to path with mode 0600 through a temporary file in
// the same directory, synced and renamed into place. Unless replace is set,
// it fails if path exists.
func writeFile(path string, data []byte, replace bool) error {
	if !replace {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("local: %s: %w", path, fs.ErrExist)
		}
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".phicrypt-kek-*")
	if err != nil {
		return fmt.Errorf("local: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("local: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("local: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("local: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("local: %w", err)
	}
	if !replace {
		// Link fails if path appeared since the check: no file is ever
		// overwritten by Create.
		if err := os.Link(tmp.Name(), path); err != nil {
			return fmt.Errorf("local: %w", err)
		}
	} else if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("local: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
