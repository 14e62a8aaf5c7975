package keys

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/phicrypt/phicrypt/envelope"

	"github.com/phicrypt/phicrypt/internal/kdf"
)

// IndexKey is one version of a blind index key: an HMAC-SHA-256 key derived
// with HKDF-SHA-256 from a 256-bit random key that the store keeps wrapped
// by the KEK. It computes MACs without exposing the key; its String,
// GoString, Format, LogValue and MarshalJSON print its version only. It is
// safe for concurrent use.
type IndexKey struct {
	version uint32
	macs    *sync.Pool // of keyed hash.Hash
	// bound holds the keys of the index definitions of a version that
	// binds them (IndexParamsBound); nil for a version of an earlier
	// release, which computes every index with the same key.
	bound *boundKeys
}

// IndexParamsBound is the Record.Suite of blind index key versions that
// bind each index's parameters into its key (see IndexKey.For): every
// version created by this release on. Versions stored with Suite 0, by
// earlier releases, keep computing as they did, so their stored index
// values still match until they are reindexed under a new version.
const IndexParamsBound envelope.Suite = 0x80

// maxBoundKeys bounds the keys of index definitions kept per version: an
// index key (one table and column) normally serves one definition.
const maxBoundKeys = 16

// boundKeys are the derived keys of a version, by parameters.
type boundKeys struct {
	mu   sync.Mutex
	keys atomic.Pointer[[]boundKey]
}

type boundKey struct {
	params string
	key    *IndexKey
}

func newIndexKey(version uint32, raw []byte, suite envelope.Suite) (*IndexKey, error) {
	key, err := kdf.Key(raw, kdf.LabelBlindIndex, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	k := macKey(version, key)
	if suite == IndexParamsBound {
		k.bound = new(boundKeys)
	}
	return k, nil
}

// macKey returns an IndexKey computing HMAC-SHA-256 under key, which it
// keeps.
func macKey(version uint32, key []byte) *IndexKey {
	// The pool's hashes hold the key (as HMAC pads); this slice is the
	// only other copy, referenced by New until the key is dropped.
	pool := &sync.Pool{New: func() any {
		h := hmac.New(sha256.New, key)
		// The first Reset saves the inner and outer SHA-256 states
		// after the padded key; every later one restores them.
		h.Reset()
		return h
	}}
	return &IndexKey{version: version, macs: pool}
}

// For returns the key that computes the values of one index definition,
// described by params (its normalizer chains and bit length, in a
// canonical form of the caller's): for a version that binds parameters
// (IndexParamsBound), HKDF-Expand(K, "phicrypt/v1/blind-index-params/" ||
// params) with K the version's HMAC key, so that two definitions over the
// same column never share index values and changing a definition without
// a new version stops matches instead of mixing incompatible values. A
// version of an earlier release returns itself. Keys are cached per
// version (up to 16 definitions); a warm call makes no allocation.
func (k *IndexKey) For(params string) *IndexKey {
	if k.bound == nil {
		return k
	}
	if list := k.bound.keys.Load(); list != nil {
		for _, b := range *list {
			if b.params == params {
				return b.key
			}
		}
	}
	k.bound.mu.Lock()
	defer k.bound.mu.Unlock()
	var list []boundKey
	if l := k.bound.keys.Load(); l != nil {
		list = *l
		for _, b := range list {
			if b.params == params {
				return b.key
			}
		}
	}
	// HKDF-Expand's first block, T(1) = HMAC(K, info || 0x01): the
	// version's HMAC key is uniform, as HKDF-Expand's PRK must be. The
	// info cannot be a blind index's MAC input, whose first four bytes
	// are a source's length: "phic" would be 1.8 GB.
	info := append([]byte(kdf.LabelBlindIndexParams+params), 1)
	derived := macKey(k.version, k.Sum(make([]byte, 0, sha256.Size), info))
	if len(list) < maxBoundKeys {
		next := append(append(make([]boundKey, 0, len(list)+1), list...), boundKey{params: params, key: derived})
		k.bound.keys.Store(&next)
	}
	return derived
}

// BindsParams reports whether the version binds index parameters (see
// For).
func (k IndexKey) BindsParams() bool { return k.bound != nil }

// Version returns the key's version.
func (k IndexKey) Version() uint32 { return k.version }

// Sum appends HMAC-SHA-256(key, msg), 32 bytes, to dst and returns the
// extended slice. Callers truncate it to their index's length.
func (k IndexKey) Sum(dst, msg []byte) []byte {
	h := k.macs.Get().(hash.Hash)
	h.Write(msg)
	dst = h.Sum(dst)
	// Reset restores the precomputed inner state (crypto/hmac keeps the
	// SHA-256 states after the padded key, so no key block is hashed
	// again), which also overwrites the message bytes the inner hash
	// buffered: a pooled hash holds no plaintext.
	h.Reset()
	k.macs.Put(h)
	return dst
}

// String returns the version.
func (k IndexKey) String() string { return fmt.Sprintf("keys.IndexKey{Version: %d}", k.version) }

// GoString is String.
func (k IndexKey) GoString() string { return k.String() }

// Format prints String for every verb.
func (k IndexKey) Format(f fmt.State, verb rune) { fmt.Fprint(f, k.String()) }

// LogValue logs the version.
func (k IndexKey) LogValue() slog.Value {
	return slog.GroupValue(slog.Uint64("version", uint64(k.version)))
}

// MarshalJSON encodes the version.
func (k IndexKey) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, `{"version":%d}`, k.version), nil
}

// IndexKey returns the active key of the blind index of (table, column) in
// scope, creating it on first use. Blind index values are computed with it.
// A cached key costs no allocation. With Config.AuditUses every call is
// audited as a use ("index"), cached or not, and fails with ErrAudit when a
// fail-closed Auditor fails, as EncryptionKey does. An empty scope fails
// with ErrInvalidID, a reserved one with ErrReservedScope.
func (k *Keyring) IndexKey(ctx context.Context, scope, table, column string) (*IndexKey, error) {
	a, err := k.indexActive(ctx, scope, table, column)
	if err != nil {
		return nil, err
	}
	if k.cfg.AuditUses {
		id, _ := IndexKeyID(scope, table, column)
		if err := k.auditUse(ctx, id, a.version, "index"); err != nil {
			return nil, err
		}
	}
	return a.key.index, nil
}

// indexActive returns the cached active entry of the index key of (table,
// column) in scope, loading it on a miss. It does not audit the use.
func (k *Keyring) indexActive(ctx context.Context, scope, table, column string) (*activeKey, error) {
	if err := checkScope(scope); err != nil {
		return nil, err
	}
	if !validIndexPart(table) || !validIndexPart(column) {
		// Checked before the cache too: a NUL in the column would let the
		// cache key of (scope, table, column) name another scope's key.
		_, err := IndexKeyName(table, column)
		return nil, err
	}
	// The cache key of ID{scope, IndexKeyName(table, column)}, built
	// without the name's allocation: see cacheKey.
	var buf [128]byte
	ck := append(buf[:0], 0, 0, 0, 0)
	ck = append(append(append(append(ck, "index/"...), table...), '/'), column...)
	ck = append(append(ck, 0), scope...)
	if a, ok := k.active.LookupBytes(ck); ok {
		return a, nil
	}
	id, err := IndexKeyID(scope, table, column)
	if err != nil {
		return nil, err
	}
	return k.activeKey(ctx, id, 1)
}

// IndexKeys returns the versions of the blind index key of (table, column)
// in scope that a search must try: the active version first, then the
// decrypt-only ones whose rows have not all been reindexed yet (at or above
// the key set's minimum decryption version). The list is cached with the
// active key, for Config.CacheMaxAge, and forgotten at once when this
// keyring rotates, retires or destroys the key set: a warm search makes no
// store or KMS call. Other keyrings sharing the store see such changes
// within their CacheMaxAge. With Config.AuditUses each version returned is
// audited as a use ("index"), and a fail-closed Auditor's failure fails the
// call with ErrAudit. Scopes are checked as in IndexKey.
func (k *Keyring) IndexKeys(ctx context.Context, scope, table, column string) ([]*IndexKey, error) {
	return k.AppendIndexKeys(ctx, nil, scope, table, column)
}

// AppendIndexKeys is IndexKeys that appends the versions to dst and
// returns the extended slice, so that a search with a reused or
// stack-allocated dst makes no allocation; on failure it returns dst
// unchanged with the error. The keys are shared: callers must not keep dst
// past the search if they want rotations to take effect.
func (k *Keyring) AppendIndexKeys(ctx context.Context, dst []*IndexKey, scope, table, column string) ([]*IndexKey, error) {
	a, err := k.indexActive(ctx, scope, table, column)
	if err != nil {
		return dst, err
	}
	terms := a.terms.Load()
	if terms == nil {
		id, _ := IndexKeyID(scope, table, column)
		loaded, err := k.loadTerms(ctx, id, a)
		if err != nil {
			return dst, err
		}
		if !a.terms.CompareAndSwap(nil, &loaded) {
			loaded = *a.terms.Load()
		}
		terms = &loaded
	}
	if k.cfg.AuditUses {
		id, _ := IndexKeyID(scope, table, column)
		for _, t := range *terms {
			if err := k.auditUse(ctx, id, t.version, "index"); err != nil {
				return dst, err
			}
		}
	}
	return append(dst, *terms...), nil
}

// loadTerms reads the versions of id that a search tries besides a, the
// active one: those that are decrypt-only, or active in the store when
// another keyring rotated since a was loaded, and not below the minimum
// decryption version, newest first.
func (k *Keyring) loadTerms(ctx context.Context, id ID, a *activeKey) ([]*IndexKey, error) {
	ks, err := k.cfg.Store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	out := []*IndexKey{a.key.index}
	for i := len(ks.Versions) - 1; i >= 0; i-- {
		r := ks.Versions[i]
		if r.Version == a.version || (r.State != DecryptOnly && r.State != Active) || r.Version < ks.MinDecryptVersion {
			continue
		}
		v, err := k.versionKey(ctx, id, r.Version, "index")
		if err != nil {
			return nil, err
		}
		out = append(out, v.index)
	}
	return out, nil
}
