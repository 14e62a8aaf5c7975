package envelope

import (
	"context"
	"fmt"

	"github.com/phicrypt/phicrypt/internal/format"
)

// A Keyring supplies the data keys of the compact form, per scope and
// version. The keys package provides one over a KMS and a key store; any
// implementation must be safe for concurrent use and should serve its
// steady state from memory.
type Keyring interface {
	// EncryptionKey returns the active data key of scope, creating it if
	// the scope has none.
	EncryptionKey(ctx context.Context, scope string) (*DEK, error)
	// DecryptionKey returns version of scope's data key. It fails with an
	// error matching ErrKeyNotFound when there is no such version.
	DecryptionKey(ctx context.Context, scope string, version uint32) (*DEK, error)
}

// A BatchKeyring is a Keyring that also hands out its active data key for
// several values at once, counting each against the key's budget, so that
// Compact.Sealer looks the key up once for them. The keys package's
// Keyring is one.
type BatchKeyring interface {
	Keyring
	// EncryptionKeys is EncryptionKey for n values, n at least 1.
	EncryptionKeys(ctx context.Context, scope string, n int) (*DEK, error)
}

// Encoding is how Encrypt encodes a ciphertext. Decrypt accepts both.
type Encoding uint8

// Encodings.
const (
	// Binary is the raw binary form, for bytea and BLOB columns.
	Binary Encoding = iota
	// Text is the binary form armored as ArmorPrefix followed by unpadded
	// base64url, for text columns and JSON.
	Text
)

// ArmorPrefix starts every text-armored ciphertext.
const ArmorPrefix = format.ArmorPrefix

// Size limits.
const (
	// DefaultMaxPlaintextSize is the default largest value, 16 MiB.
	DefaultMaxPlaintextSize = 16 << 20
	// MaxPlaintextSizeLimit is the largest MaxPlaintextSize a form accepts,
	// 1 GiB: larger values belong in a stream.
	MaxPlaintextSizeLimit = 1 << 30
)

func maxSize(n int) (int, error) {
	switch {
	case n == 0:
		return DefaultMaxPlaintextSize, nil
	case n < 0 || n > MaxPlaintextSizeLimit:
		return 0, fmt.Errorf("envelope: MaxPlaintextSize %d is outside 1..%d", n, MaxPlaintextSizeLimit)
	}
	return n, nil
}

// CompactConfig configures a Compact.
type CompactConfig struct {
	// Keyring supplies the data keys. Required.
	Keyring Keyring
	// Encoding of Encrypt's output; Binary by default.
	Encoding Encoding
	// MaxPlaintextSize is the largest value Encrypt accepts and Decrypt
	// will produce; DefaultMaxPlaintextSize when zero.
	MaxPlaintextSize int
}

// Compact encrypts values in the compact form: the ciphertext names its data
// key by version, and the key comes from a Keyring, selected by the
// Binding's scope. It is the form for database columns: 36 bytes of
// overhead with AES-256-GCM (8 header, 12 nonce, 16 tag), no KMS call once
// the keyring caches the key. A Compact is safe for concurrent use.
type Compact struct {
	keyring  Keyring
	encoding Encoding
	max      int
}

// NewCompact returns a Compact for cfg.
func NewCompact(cfg CompactConfig) (*Compact, error) {
	if cfg.Keyring == nil {
		return nil, fmt.Errorf("envelope: CompactConfig.Keyring is nil")
	}
	if cfg.Encoding > Text {
		return nil, fmt.Errorf("envelope: unknown encoding %d", cfg.Encoding)
	}
	m, err := maxSize(cfg.MaxPlaintextSize)
	if err != nil {
		return nil, err
	}
	return &Compact{keyring: cfg.Keyring, encoding: cfg.Encoding, max: m}, nil
}

// Encrypt encrypts plaintext with the active data key of b.Scope and binds
// it to b. The result is in the configured encoding.
func (c *Compact) Encrypt(ctx context.Context, plaintext []byte, b Binding) ([]byte, error) {
	out, err := c.AppendEncrypt(ctx, nil, plaintext, b)
	return out[:len(out):len(out)], err
}

// AppendEncrypt is Encrypt that appends the ciphertext to dst and returns
// the extended slice. It also uses dst's spare capacity as scratch space
// for the AAD, so a caller that reuses a large enough dst makes no
// allocation; scratch space that would overlap plaintext is never used.
func (c *Compact) AppendEncrypt(ctx context.Context, dst, plaintext []byte, b Binding) ([]byte, error) {
	if len(plaintext) > c.max {
		return dst, ErrTooLarge
	}
	extra, bindingSize, err := b.check()
	if err != nil {
		return dst, err
	}
	dek, err := c.keyring.EncryptionKey(ctx, b.Scope)
	if err != nil {
		return dst, fmt.Errorf("envelope: encryption key: %w", err)
	}
	return c.seal(dst, dek, plaintext, &b, extra, bindingSize), nil
}

// seal appends the compact ciphertext of plaintext under dek, bound to b.
func (c *Compact) seal(dst []byte, dek *DEK, plaintext []byte, b *Binding, extra []Attr, bindingSize int) []byte {
	var hdr [format.CompactHeaderSize]byte
	format.AppendCompactHeader(hdr[:0], format.Suite(dek.suite), dek.version)
	return appendSeal(dst, dek.aead, c.encoding, hdr[:], plaintext, b, extra, bindingSize)
}

// Decrypt decrypts a compact ciphertext, binary or armored, bound to b.
func (c *Compact) Decrypt(ctx context.Context, ciphertext []byte, b Binding) ([]byte, error) {
	out, err := c.AppendDecrypt(ctx, nil, ciphertext, b)
	return out[:len(out):len(out)], err
}

// AppendDecrypt is Decrypt that appends the plaintext to dst and returns
// the extended slice; on failure it returns dst unchanged. It uses dst's
// spare capacity as scratch space, so a caller that reuses a large enough
// dst makes no allocation; scratch space that would overlap ciphertext is
// never used.
func (c *Compact) AppendDecrypt(ctx context.Context, dst, ciphertext []byte, b Binding) ([]byte, error) {
	return c.appendDecrypt(ctx, dst, ciphertext, &b, nil)
}

// appendDecrypt is AppendDecrypt, taking the key from op when op holds the
// version the ciphertext names, and leaving it there when op may reuse it.
func (c *Compact) appendDecrypt(ctx context.Context, dst, ciphertext []byte, b *Binding, op *Opener) ([]byte, error) {
	extra, bindingSize, err := b.check()
	if err != nil {
		return dst, err
	}
	if suite, version, ok := format.ParseCompact(ciphertext); ok {
		// The common case, binary and well formed, straight to the body.
		nonce, tag, _ := suite.Params()
		if len(ciphertext)-format.CompactHeaderSize-nonce-tag > c.max {
			return dst, ErrTooLarge
		}
		dek, err := c.decryptionKey(ctx, b.Scope, suite, version, op)
		if err != nil {
			return dst, err
		}
		out, err := openBody(dst, dek.aead, ciphertext, format.CompactHeaderSize, b, extra, bindingSize, false)
		if err != nil {
			return dst, err
		}
		return out, nil
	}
	o, err := newOpening(dst, ciphertext, bindingSize, c.max)
	if err != nil {
		return dst, err
	}
	if o.h.Form != format.FormCompact {
		return dst, errWrongForm()
	}
	dek, err := c.decryptionKey(ctx, b.Scope, o.h.Suite, o.h.KeyVersion, op)
	if err != nil {
		return dst, err
	}
	out, err := o.open(dek.aead, b, extra, bindingSize)
	if err != nil {
		return dst, err
	}
	return out, nil
}

// decryptionKey returns version of scope's data key, from op when it holds
// that version, and checks that its suite is the ciphertext's.
func (c *Compact) decryptionKey(ctx context.Context, scope string, suite format.Suite, version uint32, op *Opener) (*DEK, error) {
	var dek *DEK
	if op != nil && op.dek != nil && op.dek.version == version {
		dek = op.dek
	} else {
		var err error
		if dek, err = c.keyring.DecryptionKey(ctx, scope, version); err != nil {
			return nil, fmt.Errorf("envelope: decryption key version %d: %w", version, err)
		}
		if op != nil && op.reuse {
			op.dek = dek
		}
	}
	if dek.suite != Suite(suite) {
		return nil, ErrDecrypt
	}
	return dek, nil
}

// A Sealer encrypts several values of one scope, such as the fields of a
// record, with one key lookup: Compact.Sealer takes the scope's active
// data key for all of them at once when the keyring is a BatchKeyring.
// Values of another scope, values beyond the number the Sealer was made
// for, and every value when the keyring is not a BatchKeyring are
// encrypted exactly as Compact.AppendEncrypt does, so a Sealer never
// changes what is encrypted, only how often the keyring is asked. A Sealer
// is meant for one goroutine and a short while (one record): a key it
// holds does not see a rotation made after the Sealer was made.
type Sealer struct {
	c     *Compact
	scope string
	dek   *DEK // nil: look keys up per value
	left  int
}

// Sealer returns a Sealer for n values of scope.
func (c *Compact) Sealer(ctx context.Context, scope string, n int) (Sealer, error) {
	s := Sealer{c: c, scope: scope}
	bk, ok := c.keyring.(BatchKeyring)
	if !ok || n < 1 {
		return s, nil
	}
	if _, _, err := (&Binding{Scope: scope}).check(); err != nil {
		return s, err
	}
	dek, err := bk.EncryptionKeys(ctx, scope, n)
	if err != nil {
		return s, fmt.Errorf("envelope: encryption key: %w", err)
	}
	s.dek, s.left = dek, n
	return s, nil
}

// AppendEncrypt is Compact.AppendEncrypt with the Sealer's key when b is of
// its scope and values remain.
func (s *Sealer) AppendEncrypt(ctx context.Context, dst, plaintext []byte, b Binding) ([]byte, error) {
	if s.left == 0 || b.Scope != s.scope {
		return s.c.AppendEncrypt(ctx, dst, plaintext, b)
	}
	if len(plaintext) > s.c.max {
		return dst, ErrTooLarge
	}
	extra, bindingSize, err := b.check()
	if err != nil {
		return dst, err
	}
	s.left--
	return s.c.seal(dst, s.dek, plaintext, &b, extra, bindingSize), nil
}

// Encrypt is AppendEncrypt to a new slice.
func (s *Sealer) Encrypt(ctx context.Context, plaintext []byte, b Binding) ([]byte, error) {
	out, err := s.AppendEncrypt(ctx, nil, plaintext, b)
	return out[:len(out):len(out)], err
}

// A UseAuditor is a Keyring that records every use of a key. An Opener
// asks such a keyring for the key of every value while AuditsUses reports
// true, so that the audit trail does not depend on how values are grouped.
// The keys package's Keyring is one.
type UseAuditor interface {
	AuditsUses() bool
}

// An Opener decrypts several compact values of one scope, such as the
// fields of a record, asking the keyring once for each key version rather
// than once per value. Values of another scope, and every value when the
// keyring is a UseAuditor that audits uses, are decrypted exactly as
// Compact.AppendDecrypt does. An Opener is meant for one goroutine and a
// short while (one record): a key it holds does not see a destruction
// made after it was looked up.
type Opener struct {
	c     *Compact
	scope string
	reuse bool
	dek   *DEK // the last key looked up for scope, when reuse
}

// Opener returns an Opener for the values of scope.
func (c *Compact) Opener(scope string) Opener {
	ua, audits := c.keyring.(UseAuditor)
	return Opener{c: c, scope: scope, reuse: !audits || !ua.AuditsUses()}
}

// AppendDecrypt is Compact.AppendDecrypt, reusing the key of the previous
// value of the Opener's scope when it has the same version.
func (o *Opener) AppendDecrypt(ctx context.Context, dst, ciphertext []byte, b Binding) ([]byte, error) {
	if b.Scope != o.scope {
		return o.c.AppendDecrypt(ctx, dst, ciphertext, b)
	}
	return o.c.appendDecrypt(ctx, dst, ciphertext, &b, o)
}
