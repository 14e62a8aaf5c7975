package keys

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/kms"
)

// ID names a key set: the versions of one key.
type ID struct {
	// Scope names who shares the key: a tenant, a patient, a table.
	Scope string
	// Name says what the key is for within the scope: DataKeyName for the
	// scope's data key, or the name IndexKeyName returns for a blind index.
	Name string
}

// DataKeyName is the Name of a scope's data key set.
const DataKeyName = "data"

// DeterministicKeyName is the Name of a scope's deterministic (AES-SIV) data
// key set, used through Keyring.Deterministic.
const DeterministicKeyName = "deterministic"

// IndexKeyName returns the Name of the key set of the blind index of table
// and column. Neither may be empty, longer than 256 bytes (names are bound
// to wrapped keys, as KMS associated data), or contain '/' or NUL.
func IndexKeyName(table, column string) (string, error) {
	if !validIndexPart(table) || !validIndexPart(column) {
		return "", fmt.Errorf("%w: index table and column must be non-empty, at most 256 bytes, without '/' or NUL", ErrInvalidID)
	}
	return "index/" + table + "/" + column, nil
}

// validIndexPart reports whether s may be the table or column of an index
// key's name.
func validIndexPart(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	// One pass over a short name beats two IndexByte calls.
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '/' || c == 0 {
			return false
		}
	}
	return true
}

// ReservedScopePrefix begins the scopes that phicrypt keeps for its own
// keys, such as "phicrypt:audit", the scope of the audit log's chain key.
// Keyring methods refuse them with ErrReservedScope, so that no caller,
// and no operator through the phicrypt command, can create, rotate, retire
// or destroy those keys; only Rewrap and Status see them.
const ReservedScopePrefix = "phicrypt:"

// checkScope reports whether a caller may choose keys in scope: it fails
// with an error matching ErrInvalidID for the empty scope and with
// ErrReservedScope for a scope beginning with ReservedScopePrefix. Every
// Keyring method that chooses a key checks it.
func checkScope(scope string) error {
	if scope == "" {
		return fmt.Errorf("%w: empty scope", ErrInvalidID)
	}
	if strings.HasPrefix(scope, ReservedScopePrefix) {
		return ErrReservedScope
	}
	return nil
}

// checkScopeText refuses, with ErrInvalidID, a scope that is not valid
// UTF-8 or that holds a control character or a bidirectional formatting
// character: such a scope, mistyped or hostile, would break or spoof the
// lines of keys status, the audit log and the operator's terminal
// ("tenant:x\ny", U+202E). It is checked where a key set is created, so
// that no key set gets such a scope; lookups need no check, since a
// scope without keys finds none.
func checkScopeText(scope string) error {
	if !utf8.ValidString(scope) {
		return fmt.Errorf("%w: the scope is not valid UTF-8", ErrInvalidID)
	}
	for _, r := range scope {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return fmt.Errorf("%w: the scope holds the control character %U", ErrInvalidID, r)
		}
	}
	return nil
}

// check reports whether a caller may use key set id: its scope passes
// checkScope and its name is DataKeyName, DeterministicKeyName or one that
// IndexKeyName returns.
func (id ID) check() error {
	if err := checkScope(id.Scope); err != nil {
		return err
	}
	switch id.Name {
	case DataKeyName, DeterministicKeyName, ParentKeyName:
		return nil
	}
	if rest, ok := strings.CutPrefix(id.Name, "index/"); ok {
		if table, column, ok := strings.Cut(rest, "/"); ok {
			if _, err := IndexKeyName(table, column); err == nil {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: unknown key set name", ErrInvalidID)
}

// kind is the part of an ID that errors may show: the name, never the
// scope (which may be a patient identifier).
func (id ID) kind() string {
	if id.Scope == TombstoneScope {
		return "tombstone" // its name is a scope
	}
	switch id.Name {
	case DataKeyName:
		return "data key"
	case DeterministicKeyName:
		return "deterministic data key"
	case ParentKeyName:
		return "parent key"
	}
	return "key " + id.Name
}

// isDataKey reports whether id names data keys (as opposed to index keys):
// keys with a message budget, used through envelope.DEK.
func (id ID) isDataKey() bool { return id.Name == DataKeyName || id.Name == DeterministicKeyName }

// hasBudget reports whether id's keys have a message budget and rotate by
// themselves (Config.MaxKeyAge, Config.MaxMessages): only randomized data
// keys do. A new version of a deterministic (AES-SIV) key would encrypt a
// value to a new ciphertext, so equality lookups would miss the rows
// written before and unique constraints would stop holding; like blind
// index keys, deterministic keys rotate only when Rotate is called, and
// their old rows are then re-encrypted by the migration engine. AES-SIV
// uses no nonce, so the 2^32 random-nonce limit does not apply to it.
func (id ID) hasBudget() bool { return id.Name == DataKeyName }

// Record is one version of a key, as stored. Only its wrapped form is ever
// stored; a destroyed version has none.
type Record struct {
	Version uint32
	State   State
	// Suite is the data key's AEAD suite; for an index key,
	// IndexParamsBound, or zero for a version of an earlier release.
	Suite envelope.Suite
	// Wrapped is the key wrapped by the KEK, with the AAD described in the
	// package documentation, or by its scope's parent key when its KeyID
	// begins with ParentWrapPrefix (see ParentWrapPrefix for that
	// format). Empty once the version is destroyed.
	Wrapped kms.WrappedKey
	// Created is when the version was created, Changed when its state last
	// changed, WrappedAt when it was last wrapped or rewrapped.
	Created, Changed, WrappedAt time.Time
	// Reserved counts the messages that keyrings have reserved for
	// encryption under this version, across all replicas.
	Reserved uint64
}

// KeySet is every version of one key, and its settings.
type KeySet struct {
	ID ID
	// MinDecryptVersion refuses decryption with older versions (zero: no
	// minimum).
	MinDecryptVersion uint32
	// Versions, in ascending version order.
	Versions []Record

	// MetaCounter and MetaMAC authenticate the key set's metadata (see
	// "Metadata authentication" in the package documentation): the
	// keyring sets them on every write and checks them on every read. A
	// Store persists them as they are; MetaMAC is nil for a set that was
	// never sealed and for phicrypt's reserved scopes.
	MetaCounter uint64
	MetaMAC     []byte
}

// Active returns the active version, if any.
func (ks *KeySet) Active() *Record {
	for i := range ks.Versions {
		if ks.Versions[i].State == Active {
			return &ks.Versions[i]
		}
	}
	return nil
}

// Version returns version v, if it exists.
func (ks *KeySet) Version(v uint32) *Record {
	for i := range ks.Versions {
		if ks.Versions[i].Version == v {
			return &ks.Versions[i]
		}
	}
	return nil
}

// Latest returns the highest version number, or zero.
func (ks *KeySet) Latest() uint32 {
	if len(ks.Versions) == 0 {
		return 0
	}
	return ks.Versions[len(ks.Versions)-1].Version
}

func (ks *KeySet) clone() *KeySet {
	c := *ks
	c.Versions = slices.Clone(ks.Versions)
	c.MetaMAC = slices.Clone(ks.MetaMAC)
	for i := range c.Versions {
		c.Versions[i].Wrapped.Ciphertext = slices.Clone(c.Versions[i].Wrapped.Ciphertext)
	}
	return &c
}

// check verifies the invariants a store enforces: versions ascending from
// 1 without gaps, at most one active version, destroyed versions without
// key material, others with.
func (ks *KeySet) check() error {
	active := 0
	for i, r := range ks.Versions {
		if r.Version != uint32(i+1) {
			return fmt.Errorf("keys: %s: versions must count up from 1", ks.ID.kind())
		}
		if _, ok := stateNames[r.State]; !ok {
			return fmt.Errorf("keys: %s version %d: unknown state %d", ks.ID.kind(), r.Version, r.State)
		}
		if r.State == Active {
			active++
		}
		if (r.State == Destroyed) != (len(r.Wrapped.Ciphertext) == 0) {
			return fmt.Errorf("keys: %s version %d: only destroyed versions lack key material", ks.ID.kind(), r.Version)
		}
	}
	if active > 1 {
		return fmt.Errorf("%w: %s has %d active versions", ErrConflict, ks.ID.kind(), active)
	}
	return nil
}

// A Store keeps key sets. Implementations must make Update atomic per key
// set across every process sharing the store: that is what keeps two
// replicas creating the first data key of a scope at the same moment from
// ending with two active versions. They must store a key set's
// MetaCounter and MetaMAC as they are given: a Keyring refuses a key set
// whose metadata MAC is missing (see "Metadata authentication" in the
// package documentation). This package provides a memory store and SQL
// stores for PostgreSQL and SQLite.
type Store interface {
	// Get returns the key set id, or an error matching ErrKeyNotFound.
	Get(ctx context.Context, id ID) (*KeySet, error)
	// Update calls fn with the current key set id (empty, with no
	// versions, if there is none) and stores what fn leaves in it,
	// atomically with respect to every other Update of id. fn may add
	// versions and change existing ones but not remove any; if fn fails,
	// nothing is stored. Update returns the stored set.
	Update(ctx context.Context, id ID, fn func(ks *KeySet) error) (*KeySet, error)
	// List returns up to limit key sets in (Scope, Name) order, starting
	// after the ID after (the zero ID starts at the beginning). If scope is
	// not empty, only that scope's sets are listed.
	List(ctx context.Context, scope string, after ID, limit int) ([]*KeySet, error)
}

// MemoryStore is a Store in memory, for tests and single-process use. Its
// keys vanish with the process.
type MemoryStore struct {
	mu   sync.Mutex
	sets map[ID]*KeySet
	head metaHead // the metadata head (metadata.go, memmeta.go)
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{sets: make(map[ID]*KeySet)} }

// Get implements Store.
func (m *MemoryStore) Get(ctx context.Context, id ID) (*KeySet, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ks, ok := m.sets[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrKeyNotFound, id.kind())
	}
	return ks.clone(), nil
}

// Update implements Store.
func (m *MemoryStore) Update(ctx context.Context, id ID, fn func(ks *KeySet) error) (*KeySet, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.sets[id]
	if !ok {
		old = &KeySet{ID: id}
	}
	ks := old.clone()
	if err := fn(ks); err != nil {
		return nil, err
	}
	if err := checkUpdate(old, ks); err != nil {
		return nil, err
	}
	m.sets[id] = ks
	return ks.clone(), nil
}

// checkUpdate verifies that fn kept the key set's identity and versions.
func checkUpdate(old, ks *KeySet) error {
	if ks.ID != old.ID {
		return fmt.Errorf("keys: an update must not change the key set's ID")
	}
	if len(ks.Versions) < len(old.Versions) {
		return fmt.Errorf("keys: an update must not remove versions")
	}
	return ks.check()
}

// List implements Store.
func (m *MemoryStore) List(ctx context.Context, scope string, after ID, limit int) ([]*KeySet, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*KeySet
	for id, ks := range m.sets {
		if (scope == "" || id.Scope == scope) && idLess(after, id) {
			out = append(out, ks)
		}
	}
	slices.SortFunc(out, func(a, b *KeySet) int {
		if c := strings.Compare(a.ID.Scope, b.ID.Scope); c != 0 {
			return c
		}
		return strings.Compare(a.ID.Name, b.ID.Name)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	for i, ks := range out {
		out[i] = ks.clone()
	}
	return out, nil
}

// idLess reports whether a sorts before b in (Scope, Name) order.
func idLess(a, b ID) bool {
	return a.Scope < b.Scope || (a.Scope == b.Scope && a.Name < b.Name)
}
