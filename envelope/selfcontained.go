package envelope

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phicrypt/phicrypt/internal/format"
	"github.com/phicrypt/phicrypt/internal/kdf"
	"github.com/phicrypt/phicrypt/internal/keycache"
	"github.com/phicrypt/phicrypt/kms"
)

// Defaults of SelfContainedConfig.
const (
	DefaultDataKeyMaxAge      = 10 * time.Minute
	DefaultDataKeyMaxMessages = 1 << 24
	DefaultCacheMaxEntries    = 1024
	DefaultCacheMaxAge        = 10 * time.Minute
	// DefaultFailedUnwrapMaxEntries and DefaultFailedUnwrapMaxAge bound
	// the memory of failed unwraps (see SelfContainedConfig).
	DefaultFailedUnwrapMaxEntries = 1024
	DefaultFailedUnwrapMaxAge     = time.Minute
	// MaxDataKeyMessages is the largest DataKeyMaxMessages: 2^32, the
	// limit for random 96-bit nonces (NIST SP 800-38D, section 8.3).
	MaxDataKeyMessages = 1 << 32
)

// SelfContainedConfig configures a SelfContained.
type SelfContainedConfig struct {
	// KEK wraps the data keys. Required.
	KEK kms.KEK
	// Suite encrypts values: AES256GCM (the default) or XChaCha20Poly1305.
	Suite Suite
	// Encoding of Encrypt's output; Binary by default.
	Encoding Encoding
	// MaxPlaintextSize is the largest value Encrypt accepts and Decrypt
	// will produce; DefaultMaxPlaintextSize when zero.
	MaxPlaintextSize int

	// DataKeyMaxAge is how long one data key keeps encrypting new values of
	// a scope before a new one is generated and wrapped
	// (DefaultDataKeyMaxAge when zero). A negative value generates and
	// wraps a new data key for every value: one KMS call per Encrypt.
	DataKeyMaxAge time.Duration
	// DataKeyMaxMessages is how many values one data key encrypts at most
	// (DefaultDataKeyMaxMessages when zero, at most MaxDataKeyMessages).
	DataKeyMaxMessages uint64

	// CacheMaxEntries bounds the unwrapped data keys kept for Decrypt, and
	// the scopes Encrypt keeps a data key for (DefaultCacheMaxEntries when
	// zero).
	CacheMaxEntries int
	// CacheMaxAge is how long an unwrapped data key serves Decrypt
	// (DefaultCacheMaxAge when zero). A negative value disables the cache:
	// one KMS call per Decrypt.
	CacheMaxAge time.Duration

	// FailedUnwrapMaxEntries bounds how many failed unwraps are
	// remembered (DefaultFailedUnwrapMaxEntries when zero), and
	// FailedUnwrapMaxAge how long each is (DefaultFailedUnwrapMaxAge when
	// zero; a negative value remembers none). An unwrap that the KEK
	// refuses as inauthentic (kms.ErrUnwrapFailed, or a data key of the
	// wrong size) is remembered by the SHA-256 of its KEK id, AAD (suite
	// and scope) and wrapped key, and Decrypt and DecryptStream refuse the
	// same combination with ErrDecrypt, without calling the KMS, until it
	// is forgotten: N copies of one tampered value cost one KMS call per
	// FailedUnwrapMaxAge, not N. Transient failures (kms.ErrUnavailable,
	// timeouts, cancellation, kms.ErrPermissionDenied, kms.ErrKeyNotFound)
	// are never remembered. Each distinct forged wrapped key still costs
	// one KMS call: bound those with the KMS's own quotas or a
	// kms.Breaker.
	FailedUnwrapMaxEntries int
	FailedUnwrapMaxAge     time.Duration

	// Observe, if set, receives a CacheEvent each time a failed unwrap is
	// remembered or refuses a value, for metrics. It runs on the caller's
	// goroutine, so it must be quick and safe for concurrent use. (KMS
	// calls themselves are observed with kms.WithObserver.)
	Observe func(context.Context, CacheEvent)

	// StreamSegmentSize is the plaintext size of the segments that
	// EncryptStream writes, from MinStreamSegmentSize to
	// MaxStreamSegmentSize (DefaultStreamSegmentSize when zero).
	// DecryptStream reads any size in that range: a stream records its
	// own.
	StreamSegmentSize int
}

// Ops of a CacheEvent.
const (
	// OpUnwrapFailed: the KEK refused to unwrap a data key as
	// inauthentic, and the failure is now remembered.
	OpUnwrapFailed = "unwrap-failed"
	// OpFailedUnwrapHit: a remembered failure refused a value without a
	// KMS call (a negative-cache hit).
	OpFailedUnwrapHit = "failed-unwrap-hit"
)

// A CacheEvent describes what a SelfContained's cache of failed unwraps
// did, for metrics (see SelfContainedConfig.Observe). It never holds key
// material, wrapped keys, AAD or ciphertexts.
type CacheEvent struct {
	// Op is OpUnwrapFailed or OpFailedUnwrapHit.
	Op string
	// KEKID is the KEK id that the ciphertext names.
	KEKID string
}

// SelfContained encrypts values in the self-contained form: each ciphertext
// carries its data key, wrapped by the KEK, and a commitment to that key.
// It is the form for documents, blobs and exports that travel without a
// keyring: only the KEK is needed to decrypt.
//
// Unlike an envelope AEAD that calls the KMS for every value (Tink's
// KMSEnvelopeAEAD), a SelfContained reuses a data key per scope for a
// bounded time and number of values, and caches unwrapped data keys for
// Decrypt, so a batch costs one KMS call per scope, not per value. Values
// encrypted under one cached data key share its wrapped key and
// commitment; each has its own random nonce.
//
// EncryptStream and DecryptStream encrypt large attachments in the stream
// form, with the same KEK, data keys and caches.
//
// The caches keep each data key's bytes, from which stream keys are
// derived, and zero them when the entry is evicted or expires; a data key
// that no cache keeps (CacheMaxAge or DataKeyMaxAge negative) is zeroed
// once the call that unwrapped or generated it is done with it. The AEAD
// state derived from a data key (the AES key schedule inside
// crypto/cipher) cannot be cleared from Go: it goes to the garbage
// collector with the entry.
//
// A SelfContained is safe for concurrent use.
type SelfContained struct {
	kek         kms.KEK
	suite       Suite
	encoding    Encoding
	max         int
	maxMessages uint64
	segmentSize int
	sealing     *keycache.Cache[*sealingKey]
	opening     *keycache.Cache[*openingKey]
	// failed remembers failed unwraps by failedKey; nil when disabled.
	failed  *keycache.Cache[struct{}]
	observe func(context.Context, CacheEvent)
	// writerBufs are the buffers of closed stream writers (*streamBuf),
	// for the next stream: all of this SelfContained's streams have the
	// same segment size.
	writerBufs *sync.Pool
}

// rawKey holds a data key's bytes for deriving stream keys, until wipe
// zeroes them. Readers hold the read lock while they derive, so a key is
// never zeroed while in use.
type rawKey struct {
	mu sync.RWMutex
	b  []byte // nil once wiped
}

func newRawKey(dek []byte) *rawKey { return &rawKey{b: bytes.Clone(dek)} }

// deriveStream derives the AEAD of the stream with salt; ok is false if
// the key has been wiped.
func (r *rawKey) deriveStream(suite Suite, salt []byte) (a cipher.AEAD, ok bool, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.b == nil {
		return nil, false, nil
	}
	a, err = deriveStreamAEAD(suite, r.b, salt)
	return a, true, err
}

// wipe zeroes the key and drops it.
func (r *rawKey) wipe() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.b)
	r.b = nil
}

// sealingKey is a data key in use for encryption, with its header.
type sealingKey struct {
	aead   cipher.AEAD
	header []byte
	used   atomic.Uint64
	// dek is the data key itself, from which each stream's key is
	// derived with the stream's salt; wrapped and commitment go into
	// stream headers.
	dek        *rawKey
	wrapped    kms.WrappedKey
	commitment []byte
}

// openingKey is an unwrapped data key. The cache holds it under what it
// was unwrapped for (appendOpeningCacheKey).
type openingKey struct {
	aead       cipher.AEAD
	commitment []byte
	dek        *rawKey // derives the keys of streams
}

// NewSelfContained returns a SelfContained for cfg.
func NewSelfContained(cfg SelfContainedConfig) (*SelfContained, error) {
	if cfg.KEK == nil {
		return nil, fmt.Errorf("envelope: SelfContainedConfig.KEK is nil")
	}
	if cfg.Suite == 0 {
		cfg.Suite = AES256GCM
	}
	if cfg.Suite != AES256GCM && cfg.Suite != XChaCha20Poly1305 {
		return nil, fmt.Errorf("envelope: suite %v cannot be used in the self-contained form", cfg.Suite)
	}
	if _, err := deriveAEAD(cfg.Suite, make([]byte, DEKSize)); err != nil {
		return nil, err // e.g. a suite refused in FIPS mode
	}
	if cfg.Encoding > Text {
		return nil, fmt.Errorf("envelope: unknown encoding %d", cfg.Encoding)
	}
	m, err := maxSize(cfg.MaxPlaintextSize)
	if err != nil {
		return nil, err
	}
	if cfg.DataKeyMaxAge == 0 {
		cfg.DataKeyMaxAge = DefaultDataKeyMaxAge
	}
	if cfg.DataKeyMaxMessages == 0 {
		cfg.DataKeyMaxMessages = DefaultDataKeyMaxMessages
	}
	if cfg.DataKeyMaxMessages > MaxDataKeyMessages {
		return nil, fmt.Errorf("envelope: DataKeyMaxMessages %d is above %d", cfg.DataKeyMaxMessages, uint64(MaxDataKeyMessages))
	}
	if cfg.CacheMaxEntries == 0 {
		cfg.CacheMaxEntries = DefaultCacheMaxEntries
	}
	if cfg.CacheMaxAge == 0 {
		cfg.CacheMaxAge = DefaultCacheMaxAge
	}
	if cfg.FailedUnwrapMaxEntries == 0 {
		cfg.FailedUnwrapMaxEntries = DefaultFailedUnwrapMaxEntries
	}
	if cfg.FailedUnwrapMaxAge == 0 {
		cfg.FailedUnwrapMaxAge = DefaultFailedUnwrapMaxAge
	}
	if cfg.StreamSegmentSize == 0 {
		cfg.StreamSegmentSize = DefaultStreamSegmentSize
	}
	if cfg.StreamSegmentSize < MinStreamSegmentSize || cfg.StreamSegmentSize > MaxStreamSegmentSize {
		return nil, fmt.Errorf("envelope: StreamSegmentSize %d is outside %d..%d", cfg.StreamSegmentSize, MinStreamSegmentSize, MaxStreamSegmentSize)
	}
	s := &SelfContained{
		kek:         cfg.KEK,
		suite:       cfg.Suite,
		encoding:    cfg.Encoding,
		max:         m,
		maxMessages: cfg.DataKeyMaxMessages,
		segmentSize: cfg.StreamSegmentSize,
		sealing: keycache.NewWithEvict(keycache.Config{MaxEntries: cfg.CacheMaxEntries, MaxAge: cfg.DataKeyMaxAge},
			func(k *sealingKey) { k.dek.wipe() }),
		opening: keycache.NewWithEvict(keycache.Config{MaxEntries: cfg.CacheMaxEntries, MaxAge: cfg.CacheMaxAge},
			func(k *openingKey) { k.dek.wipe() }),
		observe:    cfg.Observe,
		writerBufs: new(sync.Pool),
	}
	if cfg.FailedUnwrapMaxAge > 0 {
		s.failed = keycache.New[struct{}](keycache.Config{MaxEntries: cfg.FailedUnwrapMaxEntries, MaxAge: cfg.FailedUnwrapMaxAge})
	}
	return s, nil
}

// Encrypt encrypts plaintext under a data key of b.Scope, wrapped by the
// KEK, and binds it to b. It calls the KMS only when the scope has no
// usable data key.
func (s *SelfContained) Encrypt(ctx context.Context, plaintext []byte, b Binding) ([]byte, error) {
	out, err := s.AppendEncrypt(ctx, nil, plaintext, b)
	return out[:len(out):len(out)], err
}

// AppendEncrypt is Encrypt that appends the ciphertext to dst and returns
// the extended slice. It also uses dst's spare capacity as scratch space
// for the AAD, so a caller that reuses a large enough dst makes no
// allocation; scratch space that would overlap plaintext is never used.
func (s *SelfContained) AppendEncrypt(ctx context.Context, dst, plaintext []byte, b Binding) ([]byte, error) {
	if len(plaintext) > s.max {
		return dst, ErrTooLarge
	}
	extra, bindingSize, err := b.check()
	if err != nil {
		return dst, err
	}
	k, fresh, err := s.sealingKey(ctx, b.Scope)
	if err != nil {
		return dst, err
	}
	if fresh {
		defer s.doneSealing(b.Scope, k)
	}
	return appendSeal(dst, k.aead, s.encoding, k.header, plaintext, &b, extra, bindingSize), nil
}

// sealingKey returns the data key of scope, generating and wrapping a new
// one when the scope has none or its key has used its budget, and counts
// one use (a value or a stream). fresh means the key did not come from
// the cache's fast path: the caller passes it to doneSealing when done.
func (s *SelfContained) sealingKey(ctx context.Context, scope string) (k *sealingKey, fresh bool, err error) {
	for {
		k, ok := s.sealing.Lookup(scope)
		if !ok {
			var err error
			if k, err = s.sealing.Get(ctx, scope, func(ctx context.Context) (*sealingKey, error) {
				return s.newSealingKey(ctx, scope)
			}); err != nil {
				return nil, false, err
			}
		}
		if k.used.Add(1) > s.maxMessages {
			s.sealing.Forget(scope, k)
			continue
		}
		return k, !ok, nil
	}
}

// doneSealing zeroes the data key of k unless the cache keeps it (the
// cache zeroes it on eviction).
func (s *SelfContained) doneSealing(scope string, k *sealingKey) {
	if !s.sealing.Holds(scope, k) {
		k.dek.wipe()
	}
}

// wrapAAD is the AAD of a wrapped data key: the first four bytes of a
// self-contained header (magic, version, form 0x02, suite) and the scope.
// Streams use the data keys of self-contained values, so their wrapped keys
// have this AAD too.
func wrapAAD(suite format.Suite, scope string) []byte {
	aad := make([]byte, 0, 8+len(scope))
	aad = append(aad, format.Magic, format.Version1, byte(format.FormSelfContained), byte(suite))
	return format.AppendString(aad, scope)
}

func (s *SelfContained) newSealingKey(ctx context.Context, scope string) (*sealingKey, error) {
	dek := make([]byte, DEKSize)
	defer clear(dek)
	rand.Read(dek) // never fails (crypto/rand)
	wk, err := s.kek.Wrap(ctx, dek, wrapAAD(format.Suite(s.suite), scope))
	if err != nil {
		return nil, fmt.Errorf("envelope: wrap data key: %w", err)
	}
	a, commitment, err := deriveSelfContained(s.suite, dek)
	if err != nil {
		return nil, err
	}
	hdr, err := format.AppendSelfContainedHeader(nil, format.Suite(s.suite), wk.KeyID, wk.Ciphertext, commitment)
	if err != nil {
		return nil, fmt.Errorf("envelope: KEK %q returned a wrapped key the format cannot hold: %w", wk.KeyID, err)
	}
	return &sealingKey{aead: a, header: hdr, dek: newRawKey(dek), wrapped: wk, commitment: commitment}, nil
}

// deriveSelfContained derives the AEAD and the key commitment of a data key.
// The commitment is HKDF-SHA-256 of the data key with its own label, so no
// other key (and no wrong KEK unwrapping garbage) can match it.
func deriveSelfContained(suite Suite, dek []byte) (cipher.AEAD, []byte, error) {
	a, err := deriveAEAD(suite, dek)
	if err != nil {
		return nil, nil, err
	}
	commitment, err := kdf.Key(dek, kdf.LabelCommitment, format.CommitmentSize)
	if err != nil {
		return nil, nil, fmt.Errorf("envelope: %w", err)
	}
	return a, commitment, nil
}

// Decrypt decrypts a self-contained ciphertext, binary or armored, bound to
// b. It unwraps the data key with the KEK unless the key is cached.
func (s *SelfContained) Decrypt(ctx context.Context, ciphertext []byte, b Binding) ([]byte, error) {
	out, err := s.AppendDecrypt(ctx, nil, ciphertext, b)
	return out[:len(out):len(out)], err
}

// AppendDecrypt is Decrypt that appends the plaintext to dst and returns
// the extended slice; on failure it returns dst unchanged. It uses dst's
// spare capacity as scratch space, so a caller that reuses a large enough
// dst makes no allocation; scratch space that would overlap ciphertext is
// never used.
func (s *SelfContained) AppendDecrypt(ctx context.Context, dst, ciphertext []byte, b Binding) ([]byte, error) {
	extra, bindingSize, err := b.check()
	if err != nil {
		return dst, err
	}
	o, err := newOpening(dst, ciphertext, bindingSize, s.max)
	if err != nil {
		return dst, err
	}
	if o.h.Form != format.FormSelfContained {
		return dst, errWrongForm()
	}
	k, fresh, err := s.openingKey(ctx, &o.h, b.Scope)
	if err != nil {
		return dst, err
	}
	if fresh {
		defer s.doneOpening(&o.h, b.Scope, k)
	}
	out, err := o.open(k.aead, &b, extra, bindingSize)
	if err != nil {
		return dst, err
	}
	return out, nil
}

// openingKey returns the unwrapped data key of h for scope, from the cache
// or the KEK, once its commitment matches h's. fresh means the key did not
// come from the cache's fast path: the caller passes it to doneOpening
// when done.
func (s *SelfContained) openingKey(ctx context.Context, h *format.Header, scope string) (k *openingKey, fresh bool, err error) {
	var buf [512]byte
	ck := appendOpeningCacheKey(buf[:0], h, scope)
	k, ok := s.opening.LookupBytes(ck)
	if !ok {
		load := func(ctx context.Context) (*openingKey, error) { return s.load(ctx, h, scope) }
		if k, err = s.opening.Get(ctx, string(ck), load); err != nil {
			return nil, false, err
		}
		fresh = true
	}
	if !k.commits(h) {
		if fresh {
			s.doneOpening(h, scope, k)
		}
		return nil, false, ErrDecrypt
	}
	return k, fresh, nil
}

// appendOpeningCacheKey appends the key of h's data key for scope in the
// cache of unwrapped keys: everything the unwrap depends on (the KEK id,
// the suite and scope of the wrap's AAD, the wrapped bytes), so that
// callers who share a load, or find its result, would all have made the
// same KEK call. Keyed by the wrapped bytes alone, a forged copy naming
// another scope or KEK would share its failure with the genuine value's
// concurrent readers.
func appendOpeningCacheKey(dst []byte, h *format.Header, scope string) []byte {
	dst = format.AppendString(dst, string(h.KEKID))
	dst = append(dst, byte(h.Suite))
	dst = format.AppendString(dst, scope)
	return append(dst, h.Wrapped...)
}

// doneOpening zeroes the data key of k, opened for h and scope, unless the
// cache keeps it (the cache zeroes it on eviction).
func (s *SelfContained) doneOpening(h *format.Header, scope string, k *openingKey) {
	var buf [512]byte
	if !s.opening.Holds(string(appendOpeningCacheKey(buf[:0], h, scope)), k) {
		k.dek.wipe()
	}
}

// commits reports whether h's key commitment is k's, in constant time.
// Every opening path checks it before AEAD-Open: the commitment is what
// makes a ciphertext open under one data key only.
func (k *openingKey) commits(h *format.Header) bool {
	return subtle.ConstantTimeCompare(k.commitment, h.Commitment) == 1
}

// load unwraps the data key of h for scope with the KEK. An unwrap that
// fails as inauthentic is remembered, and a remembered one refuses h
// without calling the KEK. The check is here, inside the cache's single
// flight, so that concurrent copies of one forgery cost one call.
func (s *SelfContained) load(ctx context.Context, h *format.Header, scope string) (*openingKey, error) {
	var fk string
	if s.failed != nil {
		fk = failedKey(h, scope)
		if _, ok := s.failed.Lookup(fk); ok {
			s.report(ctx, OpFailedUnwrapHit, h)
			return nil, ErrDecrypt
		}
	}
	wk := kms.WrappedKey{KeyID: string(h.KEKID), Ciphertext: h.Wrapped}
	dek, err := s.kek.Unwrap(ctx, wk, wrapAAD(h.Suite, scope))
	switch {
	case errors.Is(err, kms.ErrUnwrapFailed):
		s.remember(ctx, h, fk)
		return nil, ErrDecrypt
	case errors.Is(err, kms.ErrKeyNotFound):
		return nil, fmt.Errorf("%w: %w", ErrKeyNotFound, err)
	case err != nil:
		return nil, fmt.Errorf("envelope: unwrap data key: %w", err)
	}
	defer clear(dek)
	if len(dek) != DEKSize {
		s.remember(ctx, h, fk)
		return nil, ErrDecrypt
	}
	a, commitment, err := deriveSelfContained(Suite(h.Suite), dek)
	if err != nil {
		return nil, err
	}
	return &openingKey{aead: a, commitment: commitment, dek: newRawKey(dek)}, nil
}

// failedKey is the key of h's unwrap for scope in the cache of failed
// unwraps: SHA-256 of the KEK id, the wrap's AAD and the wrapped key, so
// that an entry takes 32 bytes whatever the wrapped key's size.
func failedKey(h *format.Header, scope string) string {
	d := sha256.New()
	d.Write(format.AppendString(nil, string(h.KEKID)))
	d.Write(wrapAAD(h.Suite, scope))
	d.Write(h.Wrapped)
	return string(d.Sum(nil))
}

// remember records a failed unwrap of h under its failedKey fk.
func (s *SelfContained) remember(ctx context.Context, h *format.Header, fk string) {
	if s.failed == nil {
		return
	}
	s.failed.Add(fk, struct{}{})
	s.report(ctx, OpUnwrapFailed, h)
}

func (s *SelfContained) report(ctx context.Context, op string, h *format.Header) {
	if s.observe != nil {
		s.observe(ctx, CacheEvent{Op: op, KEKID: string(h.KEKID)})
	}
}
