package keys

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/internal/format"
	"github.com/phicrypt/phicrypt/internal/keycache"
	"github.com/phicrypt/phicrypt/kms"
)

// Defaults of Config.
const (
	DefaultCacheMaxEntries = 10000
	DefaultCacheMaxAge     = 5 * time.Minute
	DefaultReserveBlock    = 1 << 16
	// MaxMessages is the most values one data key version encrypts:
	// 2^32, the limit for random 96-bit nonces (NIST SP 800-38D,
	// section 8.3).
	MaxMessages = 1 << 32
)

// Config configures a Keyring.
type Config struct {
	// KEK wraps every key the store holds. Required.
	KEK kms.KEK
	// Store keeps the wrapped keys. Required.
	Store Store
	// Suite of new data keys; AES256GCM by default.
	Suite envelope.Suite

	// MaxKeyAge rotates a scope's data key once it is older (zero: no
	// automatic rotation by age). Deterministic (AES-SIV) and blind index
	// keys are exempt: they rotate only through Rotate. The check runs when the active key is
	// loaded, so a key may serve up to CacheMaxAge longer.
	MaxKeyAge time.Duration
	// MaxMessages rotates a data key once it has encrypted this many
	// values, across every replica (default and maximum: MaxMessages).
	// Deterministic (AES-SIV) keys have no nonce to wear out and are not
	// counted.
	MaxMessages uint64
	// ReserveBlock is how many messages a keyring reserves in the store at
	// a time (DefaultReserveBlock when zero): one store write per block.
	ReserveBlock uint64

	// CacheMaxEntries bounds the unwrapped keys kept in memory
	// (DefaultCacheMaxEntries when zero).
	CacheMaxEntries int
	// CacheMaxAge is how long an unwrapped key serves without looking at
	// the store or the KMS again (DefaultCacheMaxAge when zero). It bounds
	// how long another replica keeps using a key after it is destroyed,
	// suspended or rotated out, and how long cached keys keep working while
	// the KMS is down. A negative value disables caching.
	CacheMaxAge time.Duration

	// Parent, if set, gives a scope its parent scope: the keys of a scope
	// with a parent are wrapped locally under the parent's key
	// (ParentKeyName), which alone is wrapped by the KEK, so that KMS
	// calls grow with parents (tenants), not children (patients).
	// TenantParent is the documented rule: "tenant:X/patient/Y" has
	// parent "tenant:X". Nil (the default) wraps every key with the KEK,
	// as before. Readers never use it: each stored key says how it is
	// wrapped. See "Key hierarchy" in the package documentation.
	Parent func(scope string) (parent string, ok bool)
	// ParentCacheMaxEntries bounds the unwrapped parent keys kept in
	// memory, in a cache of their own that children cannot evict them
	// from (DefaultParentCacheMaxEntries when zero). They expire after
	// CacheMaxAge like every key.
	ParentCacheMaxEntries int

	// Auditor receives an Event for every key operation (optional).
	Auditor Auditor
	// AuditFailClosed makes an operation fail with ErrAudit when the
	// Auditor fails, decryption included.
	AuditFailClosed bool
	// AuditUses audits every encryption, decryption and blind index key
	// lookup, cached or not, not only the operations that reach the store
	// or the KMS. It costs one Auditor call per value, and one per index
	// key version a search tries.
	AuditUses bool

	// AllowCompromisedDecryption lets compromised versions decrypt, so
	// their data can be re-encrypted under a new key.
	AllowCompromisedDecryption bool
}

// Keyring manages the data keys and index keys of every scope: it creates
// them on first use, wraps them with the KEK, keeps them in the Store,
// caches them unwrapped, rotates them, and destroys them. It implements
// envelope.Keyring and is safe for concurrent use; replicas sharing a
// Store share their keys.
type Keyring struct {
	cfg   Config
	kekID string

	// sealer is cfg.Store, which New wraps: it authenticates key set
	// metadata (metadata.go).
	sealer *sealer

	// keys caches unwrapped versions by (scope, name, version), active
	// the current encryption key of each (scope, name).
	keys   *keycache.Cache[*versionKey]
	active *keycache.Cache[*activeKey]
	// parentKeys and parentActive are the same for parent keys
	// (hierarchy.go), apart so that children never evict them.
	parentKeys   *keycache.Cache[*versionKey]
	parentActive *keycache.Cache[*activeKey]

	stats stats // counters for Stats, beyond the caches' (stats.go)
}

var (
	_ envelope.BatchKeyring = (*Keyring)(nil)
	_ envelope.BatchKeyring = deterministic{}
	_ envelope.UseAuditor   = (*Keyring)(nil)
	_ envelope.UseAuditor   = deterministic{}
)

// versionKey is one unwrapped version: a data key, an index key or a
// parent key.
type versionKey struct {
	dek    *envelope.DEK
	index  *IndexKey
	parent cipher.AEAD // AES-256-GCM with random nonces (hierarchy.go)
}

// activeKey is the version that encrypts, with this keyring's share of its
// message budget.
type activeKey struct {
	version uint32
	key     *versionKey
	used    atomic.Uint64
	limit   uint64 // messages reserved by this keyring for this entry

	// terms are, for an index key, the versions a search tries (see
	// IndexKeys), the active one first: loaded on the first search and
	// cached with the entry, so they expire and are forgotten with it.
	terms atomic.Pointer[[]*IndexKey]
}

// New returns a Keyring for cfg.
func New(cfg Config) (*Keyring, error) {
	if cfg.KEK == nil || cfg.Store == nil {
		return nil, errors.New("keys: Config needs a KEK and a Store")
	}
	if cfg.Suite == 0 {
		cfg.Suite = envelope.AES256GCM
	}
	if _, err := envelope.NewDEK(cfg.Suite, 1, make([]byte, envelope.DEKSize)); err != nil {
		return nil, fmt.Errorf("keys: suite %v: %w", cfg.Suite, err)
	}
	if cfg.MaxMessages == 0 || cfg.MaxMessages > MaxMessages {
		if cfg.MaxMessages > MaxMessages {
			return nil, fmt.Errorf("keys: MaxMessages %d is above %d", cfg.MaxMessages, uint64(MaxMessages))
		}
		cfg.MaxMessages = MaxMessages
	}
	if cfg.ReserveBlock == 0 {
		cfg.ReserveBlock = DefaultReserveBlock
	}
	cfg.ReserveBlock = min(cfg.ReserveBlock, cfg.MaxMessages)
	if cfg.CacheMaxEntries == 0 {
		cfg.CacheMaxEntries = DefaultCacheMaxEntries
	}
	if cfg.CacheMaxAge == 0 {
		cfg.CacheMaxAge = DefaultCacheMaxAge
	}
	k := &Keyring{cfg: cfg}
	k.cfg.KEK = k.stats.observe(cfg.KEK) // counts KMS calls for Stats
	k.sealer = newSealer(cfg.Store, k.cfg.KEK, k.auditTampered)
	k.cfg.Store = k.sealer
	if id, ok := cfg.KEK.(kms.Identifier); ok {
		k.kekID = id.KeyID()
	}
	cc := keycache.Config{MaxEntries: cfg.CacheMaxEntries, MaxAge: cfg.CacheMaxAge}
	k.keys = keycache.New[*versionKey](cc)
	k.active = keycache.New[*activeKey](cc)
	if cfg.ParentCacheMaxEntries == 0 {
		k.cfg.ParentCacheMaxEntries = DefaultParentCacheMaxEntries
	}
	cc.MaxEntries = k.cfg.ParentCacheMaxEntries
	k.parentKeys = keycache.New[*versionKey](cc)
	k.parentActive = keycache.New[*activeKey](cc)
	return k, nil
}

// DataKey returns the ID of scope's data key set.
func DataKey(scope string) ID { return ID{Scope: scope, Name: DataKeyName} }

// IndexKeyID returns the ID of the key set of the blind index of table and
// column in scope.
func IndexKeyID(scope, table, column string) (ID, error) {
	name, err := IndexKeyName(table, column)
	return ID{Scope: scope, Name: name}, err
}

// cacheKey appends the cache key of (id, version) to dst: the version, the
// name, a NUL and the scope. Names never contain NUL.
func cacheKey(dst []byte, id ID, version uint32) []byte {
	dst = binary.BigEndian.AppendUint32(dst, version)
	dst = append(dst, id.Name...)
	dst = append(dst, 0)
	return append(dst, id.Scope...)
}

// EncryptionKey returns the active data key of scope, creating the scope's
// first key or rotating to a new one when the current one is spent or too
// old. It implements envelope.Keyring. In steady state it makes no store or
// KMS call and no allocation. An empty scope fails with ErrInvalidID, a
// reserved one (ReservedScopePrefix) with ErrReservedScope.
func (k *Keyring) EncryptionKey(ctx context.Context, scope string) (*envelope.DEK, error) {
	return k.encryptionKey(ctx, DataKey(scope))
}

// DecryptionKey returns version of scope's data key. It implements
// envelope.Keyring. Destroyed versions fail with ErrKeyDestroyed, versions
// that the state or the minimum decryption version forbid with
// ErrKeyUnusable, unknown ones with ErrKeyNotFound, empty and reserved
// scopes as in EncryptionKey.
func (k *Keyring) DecryptionKey(ctx context.Context, scope string, version uint32) (*envelope.DEK, error) {
	return k.decryptionKey(ctx, DataKey(scope), version)
}

// EncryptionKeys is EncryptionKey for n values (n at least 1), such as
// the fields of one record: it takes n messages of the key's budget at
// once and, with Config.AuditUses, audits n uses. It implements
// envelope.BatchKeyring, so that envelope.Compact.Sealer looks the key up
// once for n values.
func (k *Keyring) EncryptionKeys(ctx context.Context, scope string, n int) (*envelope.DEK, error) {
	return k.encryptionKeys(ctx, DataKey(scope), n)
}

func (k *Keyring) encryptionKey(ctx context.Context, id ID) (*envelope.DEK, error) {
	return k.encryptionKeys(ctx, id, 1)
}

func (k *Keyring) encryptionKeys(ctx context.Context, id ID, n int) (*envelope.DEK, error) {
	if err := checkScope(id.Scope); err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, fmt.Errorf("keys: EncryptionKeys for %d values: %w", n, errors.ErrUnsupported)
	}
	// No reserved block holds more than ReserveBlock messages: take
	// larger counts a block at a time. Should the key rotate in between,
	// the budget taken from the old version is left unused.
	var a *activeKey
	for left := uint64(n); left > 0; {
		take := min(left, k.cfg.ReserveBlock)
		var err error
		if a, err = k.activeKey(ctx, id, take); err != nil {
			return nil, err
		}
		left -= take
	}
	for range n {
		if err := k.auditUse(ctx, id, a.version, "encrypt"); err != nil {
			return nil, err
		}
	}
	return a.key.dek, nil
}

func (k *Keyring) decryptionKey(ctx context.Context, id ID, version uint32) (*envelope.DEK, error) {
	if err := checkScope(id.Scope); err != nil {
		return nil, err
	}
	v, err := k.versionKey(ctx, id, version, "decrypt")
	if err != nil {
		return nil, err
	}
	if err := k.auditUse(ctx, id, version, "decrypt"); err != nil {
		return nil, err
	}
	return v.dek, nil
}

// auditUse audits a use of version v of id when Config.AuditUses asks for
// every use ("encrypt", "decrypt" or "index"), cached or not.
func (k *Keyring) auditUse(ctx context.Context, id ID, v uint32, use string) error {
	if !k.cfg.AuditUses {
		return nil
	}
	return k.audit(ctx, Event{Op: OpUse, Scope: id.Scope, Key: id.Name, Version: v, Use: use, Outcome: Success})
}

// AuditsUses reports whether every key use is audited (Config.AuditUses).
// It implements envelope.UseAuditor, so that an envelope.Opener asks for
// the key of every value, and each is audited.
func (k *Keyring) AuditsUses() bool { return k.cfg.AuditUses }

// Deterministic returns the keyring's view for deterministic encryption:
// an envelope.Keyring over each scope's DeterministicKeyName key set, whose
// keys are AES-SIV (envelope.AESSIV). Equal plaintexts under one key and
// Binding give equal ciphertexts, which makes equality lookups and unique
// constraints possible and reveals which values are equal. AES-SIV is not
// FIPS 140-3 approved: in FIPS mode its keys fail with
// envelope.ErrNotApproved. Scopes are checked as in EncryptionKey.
func (k *Keyring) Deterministic() envelope.Keyring { return deterministic{k} }

type deterministic struct{ k *Keyring }

func (d deterministic) EncryptionKey(ctx context.Context, scope string) (*envelope.DEK, error) {
	return d.k.encryptionKey(ctx, ID{Scope: scope, Name: DeterministicKeyName})
}

func (d deterministic) EncryptionKeys(ctx context.Context, scope string, n int) (*envelope.DEK, error) {
	return d.k.encryptionKeys(ctx, ID{Scope: scope, Name: DeterministicKeyName}, n)
}

func (d deterministic) AuditsUses() bool { return d.k.cfg.AuditUses }

func (d deterministic) DecryptionKey(ctx context.Context, scope string, version uint32) (*envelope.DEK, error) {
	return d.k.decryptionKey(ctx, ID{Scope: scope, Name: DeterministicKeyName}, version)
}

// activeKey returns the active version of id with n messages of its
// budget taken, n at most ReserveBlock. Callers check the scope and audit
// the use.
func (k *Keyring) activeKey(ctx context.Context, id ID, n uint64) (*activeKey, error) {
	var buf [128]byte
	ck := cacheKey(buf[:0], id, 0)
	active := k.activeCache(id)
	for {
		a, ok := active.LookupBytes(ck)
		if !ok {
			var err error
			if a, err = active.Get(ctx, string(ck), func(ctx context.Context) (*activeKey, error) {
				return k.loadActive(ctx, id)
			}); err != nil {
				return nil, err
			}
		}
		if id.hasBudget() && a.used.Add(n) > a.limit {
			// This keyring's share of the budget is spent: reserve more,
			// or rotate when the version's budget is.
			active.Forget(string(ck), a)
			continue
		}
		return a, nil
	}
}

// loadActive reserves a block of the active version's budget in the store,
// creating or rotating the version when needed, and unwraps it.
func (k *Keyring) loadActive(ctx context.Context, id ID) (*activeKey, error) {
	for attempt := 1; ; attempt++ {
		a, err := k.tryLoadActive(ctx, id)
		if !retryRotation(ctx, err, attempt) {
			return a, err
		}
		// Our new version lost a race with another keyring's: use theirs.
	}
}

func (k *Keyring) tryLoadActive(ctx context.Context, id ID) (*activeKey, error) {
	ks, err := k.cfg.Store.Get(ctx, id)
	if errors.Is(err, ErrKeyNotFound) {
		ks, err = &KeySet{ID: id}, nil
	}
	if err != nil {
		return nil, err
	}
	var fresh *newVersion
	if rotate, err := k.needsRotation(ks); err != nil {
		return nil, err
	} else if rotate {
		if err := k.precheckDestroyed(ctx, id); err != nil {
			return nil, err
		}
		// Generate and wrap outside the store's transaction: no KMS call
		// holds a database lock. If another replica rotates first, this
		// key is dropped unused.
		if fresh, err = k.newVersion(ctx, id, ks.Latest()+1); err != nil {
			return nil, err
		}
	}
	// A Destroy that lands between the store's write and the cache's
	// (during the audit, say) forgets the version from the cache: it
	// must not be cached after that (see keycache.Cache.AddSince).
	epoch := k.keyCache(id).Epoch()
	var reserved uint64
	var rotatedFrom uint32
	inserted := false
	ks, err = k.cfg.Store.Update(ctx, id, func(ks *KeySet) error {
		reserved, rotatedFrom, inserted = 0, 0, false
		rotate, err := k.needsRotation(ks)
		if err != nil {
			return err
		}
		if rotate {
			if fresh == nil || fresh.rec.Version != ks.Latest()+1 {
				return errRetryRotation
			}
			now := time.Now()
			if cur := ks.Active(); cur != nil {
				cur.State, cur.Changed = DecryptOnly, now
				rotatedFrom = cur.Version
			}
			rec := fresh.rec
			rec.Reserved = k.reserveBlock(id)
			ks.Versions = append(ks.Versions, rec)
			reserved, inserted = rec.Reserved, true
			return nil
		}
		if cur := ks.Active(); id.hasBudget() {
			reserved = min(k.cfg.ReserveBlock, k.cfg.MaxMessages-cur.Reserved)
			cur.Reserved += reserved
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	cur := ks.Active()
	if inserted {
		// Only a version this keyring inserted may use the key it
		// generated: another keyring's version of the same number holds
		// another key.
		if err := k.auditCreated(ctx, id, fresh.rec, rotatedFrom != 0); err != nil {
			return nil, err
		}
		k.keyCache(id).AddSince(string(cacheKey(nil, id, cur.Version)), fresh.key, epoch) // not a lookup: Stats counts no miss
		return &activeKey{version: cur.Version, key: fresh.key, limit: reserved}, nil
	}
	v, err := k.versionKey(ctx, id, cur.Version, "encrypt")
	if err != nil {
		return nil, err
	}
	return &activeKey{version: cur.Version, key: v, limit: reserved}, nil
}

var errRetryRotation = errors.New("keys: rotation raced")

// maxRotationAttempts bounds the attempts of a rotation that keeps losing
// races with other rotations of the same key set: each loss means another
// version landed first, so the key set moves on; under heavy contention
// (many writers, a small message budget) a handful of attempts was not
// always enough.
const maxRotationAttempts = 16

// retryRotation reports whether attempt, which failed with err, is to be
// tried again: it lost a race (errRetryRotation), ctx is not done, and
// attempts remain.
func retryRotation(ctx context.Context, err error, attempt int) bool {
	return errors.Is(err, errRetryRotation) && ctx.Err() == nil && attempt < maxRotationAttempts
}

// reserveBlock is the share of a new version's budget a keyring takes.
func (k *Keyring) reserveBlock(id ID) uint64 {
	if !id.hasBudget() {
		return 0
	}
	return k.cfg.ReserveBlock
}

// needsRotation reports whether ks needs a new active version: it has none,
// or its data key is too old or has spent its budget. A key set without an
// active version gets none while a version is suspended, and fails with
// ErrKeyDestroyed once its latest version is destroyed: a crypto-shredded
// scope stays shredded. (A key set of a destroyed scope that had no
// version, or none destroyed, is refused by the store's write: see
// TombstoneScope.)
func (k *Keyring) needsRotation(ks *KeySet) (bool, error) {
	cur := ks.Active()
	if cur == nil {
		for _, r := range ks.Versions {
			if r.State == Suspended {
				return false, fmt.Errorf("%w: %s version %d is suspended", ErrKeyUnusable, ks.ID.kind(), r.Version)
			}
		}
		if n := len(ks.Versions); n > 0 && ks.Versions[n-1].State == Destroyed {
			return false, fmt.Errorf("%w: %s", ErrKeyDestroyed, ks.ID.kind())
		}
		return true, nil
	}
	if !ks.ID.hasBudget() {
		// Deterministic and index keys never rotate by themselves: see
		// hasBudget.
		return false, nil
	}
	if k.cfg.MaxKeyAge > 0 && time.Since(cur.Created) >= k.cfg.MaxKeyAge {
		return true, nil
	}
	return cur.Reserved >= k.cfg.MaxMessages, nil
}

// newVersion is a generated, wrapped key not yet stored.
type newVersion struct {
	rec Record
	key *versionKey
}

// wrapAAD binds a stored key to its identity: a wrapped key copied to
// another scope, name or version fails to unwrap.
func wrapAAD(id ID, version uint32, suite envelope.Suite) []byte {
	aad := format.AppendString(nil, "phicrypt/v1/keys")
	aad = format.AppendString(aad, id.Scope)
	aad = format.AppendString(aad, id.Name)
	aad = binary.BigEndian.AppendUint32(aad, version)
	return append(aad, byte(suite))
}

func (k *Keyring) suiteFor(id ID) envelope.Suite {
	switch id.Name {
	case DataKeyName:
		return k.cfg.Suite
	case DeterministicKeyName:
		return envelope.AESSIV
	}
	// Every other key set is a blind index key: new versions bind index
	// parameters.
	return IndexParamsBound
}

// newVersion generates version v of id and wraps it with the KEK.
func (k *Keyring) newVersion(ctx context.Context, id ID, v uint32) (*newVersion, error) {
	if v == 1 {
		if err := checkScopeText(id.Scope); err != nil {
			return nil, err
		}
	}
	raw := make([]byte, envelope.DEKSize)
	defer clear(raw)
	rand.Read(raw)
	suite := k.suiteFor(id)
	key, err := k.unwrapped(id, v, suite, raw)
	if err != nil {
		return nil, err
	}
	wk, err := k.wrapKey(ctx, id, v, suite, raw)
	if err != nil {
		k.audit(ctx, Event{Op: OpCreate, Scope: id.Scope, Key: id.Name, Version: v, KEKID: k.kekID, Outcome: Failure, ErrorClass: ErrorClass(err)})
		return nil, fmt.Errorf("keys: wrap new %s: %w", id.kind(), err)
	}
	now := time.Now()
	return &newVersion{
		rec: Record{Version: v, State: Active, Suite: suite, Wrapped: wk, Created: now, Changed: now, WrappedAt: now},
		key: key,
	}, nil
}

// unwrapped builds the in-memory key of a version from its raw bytes.
func (k *Keyring) unwrapped(id ID, v uint32, suite envelope.Suite, raw []byte) (*versionKey, error) {
	if id.Name == ParentKeyName {
		return newParentKey(raw)
	}
	if id.isDataKey() {
		dek, err := envelope.NewDEK(suite, v, raw)
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		return &versionKey{dek: dek}, nil
	}
	ik, err := newIndexKey(v, raw, suite)
	if err != nil {
		return nil, err
	}
	return &versionKey{index: ik}, nil
}

// auditCreated audits the creation of rec and, if rotated, the rotation to
// it.
func (k *Keyring) auditCreated(ctx context.Context, id ID, rec Record, rotated bool) error {
	if err := k.audit(ctx, Event{Op: OpCreate, Scope: id.Scope, Key: id.Name, Version: rec.Version, KEKID: rec.Wrapped.KeyID, Outcome: Success}); err != nil {
		return err
	}
	if !rotated {
		return nil
	}
	return k.audit(ctx, Event{Op: OpRotate, Scope: id.Scope, Key: id.Name, Version: rec.Version, Outcome: Success})
}

// versionKey returns version v of id, unwrapped, through the cache.
func (k *Keyring) versionKey(ctx context.Context, id ID, v uint32, use string) (*versionKey, error) {
	var buf [128]byte
	ck := cacheKey(buf[:0], id, v)
	keys := k.keyCache(id)
	if key, ok := keys.LookupBytes(ck); ok {
		return key, nil
	}
	return keys.Get(ctx, string(ck), func(ctx context.Context) (*versionKey, error) {
		return k.loadVersion(ctx, id, v, use)
	})
}

// loadVersion reads version v of id from the store, checks that its state
// allows use, and unwraps it.
func (k *Keyring) loadVersion(ctx context.Context, id ID, v uint32, use string) (*versionKey, error) {
	ks, err := k.cfg.Store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	rec := ks.Version(v)
	if rec == nil {
		return nil, fmt.Errorf("%w: %s version %d", ErrKeyNotFound, id.kind(), v)
	}
	if err := k.usable(ks, rec, use); err != nil {
		if aerr := k.audit(ctx, Event{Op: OpDenied, Scope: id.Scope, Key: id.Name, Version: v, Use: use, Outcome: Failure, ErrorClass: ErrorClass(err)}); aerr != nil {
			return nil, aerr
		}
		return nil, err
	}
	raw, err := k.unwrapKey(ctx, id, rec)
	event := Event{Op: OpUnwrap, Scope: id.Scope, Key: id.Name, Version: v, KEKID: rec.Wrapped.KeyID, Use: use, Outcome: Success}
	if err != nil {
		event.Outcome, event.ErrorClass = Failure, ErrorClass(err)
		k.audit(ctx, event)
		return nil, fmt.Errorf("keys: unwrap %s version %d: %w", id.kind(), v, err)
	}
	defer clear(raw)
	if err := k.audit(ctx, event); err != nil {
		return nil, err
	}
	return k.unwrapped(id, v, rec.Suite, raw)
}

// usable checks that rec may be used for use ("encrypt", "decrypt" or
// "index").
func (k *Keyring) usable(ks *KeySet, rec *Record, use string) error {
	switch {
	case rec.State == Destroyed:
		return fmt.Errorf("%w: %s version %d", ErrKeyDestroyed, ks.ID.kind(), rec.Version)
	case use == "decrypt" && ks.MinDecryptVersion > rec.Version:
		return fmt.Errorf("%w: %s version %d is below the minimum decryption version %d", ErrKeyUnusable, ks.ID.kind(), rec.Version, ks.MinDecryptVersion)
	case use == "decrypt" && rec.State == Compromised && k.cfg.AllowCompromisedDecryption:
		return nil
	case !rec.State.CanDecrypt():
		// Encryption too: the version was active when its budget was
		// reserved (the store's Update is the check); a rotation since
		// then lets it finish that block.
		return fmt.Errorf("%w: %s version %d is %v", ErrKeyUnusable, ks.ID.kind(), rec.Version, rec.State)
	}
	return nil
}

// audit sends e to the Auditor, filling in the time, principal and
// purpose. With AuditFailClosed, a failure of the Auditor is returned as
// ErrAudit; otherwise it is dropped.
func (k *Keyring) audit(ctx context.Context, e Event) error {
	k.stats.event(e)
	if k.cfg.Auditor == nil {
		return nil
	}
	e.Time = time.Now().UTC()
	e.Principal, e.Purpose = Principal(ctx), Purpose(ctx)
	if err := k.cfg.Auditor.Audit(ctx, e); err != nil && k.cfg.AuditFailClosed {
		return fmt.Errorf("%w: %w", ErrAudit, err)
	}
	return nil
}
