package keys

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/phicrypt/phicrypt/internal/format"
	"github.com/phicrypt/phicrypt/internal/kdf"
	"github.com/phicrypt/phicrypt/kms"
)

// ErrMetadataTampered means a key set's metadata failed its check: its MAC
// is missing or wrong (a state, minimum decryption version, budget counter
// or wrapped key was changed by someone without the KEK), its counter is
// older than one this keyring has seen (an older authentic copy was
// replayed), or the store's metadata head does not match its key sets.
// The keyring refuses to use such a key set. See "Metadata
// authentication" in the package documentation.
var ErrMetadataTampered = errors.New("keys: key metadata failed authentication")

// metaKeyID is the key set that holds the metadata MAC key, wrapped by the
// KEK. Its scope is reserved: no Keyring method can change it. Its own
// metadata is not MACed (the MAC key cannot vouch for itself); its key is
// bound to its identity by the wrapping AAD, so a writer can only make it
// unusable, which fails closed.
var metaKeyID = ID{Scope: ReservedScopePrefix + "metadata", Name: "mac"}

// metaHead is a store's metadata head: the number of sealed writes, the
// XOR of the MACs of every sealed key set, and a MAC over both. Stores
// that implement metaStore keep it, updated atomically with each key set.
type metaHead struct {
	Counter uint64
	Acc     []byte
	MAC     []byte
}

// metaTx is what the function of a sealed write sees of the store's
// transaction besides the key set: the metadata head (zero Counter and nil
// MAC when there is none yet), stored with the set, and a reader of
// tombstones (tombstone.go) that reads them after the head's lock.
type metaTx struct {
	head       *metaHead
	tombstones tombstoneReader
}

// metaStore is implemented by the stores of this package: an Update that
// also updates the metadata head in the same transaction, and a
// consistent snapshot of the head and every key set.
type metaStore interface {
	// updateMeta is Update with the store's head, and a reader of
	// tombstones, passed to fn in tx.
	updateMeta(ctx context.Context, id ID, fn func(ks *KeySet, tx *metaTx) error) (*KeySet, error)
	// scanMeta calls head with the head (nil when there is none), then each
	// with every key set, in (Scope, Name) order, all from one snapshot.
	scanMeta(ctx context.Context, head func(*metaHead) error, each func(*KeySet) error) error
}

// maxSeen bounds the key sets whose highest counter a keyring remembers.
const maxSeen = 1 << 16

// sealer wraps a Keyring's Store: it authenticates the metadata of every
// key set it reads, and seals every key set it writes. Reserved scopes
// pass through.
type sealer struct {
	Store
	kek kms.KEK
	// tampered audits a refused key set.
	tampered func(ctx context.Context, id ID, err error)

	loadMu   sync.Mutex // serializes loads of the MAC key
	mu       sync.Mutex
	key      []byte        // the derived MAC key, once loaded
	seen     map[ID]uint64 // highest counter seen per key set
	headSeen uint64        // highest head counter seen
}

var _ Store = (*sealer)(nil)

func newSealer(store Store, kek kms.KEK, tampered func(context.Context, ID, error)) *sealer {
	return &sealer{Store: store, kek: kek, tampered: tampered, seen: make(map[ID]uint64)}
}

// auditTampered audits a key set refused for its metadata. The caller
// returns the refusal itself, whatever the Auditor says.
func (k *Keyring) auditTampered(ctx context.Context, id ID, err error) {
	if errors.Is(err, ErrMetadataTampered) {
		k.audit(ctx, Event{Op: OpDenied, Scope: id.Scope, Key: id.Name, Outcome: Failure, ErrorClass: ErrorClass(err)})
	}
}

// sealed reports whether id's metadata is authenticated: every key set
// but those of reserved scopes, and tombstones (TombstoneScope) all the
// same: they have no key to bind them, and removing or changing one must
// show.
func sealed(id ID) bool { return !isReservedScope(id.Scope) || id.Scope == TombstoneScope }

// macKey returns the metadata MAC key, creating it when the store has none
// and create is set. Without create, a missing key is ErrMetadataTampered:
// sealed key sets exist (the caller read one) but their key is gone.
// Concurrent first calls make one KMS call: loads are serialized.
func (s *sealer) macKey(ctx context.Context, create bool) ([]byte, error) {
	s.mu.Lock()
	key := s.key
	s.mu.Unlock()
	if key != nil {
		return key, nil
	}
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	s.mu.Lock()
	key = s.key
	s.mu.Unlock()
	if key != nil {
		return key, nil
	}
	raw, err := s.loadMACKey(ctx, create)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	key, err = kdf.Key(raw, kdf.LabelKeyMetadata, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	s.mu.Lock()
	s.key = key
	s.mu.Unlock()
	return key, nil
}

// loadMACKey returns the raw metadata key: unwrapped from the store, or
// generated and stored if there is none and create is set. The keyring
// that stores it keeps the bytes it generated, without an unwrap.
func (s *sealer) loadMACKey(ctx context.Context, create bool) ([]byte, error) {
	ks, err := s.Store.Get(ctx, metaKeyID)
	if errors.Is(err, ErrKeyNotFound) {
		if !create {
			return nil, fmt.Errorf("%w: the store has no metadata key", ErrMetadataTampered)
		}
		raw := make([]byte, 32)
		rand.Read(raw)
		var wk kms.WrappedKey
		if wk, err = s.kek.Wrap(ctx, raw, wrapAAD(metaKeyID, 1, 0)); err != nil {
			clear(raw)
			return nil, fmt.Errorf("keys: wrap metadata key: %w", err)
		}
		mine := false
		ks, err = s.Store.Update(ctx, metaKeyID, func(ks *KeySet) error {
			mine = len(ks.Versions) == 0
			if mine {
				now := time.Now()
				ks.Versions = append(ks.Versions, Record{Version: 1, State: Active, Wrapped: wk, Created: now, Changed: now, WrappedAt: now})
			}
			return nil
		})
		if err == nil && mine {
			return raw, nil
		}
		clear(raw) // another process stored its key first
	}
	if err != nil {
		return nil, err
	}
	rec := ks.Version(1)
	if rec == nil || rec.State == Destroyed {
		return nil, fmt.Errorf("%w: the metadata key is destroyed", ErrMetadataTampered)
	}
	raw, err := s.kek.Unwrap(ctx, rec.Wrapped, wrapAAD(metaKeyID, 1, 0))
	if err != nil {
		return nil, fmt.Errorf("keys: unwrap metadata key: %w", err)
	}
	return raw, nil
}

// metaMAC computes the MAC of ks's metadata: everything a Store keeps of
// it but the MAC itself, in a canonical, length-prefixed encoding.
func metaMAC(key []byte, ks *KeySet) []byte {
	m := hmac.New(sha256.New, key)
	b := format.AppendString(make([]byte, 0, 128), "phicrypt/v1/keys/metadata")
	b = format.AppendString(b, ks.ID.Scope)
	b = format.AppendString(b, ks.ID.Name)
	b = binary.BigEndian.AppendUint64(b, ks.MetaCounter)
	b = binary.BigEndian.AppendUint32(b, ks.MinDecryptVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ks.Versions)))
	m.Write(b)
	for _, r := range ks.Versions {
		b = binary.BigEndian.AppendUint32(b[:0], r.Version)
		b = append(b, byte(r.State), byte(r.Suite))
		b = format.AppendString(b, r.Wrapped.KeyID)
		b = format.AppendString(b, string(r.Wrapped.Ciphertext))
		for _, t := range [...]int64{r.Created.UnixNano(), r.Changed.UnixNano(), r.WrappedAt.UnixNano()} {
			b = binary.BigEndian.AppendUint64(b, uint64(t))
		}
		b = binary.BigEndian.AppendUint64(b, r.Reserved)
		m.Write(b)
	}
	return m.Sum(nil)
}

// headMAC computes the MAC of a metadata head.
func headMAC(key []byte, h *metaHead) []byte {
	m := hmac.New(sha256.New, key)
	b := format.AppendString(nil, "phicrypt/v1/keys/metadata-head")
	b = binary.BigEndian.AppendUint64(b, h.Counter)
	m.Write(append(b, h.Acc...))
	return m.Sum(nil)
}

// xorInto sets acc to acc XOR mac; a nil acc is all zeros.
func xorInto(acc, mac []byte) []byte {
	if len(acc) != sha256.Size {
		acc = make([]byte, sha256.Size)
	}
	for i := range mac {
		acc[i] ^= mac[i]
	}
	return acc
}

// isNew reports whether ks is a key set that was never written: no
// versions, no minimum, no MAC.
func isNew(ks *KeySet) bool {
	return len(ks.Versions) == 0 && ks.MinDecryptVersion == 0 && ks.MetaCounter == 0 && len(ks.MetaMAC) == 0
}

// verify checks ks's MAC, and that its counter is not below floor: the
// highest counter this keyring had seen for it before the read began (a
// read that overlaps a write of this process may return the older
// version, which is no replay).
func (s *sealer) verify(key []byte, ks *KeySet, floor uint64) error {
	if len(ks.MetaMAC) == 0 {
		return fmt.Errorf("%w: %s has no MAC", ErrMetadataTampered, ks.ID.kind())
	}
	if !hmac.Equal(ks.MetaMAC, metaMAC(key, ks)) {
		return fmt.Errorf("%w: %s: MAC mismatch", ErrMetadataTampered, ks.ID.kind())
	}
	if ks.MetaCounter < floor {
		return fmt.Errorf("%w: %s: counter %d is below %d, seen before (an older copy was replayed)", ErrMetadataTampered, ks.ID.kind(), ks.MetaCounter, floor)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.see(ks)
	return nil
}

// floor returns the highest counter seen for id.
func (s *sealer) floor(id ID) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[id]
}

// see records ks's counter as the highest seen; s.mu is held.
func (s *sealer) see(ks *KeySet) {
	if _, ok := s.seen[ks.ID]; !ok && len(s.seen) >= maxSeen {
		clear(s.seen) // bounded memory; the head still guards the store
	}
	s.seen[ks.ID] = max(s.seen[ks.ID], ks.MetaCounter)
}

// checkHead verifies a store's head, and that its counter is not below
// floor, the highest this keyring had seen before the transaction began.
// A head with no MAC is a store where nothing was sealed yet.
func (s *sealer) checkHead(key []byte, h *metaHead, floor uint64) error {
	if h.MAC == nil && h.Counter == 0 && h.Acc == nil {
		if floor > 0 {
			return fmt.Errorf("%w: the metadata head is gone", ErrMetadataTampered)
		}
		return nil
	}
	if !hmac.Equal(h.MAC, headMAC(key, h)) {
		return fmt.Errorf("%w: metadata head MAC mismatch", ErrMetadataTampered)
	}
	if h.Counter < floor {
		return fmt.Errorf("%w: metadata head counter %d is below %d, seen before (the store was rolled back)", ErrMetadataTampered, h.Counter, floor)
	}
	return nil
}

// Get implements Store: it returns the key set if its metadata is
// authentic.
func (s *sealer) Get(ctx context.Context, id ID) (*KeySet, error) {
	floor := s.floor(id)
	ks, err := s.Store.Get(ctx, id)
	if err != nil {
		s.tampered(ctx, id, err) // a row the store could not read
		return nil, err
	}
	if !sealed(id) {
		return ks, nil
	}
	if isNew(ks) && floor == 0 {
		return ks, nil
	}
	key, err := s.macKey(ctx, false)
	if err != nil {
		s.tampered(ctx, id, err)
		return nil, err
	}
	if err := s.verify(key, ks, floor); err != nil {
		s.tampered(ctx, id, err)
		return nil, err
	}
	return ks, nil
}

// List implements Store: it fails with ErrMetadataTampered if any listed
// key set fails its check.
func (s *sealer) List(ctx context.Context, scope string, after ID, limit int) ([]*KeySet, error) {
	sets, err := s.Store.List(ctx, scope, after, limit)
	if err != nil {
		s.tampered(ctx, ID{Scope: scope}, err) // a row the store could not read
		return nil, err
	}
	for _, ks := range sets {
		if !sealed(ks.ID) || isNew(ks) {
			continue
		}
		key, err := s.macKey(ctx, false)
		if err == nil {
			// No replay check: the floor would have to be read before
			// the page was, for IDs not known yet. Get and Update check.
			err = s.verify(key, ks, 0)
		}
		if err != nil {
			s.tampered(ctx, ks.ID, err)
			return nil, err
		}
	}
	return sets, nil
}

// Update implements Store: it checks the stored set (a set never written
// needs no MAC), lets fn change it, then seals it with the next counter,
// and updates the store's head in the same transaction.
func (s *sealer) Update(ctx context.Context, id ID, fn func(ks *KeySet) error) (*KeySet, error) {
	if !sealed(id) {
		return s.Store.Update(ctx, id, fn)
	}
	return s.update(ctx, id, true, fn)
}

// update is Update; with check unset, a set without a MAC is sealed as it
// stands (SealMetadata).
func (s *sealer) update(ctx context.Context, id ID, check bool, fn func(ks *KeySet) error) (*KeySet, error) {
	key, err := s.macKey(ctx, true)
	if err != nil {
		return nil, err
	}
	floor := s.floor(id)
	s.mu.Lock()
	headFloor := s.headSeen
	s.mu.Unlock()
	var out *KeySet
	if ms, ok := s.Store.(metaStore); ok {
		var newHead uint64
		out, err = ms.updateMeta(ctx, id, func(ks *KeySet, tx *metaTx) error {
			if err := s.checkHead(key, tx.head, headFloor); err != nil {
				return err
			}
			guard := &scopeGuard{s: s, key: key, read: tx.tombstones}
			if err := s.sealSet(key, ks, tx.head, guard, floor, check, fn); err != nil {
				return err
			}
			newHead = tx.head.Counter
			return nil
		})
		if err == nil {
			s.mu.Lock()
			s.headSeen = max(s.headSeen, newHead)
			s.mu.Unlock()
		}
	} else {
		// The store cannot read a tombstone inside its transaction: the
		// scopes of new versions are checked after the commit, and what
		// was created in a scope destroyed meanwhile is destroyed.
		var created []string
		out, err = s.Store.Update(ctx, id, func(ks *KeySet) error {
			n := len(ks.Versions)
			created = nil
			if err := s.sealSet(key, ks, nil, nil, floor, check, fn); err != nil {
				return err
			}
			if len(ks.Versions) > n && ks.ID.Scope != TombstoneScope {
				created = createdScopes(ks, n)
			}
			return nil
		})
		if err == nil && len(created) > 0 {
			if derr := s.checkDestroyed(ctx, created); derr != nil {
				s.mu.Lock()
				s.see(out)
				s.mu.Unlock()
				if uerr := s.undoCreated(ctx, id); uerr != nil {
					derr = errors.Join(derr, uerr)
				}
				out, err = nil, derr
			}
		}
	}
	if err != nil {
		s.tampered(ctx, id, err)
		return nil, err
	}
	s.mu.Lock()
	s.see(out)
	s.mu.Unlock()
	return out, nil
}

// MetadataCheckpoint is a position of a store's metadata head: the number
// of sealed writes so far and the head's MAC. Keep the one VerifyMetadata
// returns outside the database and pass it back as an anchor: a store
// rolled back to an earlier copy has a lower counter.
type MetadataCheckpoint struct {
	Counter uint64
	MAC     []byte
}

// MetadataProblem is one failure VerifyMetadata found.
type MetadataProblem struct {
	// ID is the key set concerned; zero for the head and the anchor.
	ID ID
	// Kind is "unsealed" (no MAC), "modified" (wrong MAC), "head" (the
	// head's MAC is wrong, or it does not match the key sets: a key set
	// was replayed, deleted or added) or "anchor" (the head is older than
	// the anchor: the store was rolled back).
	Kind string
}

// MetadataReport is the result of VerifyMetadata.
type MetadataReport struct {
	// Sets is the number of sealed key sets read.
	Sets int
	// Head is the store's head: record it outside the database.
	Head MetadataCheckpoint
	// Problems lists the failures, in (Scope, Name) order, head last.
	Problems []MetadataProblem
}

// MetadataVerifyOptions configure VerifyMetadata.
type MetadataVerifyOptions struct {
	// Anchor, if set, is a Head recorded earlier outside the database.
	Anchor *MetadataCheckpoint
}

// VerifyMetadata reads every key set of the store from one snapshot and
// checks each one's MAC and, together, the store's metadata head: this is
// what finds a single key set replayed from an older authentic copy, or
// deleted, which a read of that one set cannot see. With an anchor, it
// also finds the whole store rolled back. It reports each failure and
// then fails with ErrMetadataTampered. It reads the whole key store: run
// it from a job (the phicrypt command, a cron), not per request.
//
// A Store from outside this package keeps no head: VerifyMetadata then
// checks every key set's MAC only.
func (k *Keyring) VerifyMetadata(ctx context.Context, opts MetadataVerifyOptions) (MetadataReport, error) {
	s := k.sealer
	var r MetadataReport
	key, err := s.macKey(ctx, true)
	if err != nil {
		return r, err
	}
	acc := make([]byte, sha256.Size)
	check := func(ks *KeySet) error {
		if !sealed(ks.ID) || isNew(ks) {
			return nil
		}
		r.Sets++
		switch {
		case len(ks.MetaMAC) == 0:
			r.Problems = append(r.Problems, MetadataProblem{ID: ks.ID, Kind: "unsealed"})
		case !hmac.Equal(ks.MetaMAC, metaMAC(key, ks)):
			r.Problems = append(r.Problems, MetadataProblem{ID: ks.ID, Kind: "modified"})
		}
		xorInto(acc, ks.MetaMAC)
		return nil
	}
	ms, ok := s.Store.(metaStore)
	if !ok {
		after := ID{}
		for {
			sets, err := s.Store.List(ctx, "", after, 500)
			if err != nil {
				return r, err
			}
			for _, ks := range sets {
				check(ks)
				after = ks.ID
			}
			if len(sets) < 500 {
				break
			}
		}
		return r, metadataProblems(r)
	}
	var head metaHead
	err = ms.scanMeta(ctx, func(h *metaHead) error {
		if h != nil {
			head = *h
		}
		return nil
	}, check)
	if err != nil {
		return r, err
	}
	r.Head = MetadataCheckpoint{Counter: head.Counter, MAC: head.MAC}
	wantAcc := head.Acc
	if wantAcc == nil {
		wantAcc = make([]byte, sha256.Size)
	}
	if (head.MAC != nil && !hmac.Equal(head.MAC, headMAC(key, &head))) || !hmac.Equal(acc, wantAcc) {
		r.Problems = append(r.Problems, MetadataProblem{Kind: "head"})
	}
	if a := opts.Anchor; a != nil && (head.Counter < a.Counter || (head.Counter == a.Counter && !hmac.Equal(head.MAC, a.MAC))) {
		r.Problems = append(r.Problems, MetadataProblem{Kind: "anchor"})
	}
	return r, metadataProblems(r)
}

func metadataProblems(r MetadataReport) error {
	if len(r.Problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d problems, first: %s", ErrMetadataTampered, len(r.Problems), r.Problems[0].Kind)
}

// SealReport says what SealMetadata did.
type SealReport struct {
	// Scanned is the number of key sets read, Sealed the number that had
	// no MAC and got one.
	Scanned, Sealed int
}

// SealMetadata is the one-time migration of a key store written by a
// phicrypt release without metadata authentication: it gives every key
// set that has no MAC one, over its metadata as it stands, and audits
// each (OpSealMetadata). Key sets that have a MAC are checked, not
// resealed. Run it once, when upgrading, after reviewing the key states
// (Status): it vouches for whatever the store holds at that moment. Until
// it has run, the keyring refuses every key set without a MAC with
// ErrMetadataTampered; after it, a missing MAC is refused as before.
//
// It first runs VerifyMetadata and refuses, with ErrMetadataTampered, a
// store where anything but unsealed key sets is wrong: a MAC stripped
// from a sealed key set after the migration still counts in the store's
// head, so the migration never reseals it. (A Store from outside this
// package keeps no head: there, keep SealMetadata to the upgrade.)
func (k *Keyring) SealMetadata(ctx context.Context) (SealReport, error) {
	var r SealReport
	vr, err := k.VerifyMetadata(ctx, MetadataVerifyOptions{})
	if err != nil && !errors.Is(err, ErrMetadataTampered) {
		return r, err
	}
	for _, p := range vr.Problems {
		if p.Kind != "unsealed" {
			return r, fmt.Errorf("%w: %s: the store must verify before it is sealed", ErrMetadataTampered, p.Kind)
		}
	}
	after := ID{}
	for {
		sets, err := k.sealer.Store.List(ctx, "", after, 500)
		if err != nil {
			return r, err
		}
		for _, ks := range sets {
			after = ks.ID
			if !sealed(ks.ID) {
				continue
			}
			r.Scanned++
			if len(ks.MetaMAC) > 0 || isNew(ks) {
				continue
			}
			var did bool
			_, err := k.sealer.update(ctx, ks.ID, false, func(cur *KeySet) error {
				did = len(cur.MetaMAC) == 0
				return nil
			})
			e := Event{Op: OpSealMetadata, Scope: ks.ID.Scope, Key: ks.ID.Name, Outcome: Success}
			if err != nil {
				e.Outcome, e.ErrorClass = Failure, ErrorClass(err)
				k.audit(ctx, e)
				return r, err
			}
			if did {
				r.Sealed++
				if err := k.audit(ctx, e); err != nil {
					return r, err
				}
			}
		}
		if len(sets) < 500 {
			return r, nil
		}
	}
}
