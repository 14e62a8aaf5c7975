package keys_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
)

func rec(v uint32, state keys.State) keys.Record {
	now := time.Date(2026, 11, 29, 8, 0, 0, int(v), time.UTC)
	r := keys.Record{Version: v, State: state, Suite: envelope.AES256GCM, Created: now, Changed: now, WrappedAt: now}
	if state != keys.Destroyed {
		r.Wrapped = kms.WrappedKey{KeyID: "local:x", Ciphertext: []byte(fmt.Sprintf("wrapped-%d", v))}
	}
	return r
}

// TestStores runs the same contract over every Store.
func TestStores(t *testing.T) {
	for name, newStore := range stores() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t)
			id := keys.DataKey("tenant:a")

			_, err := s.Get(ctx, id)
			assert.ErrorIs(t, err, keys.ErrKeyNotFound)
			assert.ErrorIs(t, err, envelope.ErrKeyNotFound)

			ks, err := s.Update(ctx, id, func(ks *keys.KeySet) error {
				assert.Empty(t, ks.Versions)
				ks.Versions = append(ks.Versions, rec(1, keys.Active))
				return nil
			})
			require.NoError(t, err)
			assert.Equal(t, uint32(1), ks.Latest())

			got, err := s.Get(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, id, got.ID)
			require.Len(t, got.Versions, 1)
			assert.Equal(t, rec(1, keys.Active), got.Versions[0], "a stored record reads back equal")

			// Rotate: v1 decrypt-only, v2 active, in one update.
			_, err = s.Update(ctx, id, func(ks *keys.KeySet) error {
				ks.Versions[0].State = keys.DecryptOnly
				ks.Versions = append(ks.Versions, rec(2, keys.Active))
				ks.MinDecryptVersion = 1
				return nil
			})
			require.NoError(t, err)
			got, err = s.Get(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, keys.DecryptOnly, got.Versions[0].State)
			assert.Equal(t, uint32(2), got.Active().Version)
			assert.Equal(t, uint32(1), got.MinDecryptVersion)

			// Invariants the store enforces.
			boom := errors.New("boom")
			bad := map[string]func(ks *keys.KeySet) error{
				"two active":       func(ks *keys.KeySet) error { ks.Versions[0].State = keys.Active; return nil },
				"gap":              func(ks *keys.KeySet) error { ks.Versions = append(ks.Versions, rec(4, keys.PreActive)); return nil },
				"removed version":  func(ks *keys.KeySet) error { ks.Versions = ks.Versions[:1]; return nil },
				"destroyed w/ key": func(ks *keys.KeySet) error { ks.Versions[0].State = keys.Destroyed; return nil },
				"fn fails":         func(ks *keys.KeySet) error { ks.Versions[1].State = keys.Suspended; return boom },
			}
			for what, fn := range bad {
				_, err := s.Update(ctx, id, fn)
				assert.Error(t, err, what)
				after, gerr := s.Get(ctx, id)
				require.NoError(t, gerr)
				assert.Equal(t, got, after, "%s: a failed update must store nothing", what)
			}
			_, err = s.Update(ctx, id, bad["fn fails"])
			assert.ErrorIs(t, err, boom)

			// Destroying erases the key material.
			_, err = s.Update(ctx, id, func(ks *keys.KeySet) error {
				ks.Versions[0].State, ks.Versions[0].Wrapped = keys.Destroyed, kms.WrappedKey{}
				return nil
			})
			require.NoError(t, err)
			got, err = s.Get(ctx, id)
			require.NoError(t, err)
			assert.Empty(t, got.Versions[0].Wrapped.Ciphertext)

			// Listing: ordered by (scope, name), paged, filtered by scope.
			for _, scope := range []string{"tenant:c", "tenant:b", "tenant:B", "patient:1"} {
				for _, name := range []string{keys.DataKeyName, "index/patients/ssn"} {
					_, err := s.Update(ctx, keys.ID{Scope: scope, Name: name}, func(ks *keys.KeySet) error {
						ks.Versions = append(ks.Versions, rec(1, keys.Active))
						return nil
					})
					require.NoError(t, err)
				}
			}
			var all []keys.ID
			after := keys.ID{}
			for {
				page, err := s.List(ctx, "", after, 3)
				require.NoError(t, err)
				for _, ks := range page {
					all = append(all, ks.ID)
				}
				if len(page) < 3 {
					break
				}
				after = page[len(page)-1].ID
			}
			assert.Equal(t, []keys.ID{
				{Scope: "patient:1", Name: "data"}, {Scope: "patient:1", Name: "index/patients/ssn"},
				{Scope: "tenant:B", Name: "data"}, {Scope: "tenant:B", Name: "index/patients/ssn"},
				{Scope: "tenant:a", Name: "data"},
				{Scope: "tenant:b", Name: "data"}, {Scope: "tenant:b", Name: "index/patients/ssn"},
				{Scope: "tenant:c", Name: "data"}, {Scope: "tenant:c", Name: "index/patients/ssn"},
			}, all, "byte order, whatever the database's collation")
			only, err := s.List(ctx, "tenant:b", keys.ID{}, 10)
			require.NoError(t, err)
			assert.Len(t, only, 2)
		})
	}
}

// withVersion1 gives key set id of s an active version 1.
func withVersion1(t *testing.T, s keys.Store, id keys.ID) {
	t.Helper()
	_, err := s.Update(context.Background(), id, func(ks *keys.KeySet) error {
		ks.Versions = append(ks.Versions, rec(1, keys.Active))
		return nil
	})
	require.NoError(t, err)
}

// TestStoreUpdatesAreAtomic runs concurrent read-modify-write updates of one
// key set: none may be lost.
func TestStoreUpdatesAreAtomic(t *testing.T) {
	for name, newStore := range stores() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t)
			id := keys.DataKey("tenant:count")
			withVersion1(t, s, id)
			const workers, each = 8, 10
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < each; i++ {
						_, err := s.Update(ctx, id, func(ks *keys.KeySet) error {
							ks.Versions[0].Reserved++
							return nil
						})
						assert.NoError(t, err)
					}
				}()
			}
			wg.Wait()
			got, err := s.Get(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, uint64(workers*each), got.Versions[0].Reserved)
		})
	}
}

func TestSchemaNewerThanCodeIsRefused(t *testing.T) {
	ctx := context.Background()
	db := sqliteDB(t)
	_, err := keys.NewSQLStore(ctx, db, keys.SQLite)
	require.NoError(t, err)
	_, err = keys.NewSQLStore(ctx, db, keys.SQLite)
	require.NoError(t, err, "migrating twice is a no-op")
	_, err = db.Exec("UPDATE phicrypt_schema SET version = 99")
	require.NoError(t, err)
	_, err = keys.NewSQLStore(ctx, db, keys.SQLite)
	assert.ErrorContains(t, err, "upgrade phicrypt")
}

// TestStoreGetIsOneSnapshot: Get reads a key set's row and its versions'
// rows as of one moment, while another writer changes both (the metadata
// MAC covers both, so a torn read would fail as tampering).
func TestStoreGetIsOneSnapshot(t *testing.T) {
	for name, newStore := range stores() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t)
			id := keys.DataKey("tenant:snapshot")
			withVersion1(t, s, id)
			done := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				defer close(done)
				for range 200 {
					// Both tables change in one transaction.
					_, err := s.Update(ctx, id, func(ks *keys.KeySet) error {
						ks.Versions[0].Reserved++
						ks.MetaCounter = ks.Versions[0].Reserved
						return nil
					})
					assert.NoError(t, err)
				}
			})
			reads := 0
			for reading := true; reading; reads++ {
				select {
				case <-done:
					reading = false
				default:
				}
				got, err := s.Get(ctx, id)
				require.NoError(t, err)
				require.Equal(t, got.MetaCounter, got.Versions[0].Reserved, "read %d is torn", reads)
			}
			wg.Wait()
			t.Logf("%d reads", reads)
		})
	}
}
