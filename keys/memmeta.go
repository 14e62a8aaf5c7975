package keys

import (
	"context"
	"slices"
	"strings"
)

var _ metaStore = (*MemoryStore)(nil)

func (h *metaHead) clone() *metaHead {
	return &metaHead{Counter: h.Counter, Acc: slices.Clone(h.Acc), MAC: slices.Clone(h.MAC)}
}

// updateMeta implements metaStore.
func (m *MemoryStore) updateMeta(ctx context.Context, id ID, fn func(ks *KeySet, tx *metaTx) error) (*KeySet, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.sets[id]
	if !ok {
		old = &KeySet{ID: id}
	}
	ks, head := old.clone(), m.head.clone()
	if err := fn(ks, &metaTx{head: head, tombstones: m.tombstones}); err != nil {
		return nil, err
	}
	if err := checkUpdate(old, ks); err != nil {
		return nil, err
	}
	m.sets[id], m.head = ks, *head
	return ks.clone(), nil
}

// tombstones is the tombstoneReader of a write: m.mu is held.
func (m *MemoryStore) tombstones(scopes []string) (map[string]*KeySet, error) {
	out := make(map[string]*KeySet)
	for _, scope := range scopes {
		if ks, ok := m.sets[tombstoneID(scope)]; ok {
			out[scope] = ks.clone()
		}
	}
	return out, nil
}

// scanMeta implements metaStore.
func (m *MemoryStore) scanMeta(ctx context.Context, head func(*metaHead) error, each func(*KeySet) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var h *metaHead
	if m.head.MAC != nil {
		h = m.head.clone()
	}
	if err := head(h); err != nil {
		return err
	}
	sets := make([]*KeySet, 0, len(m.sets))
	for _, ks := range m.sets {
		sets = append(sets, ks)
	}
	slices.SortFunc(sets, func(a, b *KeySet) int {
		if c := strings.Compare(a.ID.Scope, b.ID.Scope); c != 0 {
			return c
		}
		return strings.Compare(a.ID.Name, b.ID.Name)
	})
	for _, ks := range sets {
		if err := each(ks.clone()); err != nil {
			return err
		}
	}
	return nil
}
