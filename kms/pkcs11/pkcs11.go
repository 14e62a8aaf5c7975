//go:build cgo

package pkcs11

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	p11 "github.com/miekg/pkcs11"

	"github.com/phicrypt/phicrypt/kms"
)

// Wrapped key layout.
const (
	formatGCM  = 0x01
	formatKWP  = 0x02
	headerSize = 5 // format byte and version

	gcmIVSize  = 12
	gcmTagSize = 16

	kwpRandomSize = 16
	kwpHashSize   = sha256.Size
	kwpAADLabel   = "phicrypt/kms/pkcs11 kwp aad v1"
)

// KEK is a key-encryption key on a PKCS#11 token. It implements kms.KEK
// and kms.Identifier, is safe for concurrent use, and must be closed.
type KEK struct {
	id        string
	label     string
	mech      Mechanism
	current   uint32
	pool      *pool
	mod       *module
	allowExtr bool

	mu       sync.RWMutex
	versions map[uint32]keyVersion

	closeOnce sync.Once
	closeErr  error
}

var (
	_ kms.KEK        = (*KEK)(nil)
	_ kms.Identifier = (*KEK)(nil)
)

// keyVersion is one version of the KEK on the token.
type keyVersion struct {
	handle                         p11.ObjectHandle
	size                           int // CKA_VALUE_LEN
	sensitive, extractable         bool
	encrypt, decrypt, wrap, unwrap bool
}

// supports reports whether the key version may wrap (or unwrap) with mech.
func (kv keyVersion) supports(mech Mechanism, wrapping bool) bool {
	switch mech {
	case MechanismGCM:
		return wrapping && kv.encrypt || !wrapping && kv.decrypt
	case MechanismKWP:
		return wrapping && kv.wrap || !wrapping && kv.unwrap
	}
	return false
}

// New opens the KEK that cfg describes: it loads the module, logs in to the
// token, and finds the key's versions. A wrong PIN fails with
// kms.ErrPermissionDenied, a missing token or key with kms.ErrKeyNotFound,
// an invalid cfg with kms.ErrInvalidInput. The caller must Close the KEK.
func New(ctx context.Context, cfg Config) (*KEK, error) {
	if err := ctx.Err(); err != nil {
		return nil, kms.NewError(ctx, "open", cfg.KeyID, err, nil)
	}
	tok, err := openToken(cfg)
	if err != nil {
		return nil, kms.NewError(ctx, "open", cfg.KeyID, kindOf(err), err)
	}
	size := cfg.MaxSessions
	if size == 0 {
		size = DefaultMaxSessions
	}
	k := &KEK{
		id:        cfg.KeyID,
		label:     cfg.KeyLabel,
		mod:       tok.mod,
		pool:      newPool(tok.mod, tok.slot, tok.pin, size),
		allowExtr: cfg.AllowExtractable,
	}
	if k.id == "" {
		k.id = KeyID(tok.label, cfg.KeyLabel)
	}
	if err := k.init(ctx, cfg.Mechanism, tok); err != nil {
		k.Close()
		return nil, err
	}
	return k, nil
}

func (k *KEK) init(ctx context.Context, mech Mechanism, tok *token) error {
	fail := func(kind, err error) error { return kms.NewError(ctx, "open", k.id, kind, err) }
	if err := kms.ValidateKeyID(k.id); err != nil {
		return fail(kms.ErrInvalidInput, err)
	}
	var found map[uint32]keyVersion
	err := k.do(ctx, func(s p11.SessionHandle) error {
		var err error
		found, err = findVersions(k.mod.ctx, s, k.label)
		return err
	})
	if err != nil {
		return fail(kindOf(err), err)
	}
	if len(found) == 0 {
		return fail(kms.ErrKeyNotFound, fmt.Errorf("no AES key labelled %q on the token", k.label))
	}
	for v, kv := range found {
		k.current = max(k.current, v)
		if err := k.check(kv, v); err != nil {
			return fail(kms.ErrInvalidInput, err)
		}
	}
	k.versions = found
	cur := found[k.current]
	if mech == MechanismAuto {
		switch {
		case tok.gcm && cur.encrypt && cur.decrypt:
			mech = MechanismGCM
		case tok.kwp && cur.wrap && cur.unwrap:
			mech = MechanismKWP
		default:
			return fail(kms.ErrInvalidInput, fmt.Errorf("key %s allows neither AES-GCM encryption nor AES-KWP wrapping on this token", labelFor(k.label, k.current)))
		}
	}
	if (mech == MechanismGCM && !tok.gcm) || (mech == MechanismKWP && !tok.kwp) {
		return fail(kms.ErrInvalidInput, fmt.Errorf("token does not offer %v", mech))
	}
	if mech != MechanismGCM && mech != MechanismKWP {
		return fail(kms.ErrInvalidInput, fmt.Errorf("unknown mechanism %v", mech))
	}
	if !cur.supports(mech, true) || !cur.supports(mech, false) {
		return fail(kms.ErrInvalidInput, fmt.Errorf("key %s does not allow %v", labelFor(k.label, k.current), mech))
	}
	k.mech = mech
	return nil
}

// check verifies that a key version is an AES-256 key that cannot leave
// the token, unless AllowExtractable says otherwise.
func (k *KEK) check(kv keyVersion, v uint32) error {
	if kv.size != 32 {
		return fmt.Errorf("key %s is not an AES-256 key", labelFor(k.label, v))
	}
	if !k.allowExtr && (kv.extractable || !kv.sensitive) {
		return fmt.Errorf("key %s is extractable or not sensitive (Config.AllowExtractable is false)", labelFor(k.label, v))
	}
	return nil
}

// KeyID returns the key id that wrapped keys carry.
func (k *KEK) KeyID() string { return k.id }

// Version returns the key version that Wrap uses.
func (k *KEK) Version() uint32 { return k.current }

// Mechanism returns the mechanism that Wrap uses.
func (k *KEK) Mechanism() Mechanism { return k.mech }

// Close waits for calls in progress, closes the KEK's sessions and
// releases the module, finalizing it when no other KEK of the process uses
// it. Calls after Close fail with kms.ErrUnavailable. Close is safe to call
// more than once.
func (k *KEK) Close() error {
	k.closeOnce.Do(func() {
		k.pool.close()
		k.closeErr = k.mod.release()
	})
	return k.closeErr
}

// do runs fn on a session of the pool. A session that fails with anything
// but an authentication failure of the data is closed; when it had been
// closed or logged out under the call, fn runs once more on a new session.
func (k *KEK) do(ctx context.Context, fn func(s p11.SessionHandle) error) error {
	for attempt := 0; ; attempt++ {
		s, err := k.pool.get(ctx)
		if err != nil {
			return err
		}
		err = fn(s)
		k.pool.put(s, err == nil || errors.Is(err, errAuthFailed))
		if err != nil && attempt == 0 && sessionLost(err) && ctx.Err() == nil {
			continue
		}
		return err
	}
}

// errNoKey is the cause when a key version has vanished from the token.
var errNoKey = errors.New("pkcs11: key not found")

// withVersion runs fn with key version v. A version newer than those
// known is looked up on the token (another process rotated the key); an
// unknown version is reported as errAuthFailed, as tampering would be. When
// the token no longer knows the version's handle, the version is looked up
// again by its label and fn runs once more.
func (k *KEK) withVersion(s p11.SessionHandle, v uint32, fn func(keyVersion) error) error {
	k.mu.RLock()
	kv, ok := k.versions[v]
	k.mu.RUnlock()
	if !ok {
		if v <= k.current {
			return errAuthFailed
		}
		if err := k.refind(s, v, &kv); err != nil {
			if errors.Is(err, errNoKey) {
				return errAuthFailed
			}
			return err
		}
	}
	err := fn(kv)
	if !handleLost(err) {
		return err
	}
	if err := k.refind(s, v, &kv); err != nil {
		return err
	}
	return fn(kv)
}

// refind looks up version v on the token and records it in k.versions.
func (k *KEK) refind(s p11.SessionHandle, v uint32, kv *keyVersion) error {
	found, ok, err := findVersion(k.mod.ctx, s, k.label, v)
	if err != nil {
		return err
	}
	if !ok {
		// Private objects are invisible to a session that was logged out
		// under us: report that, so that the call moves to a new session.
		if info, err := k.mod.ctx.GetSessionInfo(s); err == nil &&
			(info.State == p11.CKS_RO_PUBLIC_SESSION || info.State == p11.CKS_RW_PUBLIC_SESSION) {
			return p11.Error(p11.CKR_USER_NOT_LOGGED_IN)
		}
		return fmt.Errorf("%w: no AES key labelled %q", errNoKey, labelFor(k.label, v))
	}
	if err := k.check(found, v); err != nil {
		return fmt.Errorf("%w: %w", errNoKey, err)
	}
	k.mu.Lock()
	k.versions[v] = found
	k.mu.Unlock()
	*kv = found
	return nil
}

// Wrap encrypts dek on the token under the newest key version, binding aad.
func (k *KEK) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	if err := ctx.Err(); err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, err, nil)
	}
	if err := kms.CheckWrap(dek, aad); err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kms.ErrInvalidInput, err)
	}
	format := byte(formatGCM)
	if k.mech == MechanismKWP {
		format = formatKWP
	}
	hdr := header(format, k.current)
	var ct []byte
	err := k.do(ctx, func(s p11.SessionHandle) error {
		return k.withVersion(s, k.current, func(kv keyVersion) error {
			var err error
			ct, err = k.wrap(s, kv, hdr, dek, aad)
			return err
		})
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.id, kindOf(err), err)
	}
	return kms.WrappedKey{KeyID: k.id, Ciphertext: ct}, nil
}

// Unwrap decrypts a key wrapped by any version of this KEK, with either
// mechanism.
func (k *KEK) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, kms.NewError(ctx, "unwrap", k.id, err, nil)
	}
	if err := kms.CheckUnwrap(k.id, wk, aad); err != nil {
		return nil, kms.NewError(ctx, "unwrap", k.id, checkKind(err), err)
	}
	ct := wk.Ciphertext
	if !validSize(ct) {
		return nil, kms.NewError(ctx, "unwrap", k.id, kms.ErrUnwrapFailed, nil)
	}
	v := binary.BigEndian.Uint32(ct[1:headerSize])
	var dek []byte
	mech := MechanismGCM
	if ct[0] == formatKWP {
		mech = MechanismKWP
	}
	err := k.do(ctx, func(s p11.SessionHandle) error {
		return k.withVersion(s, v, func(kv keyVersion) error {
			if !kv.supports(mech, false) {
				// A version that could not have made this wrapped key
				// looks like tampering and is reported the same way.
				return errAuthFailed
			}
			var err error
			dek, err = k.unwrap(s, kv, mech, ct[:headerSize], ct[headerSize:], aad, true)
			return err
		})
	})
	if err == nil && ctx.Err() != nil {
		clear(dek)
		dek, err = nil, ctx.Err()
	}
	if err != nil {
		return nil, kms.NewError(ctx, "unwrap", k.id, kindOf(err), err)
	}
	return dek, nil
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

// validSize reports whether ct has a known format byte and a size that
// format can have for a data key of an allowed size.
func validSize(ct []byte) bool {
	if len(ct) < headerSize {
		return false
	}
	n := len(ct) - headerSize
	switch ct[0] {
	case formatGCM:
		return n >= gcmIVSize+kms.MinDataKeySize+gcmTagSize && n <= gcmIVSize+kms.MaxDataKeySize+gcmTagSize
	case formatKWP:
		return n%8 == 0 && n >= kwpSize(kms.MinDataKeySize)+8 && n <= kwpSize(kms.MaxDataKeySize)+8
	}
	return false
}

func header(format byte, v uint32) []byte {
	hdr := make([]byte, headerSize)
	hdr[0] = format
	binary.BigEndian.PutUint32(hdr[1:], v)
	return hdr
}

// wrap wraps dek with key version kv on session s.
func (k *KEK) wrap(s p11.SessionHandle, kv keyVersion, hdr, dek, aad []byte) ([]byte, error) {
	c := k.mod.ctx
	if hdr[0] == formatKWP {
		pt := kwpPlaintext(hdr, dek, aad)
		defer clear(pt)
		obj, err := c.CreateObject(s, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
			p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_GENERIC_SECRET),
			p11.NewAttribute(p11.CKA_TOKEN, false),
			p11.NewAttribute(p11.CKA_PRIVATE, true),
			p11.NewAttribute(p11.CKA_SENSITIVE, true),
			p11.NewAttribute(p11.CKA_EXTRACTABLE, true),
			p11.NewAttribute(p11.CKA_VALUE, pt),
		})
		if err != nil {
			return nil, err
		}
		w, err := c.WrapKey(s, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_WRAP_PAD, nil)}, kv.handle, obj)
		if derr := c.DestroyObject(s, obj); err == nil {
			err = derr
		}
		if err != nil {
			return nil, err
		}
		if len(w) != len(pt)+8 {
			return nil, fmt.Errorf("token returned a %d-byte KWP ciphertext for %d bytes", len(w), len(pt))
		}
		return append(bytes.Clone(hdr), w...), nil
	}

	iv := make([]byte, gcmIVSize)
	rand.Read(iv)
	params := p11.NewGCMParams(iv, additionalData(hdr, aad), 8*gcmTagSize)
	defer params.Free()
	if err := c.EncryptInit(s, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, kv.handle); err != nil {
		return nil, err
	}
	sealed, err := c.Encrypt(s, dek)
	if err != nil {
		return nil, err
	}
	// A token that generates its own IV writes it back into the params.
	if used := params.IV(); len(used) != gcmIVSize {
		return nil, fmt.Errorf("token used a %d-byte GCM IV", len(used))
	} else {
		iv = used
	}
	if len(sealed) != len(dek)+gcmTagSize {
		return nil, fmt.Errorf("token returned a %d-byte GCM ciphertext for %d bytes", len(sealed), len(dek))
	}
	out := make([]byte, 0, headerSize+gcmIVSize+len(sealed))
	return append(append(append(out, hdr...), iv...), sealed...), nil
}

// unwrap unwraps body with key version kv. After a failure that the token
// reports ambiguously (CKR_GENERAL_ERROR), and when probe is set, it checks
// the token with a round trip of a random key on the same session and key
// version: the failure was the wrapped key's when that works.
func (k *KEK) unwrap(s p11.SessionHandle, kv keyVersion, mech Mechanism, hdr, body, aad []byte, probe bool) ([]byte, error) {
	dek, err := k.unwrapOnce(s, kv, mech, hdr, body, aad)
	switch {
	case err == nil:
		return dek, nil
	case errors.Is(err, errAuthFailed):
		return nil, err
	case kindOf(err) == kms.ErrUnwrapFailed:
		return nil, fmt.Errorf("%w: %w", errAuthFailed, err)
	case probe && ambiguous(err) && k.healthy(s, kv, mech):
		return nil, errAuthFailed
	}
	return nil, err
}

// healthy reports whether the token wraps and unwraps a random key with
// kv and mech on s.
func (k *KEK) healthy(s p11.SessionHandle, kv keyVersion, mech Mechanism) bool {
	if !kv.supports(mech, true) {
		_, err := k.mod.ctx.GetSessionInfo(s)
		return err == nil
	}
	format := byte(formatGCM)
	if mech == MechanismKWP {
		format = formatKWP
	}
	probe := make([]byte, 32)
	rand.Read(probe)
	hdr := header(format, 0)
	ct, err := k.wrap(s, kv, hdr, probe, nil)
	if err != nil {
		return false
	}
	got, err := k.unwrap(s, kv, mech, hdr, ct[headerSize:], nil, false)
	return err == nil && bytes.Equal(got, probe)
}

func (k *KEK) unwrapOnce(s p11.SessionHandle, kv keyVersion, mech Mechanism, hdr, body, aad []byte) ([]byte, error) {
	c := k.mod.ctx
	if mech == MechanismKWP {
		obj, err := c.UnwrapKey(s, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_WRAP_PAD, nil)}, kv.handle, body, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
			p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_GENERIC_SECRET),
			p11.NewAttribute(p11.CKA_TOKEN, false),
			p11.NewAttribute(p11.CKA_PRIVATE, true),
			p11.NewAttribute(p11.CKA_SENSITIVE, false),
			p11.NewAttribute(p11.CKA_EXTRACTABLE, true),
		})
		if err != nil {
			return nil, err
		}
		attrs, err := c.GetAttributeValue(s, obj, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
		if derr := c.DestroyObject(s, obj); err == nil {
			err = derr
		}
		if err != nil {
			if len(attrs) == 1 {
				clear(attrs[0].Value)
			}
			return nil, err
		}
		pt := attrs[0].Value
		defer clear(pt)
		return kwpOpen(hdr, pt, aad)
	}

	iv, sealed := body[:gcmIVSize], body[gcmIVSize:]
	params := p11.NewGCMParams(iv, additionalData(hdr, aad), 8*gcmTagSize)
	defer params.Free()
	if err := c.DecryptInit(s, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, kv.handle); err != nil {
		return nil, err
	}
	dek, err := c.Decrypt(s, sealed)
	if err != nil {
		return nil, err
	}
	if len(dek) != len(sealed)-gcmTagSize {
		clear(dek)
		return nil, errAuthFailed
	}
	return dek, nil
}

// additionalData is GCM's associated data: the wrapped key's header and
// the caller's AAD.
func additionalData(hdr, aad []byte) []byte {
	ad := make([]byte, 0, len(hdr)+len(aad))
	return append(append(ad, hdr...), aad...)
}

// kwpSize is the size of the KWP plaintext for an n-byte data key.
func kwpSize(n int) int {
	return (kwpRandomSize + 1 + n + kwpHashSize + 7) &^ 7
}

// kwpHash is T, the digest of the header and the AAD that the KWP
// plaintext carries.
func kwpHash(hdr, aad []byte) []byte {
	h := sha256.New()
	h.Write([]byte(kwpAADLabel))
	h.Write([]byte{0})
	h.Write(hdr)
	h.Write(aad)
	return h.Sum(nil)
}

// kwpPlaintext returns R || n || dek || T || zeros.
func kwpPlaintext(hdr, dek, aad []byte) []byte {
	pt := make([]byte, kwpSize(len(dek)))
	rand.Read(pt[:kwpRandomSize])
	pt[kwpRandomSize] = byte(len(dek))
	copy(pt[kwpRandomSize+1:], dek)
	copy(pt[kwpRandomSize+1+len(dek):], kwpHash(hdr, aad))
	return pt
}

// kwpOpen checks an unwrapped KWP plaintext against hdr and aad and returns
// a copy of its data key.
func kwpOpen(hdr, pt, aad []byte) ([]byte, error) {
	if len(pt) < kwpRandomSize+1 {
		return nil, errAuthFailed
	}
	n := int(pt[kwpRandomSize])
	if n < kms.MinDataKeySize || n > kms.MaxDataKeySize || len(pt) != kwpSize(n) {
		return nil, errAuthFailed
	}
	rest := pt[kwpRandomSize+1+n:]
	ok := subtle.ConstantTimeCompare(rest[:kwpHashSize], kwpHash(hdr, aad))
	for _, b := range rest[kwpHashSize:] {
		ok &= subtle.ConstantTimeByteEq(b, 0)
	}
	if ok != 1 {
		return nil, errAuthFailed
	}
	return bytes.Clone(pt[kwpRandomSize+1 : kwpRandomSize+1+n]), nil
}

// String returns the key id, versions and mechanism, never the PIN.
func (k *KEK) String() string {
	k.mu.RLock()
	n := len(k.versions)
	k.mu.RUnlock()
	return fmt.Sprintf("pkcs11.KEK{KeyID: %q, Version: %d, Versions: %d, Mechanism: %v}", k.id, k.current, n, k.mech)
}

// GoString is String.
func (k *KEK) GoString() string { return k.String() }

// Format prints String for every verb.
func (k *KEK) Format(f fmt.State, verb rune) { fmt.Fprint(f, k.String()) }

// LogValue logs the key id, version and mechanism.
func (k *KEK) LogValue() slog.Value {
	return slog.GroupValue(slog.String("key_id", k.id), slog.Uint64("version", uint64(k.current)), slog.String("mechanism", k.mech.String()))
}

// MarshalJSON encodes the key id, version and mechanism.
func (k *KEK) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		KeyID     string `json:"key_id"`
		Version   uint32 `json:"version"`
		Mechanism string `json:"mechanism"`
	}{k.id, k.current, k.mech.String()})
}
