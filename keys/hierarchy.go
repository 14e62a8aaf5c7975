package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/internal/format"
	"github.com/phicrypt/phicrypt/internal/keycache"
	"github.com/phicrypt/phicrypt/kms"
)

// DefaultParentCacheMaxEntries is the default of
// Config.ParentCacheMaxEntries.
const DefaultParentCacheMaxEntries = 1000

// ParentKeyName is the Name of a parent scope's key set whose versions
// wrap the keys of its children (see Config.Parent). Its versions are
// wrapped by the KEK, never by another parent, and never rotate by
// themselves: Rotate makes a new one, and Rewrap then rewraps the
// children under it locally.
const ParentKeyName = "parent"

// ParentWrapPrefix begins the KeyID of a key wrapped under a parent key
// rather than by the KEK. A stored Record says which way it is wrapped,
// so that readers never guess, and keys wrapped by the KEK before the
// hierarchy existed stay readable as they are:
//
//   - Wrapped.KeyID is ParentWrapPrefix, the parent key's version in
//     decimal, ":", and the parent scope: "phicrypt:parent:3:tenant:acme"
//     is version 3 of key set ("tenant:acme", ParentKeyName). Any other
//     KeyID names the KEK that wrapped the key, as before. (KMS key ids
//     never begin with "phicrypt:", phicrypt's reserved prefix.)
//   - Wrapped.Ciphertext is AES-256-GCM under that parent key version: a
//     random 12-byte nonce, then the 32-byte key encrypted, then the
//     16-byte tag (60 bytes).
//   - The GCM associated data binds the key to its identity and to its
//     parent: the length-prefixed strings "phicrypt/v1/keys/parent", the
//     child's scope and name, then its version (4 bytes, big-endian) and
//     suite (1 byte), then the parent's scope (length-prefixed) and the
//     parent key's version (4 bytes, big-endian). A wrapped key copied to
//     another scope, name, version or suite, or relabelled to another
//     parent or parent version, fails to unwrap.
const ParentWrapPrefix = "phicrypt:parent:"

// TenantParent is the documented parent rule (Config.Parent): a
// per-patient scope "tenant:X/patient/Y" has the parent "tenant:X"; other
// scopes, tenants included, have none. X may not contain '/'; X and Y may
// not be empty.
func TenantParent(scope string) (string, bool) {
	tenant, patient, ok := strings.Cut(scope, "/patient/")
	if !ok || patient == "" || !strings.HasPrefix(tenant, "tenant:") || len(tenant) == len("tenant:") || strings.Contains(tenant, "/") {
		return "", false
	}
	return tenant, true
}

// ParentKey returns the ID of the parent key set of scope, the parent of
// other scopes under Config.Parent.
func ParentKey(scope string) ID { return ID{Scope: scope, Name: ParentKeyName} }

// keyCache and activeCache return the caches that hold id's keys: the
// parent keys' own, or the children's.
func (k *Keyring) keyCache(id ID) *keycache.Cache[*versionKey] {
	if id.Name == ParentKeyName {
		return k.parentKeys
	}
	return k.keys
}

func (k *Keyring) activeCache(id ID) *keycache.Cache[*activeKey] {
	if id.Name == ParentKeyName {
		return k.parentActive
	}
	return k.active
}

// parentOf returns the parent scope under which new keys of id are
// wrapped, if any. Parent keys and reserved scopes have none. A rule that
// names an invalid parent (empty, reserved, or the scope itself) fails
// with ErrInvalidID rather than falling back to the KEK.
func (k *Keyring) parentOf(id ID) (string, bool, error) {
	if k.cfg.Parent == nil || id.Name == ParentKeyName || isReservedScope(id.Scope) {
		return "", false, nil
	}
	parent, ok := k.cfg.Parent(id.Scope)
	if !ok {
		return "", false, nil
	}
	if parent == id.Scope {
		return "", false, fmt.Errorf("%w: Config.Parent gives a scope itself as parent", ErrInvalidID)
	}
	if err := checkScope(parent); err != nil {
		return "", false, fmt.Errorf("keys: Config.Parent: %w", err)
	}
	return parent, true, nil
}

// parentKeyID returns the Wrapped.KeyID of a key wrapped under version v
// of parent's key (see ParentWrapPrefix).
func parentKeyID(parent string, v uint32) string {
	return ParentWrapPrefix + strconv.FormatUint(uint64(v), 10) + ":" + parent
}

// parseParentKeyID returns the parent scope and version a Wrapped.KeyID
// names, and whether it names one at all. A KeyID that begins with
// ParentWrapPrefix but is malformed fails with ErrMetadataTampered: it
// cannot be a KEK's.
func parseParentKeyID(keyID string) (parent string, v uint32, ok bool, err error) {
	rest, ok := strings.CutPrefix(keyID, ParentWrapPrefix)
	if !ok {
		return "", 0, false, nil
	}
	num, parent, _ := strings.Cut(rest, ":")
	n, perr := strconv.ParseUint(num, 10, 32)
	if perr != nil || n == 0 || checkScope(parent) != nil {
		return "", 0, true, fmt.Errorf("%w: malformed parent key reference", ErrMetadataTampered)
	}
	return parent, uint32(n), true, nil
}

// parentWrapAAD is the associated data of a key wrapped under a parent
// key (see ParentWrapPrefix).
func parentWrapAAD(id ID, v uint32, suite envelope.Suite, parent string, pv uint32) []byte {
	aad := format.AppendString(make([]byte, 0, 96), "phicrypt/v1/keys/parent")
	aad = format.AppendString(aad, id.Scope)
	aad = format.AppendString(aad, id.Name)
	aad = binary.BigEndian.AppendUint32(aad, v)
	aad = append(aad, byte(suite))
	aad = format.AppendString(aad, parent)
	return binary.BigEndian.AppendUint32(aad, pv)
}

// newParentKey builds an unwrapped parent key: AES-256-GCM with random
// nonces.
func newParentKey(raw []byte) (*versionKey, error) {
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("keys: parent key: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("keys: parent key: %w", err)
	}
	return &versionKey{parent: aead}, nil
}

// wrapKey wraps raw, version v of id: under the active key of id's parent
// when Config.Parent gives it one (creating the parent's first key, one
// KMS Wrap, when there is none), with the KEK otherwise.
func (k *Keyring) wrapKey(ctx context.Context, id ID, v uint32, suite envelope.Suite, raw []byte) (kms.WrappedKey, error) {
	parent, ok, err := k.parentOf(id)
	if err != nil {
		return kms.WrappedKey{}, err
	}
	if !ok {
		wk, err := k.cfg.KEK.Wrap(ctx, raw, wrapAAD(id, v, suite))
		if err == nil && strings.HasPrefix(wk.KeyID, ParentWrapPrefix) {
			// Readers would take it for a parent-wrapped key.
			return kms.WrappedKey{}, fmt.Errorf("%w: a KEK key id may not begin with %q", kms.ErrInvalidInput, ParentWrapPrefix)
		}
		return wk, err
	}
	return k.wrapUnderParent(ctx, id, v, suite, raw, parent)
}

// wrapUnderParent wraps raw, version v of id, under the active key of
// parent.
func (k *Keyring) wrapUnderParent(ctx context.Context, id ID, v uint32, suite envelope.Suite, raw []byte, parent string) (kms.WrappedKey, error) {
	a, err := k.activeKey(ctx, ParentKey(parent), 0)
	if err != nil {
		return kms.WrappedKey{}, fmt.Errorf("keys: parent key: %w", err)
	}
	ct := a.key.parent.Seal(nil, nil, raw, parentWrapAAD(id, v, suite, parent, a.version))
	return kms.WrappedKey{KeyID: parentKeyID(parent, a.version), Ciphertext: ct}, nil
}

// unwrapKey unwraps rec, a version of id: locally under the parent key
// its KeyID names (through the parent cache: one KMS call per parent key
// version per CacheMaxAge), with the KEK otherwise. A destroyed parent
// key (a shredded tenant) fails with ErrKeyDestroyed; a key that does not
// open under its parent (moved, relabelled or altered) with
// kms.ErrUnwrapFailed.
func (k *Keyring) unwrapKey(ctx context.Context, id ID, rec *Record) ([]byte, error) {
	parent, pv, ok, err := parseParentKeyID(rec.Wrapped.KeyID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return k.cfg.KEK.Unwrap(ctx, rec.Wrapped, wrapAAD(id, rec.Version, rec.Suite))
	}
	if id.Name == ParentKeyName || isReservedScope(id.Scope) {
		return nil, fmt.Errorf("%w: a parent or reserved key wrapped under a parent", ErrMetadataTampered)
	}
	pk, err := k.versionKey(ctx, ParentKey(parent), pv, "decrypt")
	if err != nil {
		return nil, fmt.Errorf("parent key: %w", err)
	}
	raw, err := pk.parent.Open(nil, nil, rec.Wrapped.Ciphertext, parentWrapAAD(id, rec.Version, rec.Suite, parent, pv))
	if err != nil {
		return nil, fmt.Errorf("%w: the key does not open under its parent key", kms.ErrUnwrapFailed)
	}
	return raw, nil
}

// parentActiveVersion returns the active version of parent's key, zero
// if it has none (destroyed, suspended or missing), read from the store
// once per Rewrap run (memo) and without unwrapping it.
func (k *Keyring) parentActiveVersion(ctx context.Context, parent string, memo map[string]uint32) (uint32, error) {
	if v, ok := memo[parent]; ok {
		return v, nil
	}
	ks, err := k.cfg.Store.Get(ctx, ParentKey(parent))
	if err != nil && !errors.Is(err, ErrKeyNotFound) {
		return 0, err
	}
	var v uint32
	if err == nil && ks.Active() != nil {
		v = ks.Active().Version
	}
	memo[parent] = v
	return v, nil
}

// replaceWrapped unwraps rec, a version of id, wraps it again with wrap,
// and stores the result if nobody changed the version meanwhile.
func (k *Keyring) replaceWrapped(ctx context.Context, id ID, rec Record, wrap func(raw []byte) (kms.WrappedKey, error)) (bool, error) {
	raw, err := k.unwrapKey(ctx, id, &rec)
	if err != nil {
		return false, err
	}
	wk, err := wrap(raw)
	clear(raw)
	if err != nil {
		return false, err
	}
	replaced := false
	_, err = k.cfg.Store.Update(ctx, id, func(ks *KeySet) error {
		replaced = false
		cur := ks.Version(rec.Version)
		if cur == nil || cur.State == Destroyed || cur.Wrapped.KeyID != rec.Wrapped.KeyID ||
			string(cur.Wrapped.Ciphertext) != string(rec.Wrapped.Ciphertext) {
			return nil // changed meanwhile: leave it
		}
		cur.Wrapped, cur.WrappedAt = wk, time.Now()
		replaced = true
		return nil
	})
	return replaced, err
}

// isChildOf reports whether ks belongs to a child of parent: a version is
// wrapped under parent's key, or Config.Parent names parent.
func (k *Keyring) isChildOf(ks *KeySet, parent string) bool {
	if ks.ID.Scope == parent || isReservedScope(ks.ID.Scope) {
		return false
	}
	for _, r := range ks.Versions {
		if p, _, ok, err := parseParentKeyID(r.Wrapped.KeyID); ok && err == nil && p == parent {
			return true
		}
	}
	p, ok, err := k.parentOf(ks.ID)
	return err == nil && ok && p == parent
}

// mayBeParent reports whether scope, which has no parent key, may still
// have children under Config.Parent, whose keys the KEK wraps (the
// hierarchy was turned on after they were created): Config.Parent is set
// and gives scope no parent of its own. A scope with a parent is taken for
// a child, such as a patient under TenantParent, so that shredding one
// does not read the whole store.
func (k *Keyring) mayBeParent(scope string) bool {
	if k.cfg.Parent == nil {
		return false
	}
	_, hasParent, err := k.parentOf(DataKey(scope))
	return err == nil && !hasParent
}

// destroyChildren destroys the key sets of parent's children, after the
// parent key itself was destroyed: their keys are already unrecoverable,
// and this erases what remains of them (and any child key still wrapped
// by the KEK, from before the hierarchy). It reads the whole store.
func (k *Keyring) destroyChildren(ctx context.Context, parent string, report *DestroyReport) error {
	after := ID{}
	for {
		sets, err := k.cfg.Store.List(ctx, "", after, 500)
		if err != nil {
			return err
		}
		var ids []ID
		for _, ks := range sets {
			after = ks.ID
			if k.isChildOf(ks, parent) && !allDestroyed(ks) {
				ids = append(ids, ks.ID)
			}
		}
		if len(ids) > 0 {
			n, err := k.destroySets(ctx, ids)
			report.Versions += n
			if err != nil {
				return err
			}
			report.ChildKeySets += len(ids)
		}
		if len(sets) < 500 {
			return nil
		}
	}
}

// destroySets destroys every version of each of ids, of non-reserved
// scopes in (Scope, Name) order, in one store transaction when the store
// allows it, and returns the number of versions destroyed.
func (k *Keyring) destroySets(ctx context.Context, ids []ID) (int, error) {
	var events []Event
	versions := make([][]uint32, len(ids))
	_, err := k.sealer.updateBatch(ctx, ids, func(i int, ks *KeySet) error {
		if i == 0 {
			events = events[:0]
		}
		events, versions[i] = k.destroyVersions(ks, events, versions[i][:0])
		return nil
	})
	for i, id := range ids {
		k.forget(id, versions[i]...)
	}
	if err != nil {
		k.audit(ctx, Event{Op: OpDestroy, Scope: ids[0].Scope, Key: ids[0].Name, Outcome: Failure, ErrorClass: ErrorClass(err)})
		return 0, err
	}
	return k.auditDestroyed(ctx, events)
}

// childUsage counts, for each version of parent key set id, the child key
// versions wrapped under it that are not destroyed. It reads the whole
// store.
func (k *Keyring) childUsage(ctx context.Context, id ID) (map[uint32]int64, error) {
	usage := map[uint32]int64{}
	after := ID{}
	for {
		sets, err := k.cfg.Store.List(ctx, "", after, 500)
		if err != nil {
			return nil, err
		}
		for _, ks := range sets {
			after = ks.ID
			for _, r := range ks.Versions {
				if p, pv, ok, err := parseParentKeyID(r.Wrapped.KeyID); ok && err == nil && p == id.Scope && r.State != Destroyed {
					usage[pv]++
				}
			}
		}
		if len(sets) < 500 {
			return usage, nil
		}
	}
}

// allDestroyed reports whether every version of ks is destroyed.
func allDestroyed(ks *KeySet) bool {
	for _, r := range ks.Versions {
		if r.State != Destroyed {
			return false
		}
	}
	return true
}
