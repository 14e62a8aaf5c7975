package keys_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
)

// TestOpenSQLStoreNeverCreates: OpenSQLStore refuses a database without a
// key store (ErrNoStore) and leaves it without one; once NewSQLStore has
// created it, OpenSQLStore opens it.
func TestOpenSQLStoreNeverCreates(t *testing.T) {
	for name, open := range auditDBs() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, d := open(t)
			_, err := keys.OpenSQLStore(ctx, db, d)
			require.ErrorIs(t, err, keys.ErrNoStore)
			_, err = keys.OpenSQLStore(ctx, db, d)
			require.ErrorIs(t, err, keys.ErrNoStore, "the first call created nothing")

			_, err = keys.NewSQLStore(ctx, db, d)
			require.NoError(t, err)
			s, err := keys.OpenSQLStore(ctx, db, d)
			require.NoError(t, err)
			_, err = s.Get(ctx, keys.DataKey("tenant:a"))
			assert.ErrorIs(t, err, keys.ErrKeyNotFound)
		})
	}
}

// TestStoreUnder: Under lists a scope's key sets and those of the scopes
// under it ("scope/…"), and no others: not a scope that merely begins
// with the same letters.
func TestStoreUnder(t *testing.T) {
	for name, open := range auditDBs() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, d := open(t)
			store, err := keys.NewSQLStore(ctx, db, d)
			require.NoError(t, err)
			kek, _ := newKEK(t)
			kr := newKeyring(t, keys.Config{KEK: kek, Store: store})
			for _, scope := range []string{"tenant:a", "tenant:a/patient/1", "tenant:a/patient/2", "tenant:ab", "tenant:a0", "tenant:b/patient/1"} {
				_, err := kr.Rotate(ctx, keys.DataKey(scope))
				require.NoError(t, err)
			}
			ix, err := keys.IndexKeyID("tenant:a", "Patient", "ssn_index")
			require.NoError(t, err)
			_, err = kr.Rotate(ctx, ix)
			require.NoError(t, err)

			ids, err := store.Under(ctx, "tenant:a")
			require.NoError(t, err)
			assert.Equal(t, []keys.ID{keys.DataKey("tenant:a"), ix, keys.DataKey("tenant:a/patient/1"), keys.DataKey("tenant:a/patient/2")}, ids)
			ids, err = store.Under(ctx, "tenant:c")
			require.NoError(t, err)
			assert.Empty(t, ids)
			_, err = store.Under(ctx, "")
			assert.ErrorIs(t, err, keys.ErrInvalidID)
		})
	}
}
