package keys_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
)

// metaStores returns, per kind of store, a new store and the database
// behind it (nil for the memory store).
func metaStores() map[string]func(t testing.TB) (keys.Store, *sql.DB) {
	return map[string]func(t testing.TB) (keys.Store, *sql.DB){
		"memory": func(t testing.TB) (keys.Store, *sql.DB) { return keys.NewMemoryStore(), nil },
		"sqlite": func(t testing.TB) (keys.Store, *sql.DB) {
			db := sqliteDB(t)
			s, err := keys.NewSQLStore(context.Background(), db, keys.SQLite)
			require.NoError(t, err)
			return s, db
		},
		"postgres": func(t testing.TB) (keys.Store, *sql.DB) {
			db := postgresDB(t)
			s, err := keys.NewSQLStore(context.Background(), db, keys.Postgres)
			require.NoError(t, err)
			return s, db
		},
	}
}

// compromisedKey gives tenant:a a data key whose version 1 is compromised
// (after a rotation to version 2), with a minimum decryption version of 1.
func compromisedKey(t *testing.T, kr *keys.Keyring) keys.ID {
	ctx := context.Background()
	id := keys.DataKey("tenant:a")
	_, err := kr.EncryptionKey(ctx, id.Scope)
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, id)
	require.NoError(t, err)
	_, err = kr.EncryptionKey(ctx, id.Scope) // reserves a block of version 2
	require.NoError(t, err)
	require.NoError(t, kr.SetMinDecryptVersion(ctx, id, 1))
	require.NoError(t, kr.SetState(ctx, id, 1, keys.Compromised))
	return id
}

// tamper changes key set id in store as a database writer without the
// KEK can: through the Store itself, bypassing the keyring, so the MAC
// stays as it was.
func tamper(t *testing.T, store keys.Store, id keys.ID, fn func(ks *keys.KeySet)) {
	t.Helper()
	_, err := store.Update(context.Background(), id, func(ks *keys.KeySet) error { fn(ks); return nil })
	require.NoError(t, err)
}

// TestMetadataTamperIsRefused: each change a database writer could make to
// un-compromise a key, lower its minimum decryption version or reset its
// budget makes the key set unusable, with an audit event.
func TestMetadataTamperIsRefused(t *testing.T) {
	edits := map[string]func(ks *keys.KeySet){
		"un-compromise":   func(ks *keys.KeySet) { ks.Versions[0].State = keys.DecryptOnly },
		"minimum lowered": func(ks *keys.KeySet) { ks.MinDecryptVersion = 0 },
		"budget reset": func(ks *keys.KeySet) {
			require.NotZero(t, ks.Versions[1].Reserved)
			ks.Versions[1].Reserved = 0
		},
		"counter advanced": func(ks *keys.KeySet) { ks.MetaCounter += 100 },
		"MAC deleted":      func(ks *keys.KeySet) { ks.MetaMAC = nil },
	}
	for name, open := range metaStores() {
		for what, edit := range edits {
			t.Run(name+"/"+what, func(t *testing.T) {
				ctx := context.Background()
				kek, _ := newKEK(t)
				store, _ := open(t)
				id := compromisedKey(t, newKeyring(t, keys.Config{KEK: kek, Store: store, AllowCompromisedDecryption: true}))
				tamper(t, store, id, edit)

				rec := &recorder{}
				kr := newKeyring(t, keys.Config{KEK: kek, Store: store, Auditor: rec})
				_, err := kr.DecryptionKey(ctx, id.Scope, 1)
				assert.ErrorIs(t, err, keys.ErrMetadataTampered)
				_, err = kr.EncryptionKey(ctx, id.Scope)
				assert.ErrorIs(t, err, keys.ErrMetadataTampered)
				_, err = kr.Rotate(ctx, id)
				assert.ErrorIs(t, err, keys.ErrMetadataTampered, "nor is a tampered set written over")
				require.NotZero(t, rec.count(keys.OpDenied))
				assert.Equal(t, "metadata-tampered", rec.events[0].ErrorClass, "the refusal is on record")

				_, err = kr.VerifyMetadata(ctx, keys.MetadataVerifyOptions{})
				assert.ErrorIs(t, err, keys.ErrMetadataTampered)
				_, err = kr.SealMetadata(ctx)
				assert.ErrorIs(t, err, keys.ErrMetadataTampered, "the migration does not reseal a tampered set")
			})
		}
	}
}

// TestMetadataDeletedMACInSQL deletes a MAC with SQL, as a database writer
// would.
func TestMetadataDeletedMACInSQL(t *testing.T) {
	for name, open := range metaStores() {
		if name == "memory" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			kek, _ := newKEK(t)
			store, db := open(t)
			id := compromisedKey(t, newKeyring(t, keys.Config{KEK: kek, Store: store}))
			_, err := db.ExecContext(ctx, "UPDATE phicrypt_key_sets SET meta_mac = NULL WHERE scope = 'tenant:a'")
			require.NoError(t, err)
			kr := newKeyring(t, keys.Config{KEK: kek, Store: store})
			_, err = kr.DecryptionKey(ctx, id.Scope, 2)
			assert.ErrorIs(t, err, keys.ErrMetadataTampered)
			_, err = kr.SealMetadata(ctx)
			assert.ErrorIs(t, err, keys.ErrMetadataTampered, "after the migration, a missing MAC stays refused")
			_, err = kr.DecryptionKey(ctx, id.Scope, 2)
			assert.ErrorIs(t, err, keys.ErrMetadataTampered)
		})
	}
}

// TestMetadataUnreadableColumnsInSQL stores values of the wrong type or
// out of range (SQLite keeps text in a number column) in the key store's
// rows: every reader refuses them as tampered metadata, rather than with
// an untyped scan error.
func TestMetadataUnreadableColumnsInSQL(t *testing.T) {
	for _, q := range []string{
		"UPDATE phicrypt_keys SET created_at = 'abc' WHERE scope = 'tenant:a'",
		"UPDATE phicrypt_keys SET reserved = 'x' WHERE scope = 'tenant:a'",
		"UPDATE phicrypt_keys SET version = 4294967297 WHERE scope = 'tenant:a'",
		"UPDATE phicrypt_key_sets SET min_decrypt_version = 'x' WHERE scope = 'tenant:a'",
		"UPDATE phicrypt_key_sets SET min_decrypt_version = 4294967296 WHERE scope = 'tenant:a'",
		"UPDATE phicrypt_key_sets SET meta_counter = 'x' WHERE scope = 'tenant:a'",
	} {
		t.Run(q, func(t *testing.T) {
			ctx := context.Background()
			db := sqliteDB(t)
			store, err := keys.NewSQLStore(ctx, db, keys.SQLite)
			require.NoError(t, err)
			kek, _ := newKEK(t)
			_, err = newKeyring(t, keys.Config{KEK: kek, Store: store}).EncryptionKey(ctx, "tenant:a")
			require.NoError(t, err)
			_, err = db.ExecContext(ctx, q)
			require.NoError(t, err)
			rec := &recorder{}
			kr := newKeyring(t, keys.Config{KEK: kek, Store: store, Auditor: rec, CacheMaxAge: -1})
			_, err = kr.EncryptionKey(ctx, "tenant:a")
			assert.ErrorIs(t, err, keys.ErrMetadataTampered, "EncryptionKey")
			_, err = kr.DecryptionKey(ctx, "tenant:a", 1)
			assert.ErrorIs(t, err, keys.ErrMetadataTampered, "DecryptionKey")
			_, err = kr.Status(ctx, "tenant:a")
			assert.ErrorIs(t, err, keys.ErrMetadataTampered, "Status")
			_, err = kr.Destroy(ctx, "tenant:a")
			assert.ErrorIs(t, err, keys.ErrMetadataTampered, "Destroy")
			_, err = kr.VerifyMetadata(ctx, keys.MetadataVerifyOptions{})
			assert.ErrorIs(t, err, keys.ErrMetadataTampered, "VerifyMetadata")
			assert.NotZero(t, rec.count(keys.OpDenied), "refusals are audited")
		})
	}
}

// TestMetadataReplay replays an older authentic copy of a key set (its
// state from before the compromise, with its genuine MAC): a keyring that
// has seen the newer copy refuses it at once, and VerifyMetadata finds it
// from any process.
func TestMetadataReplay(t *testing.T) {
	for name, open := range metaStores() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			kek, _ := newKEK(t)
			store, _ := open(t)
			kr := newKeyring(t, keys.Config{KEK: kek, Store: store})
			id := keys.DataKey("tenant:a")
			_, err := kr.EncryptionKey(ctx, id.Scope)
			require.NoError(t, err)
			_, err = kr.Rotate(ctx, id)
			require.NoError(t, err)
			before, err := store.Get(ctx, id) // authentic: v1 decrypt-only
			require.NoError(t, err)
			_, err = kr.VerifyMetadata(ctx, keys.MetadataVerifyOptions{})
			require.NoError(t, err)

			require.NoError(t, kr.SetState(ctx, id, 1, keys.Compromised))
			report, err := kr.VerifyMetadata(ctx, keys.MetadataVerifyOptions{})
			require.NoError(t, err)
			anchor := report.Head
			_, err = kr.DecryptionKey(ctx, id.Scope, 1)
			require.ErrorIs(t, err, keys.ErrKeyUnusable)

			tamper(t, store, id, func(ks *keys.KeySet) {
				ks.Versions, ks.MetaCounter, ks.MetaMAC = before.Versions, before.MetaCounter, before.MetaMAC
			})
			_, err = kr.DecryptionKey(ctx, id.Scope, 1)
			assert.ErrorIs(t, err, keys.ErrMetadataTampered, "this keyring saw a newer counter")

			fresh := newKeyring(t, keys.Config{KEK: kek, Store: store})
			report, err = fresh.VerifyMetadata(ctx, keys.MetadataVerifyOptions{Anchor: &anchor})
			assert.ErrorIs(t, err, keys.ErrMetadataTampered)
			assert.Equal(t, []keys.MetadataProblem{{Kind: "head"}}, report.Problems, "every MAC is genuine: only the head shows the replay")
		})
	}
}

// TestMetadataRollbackNeedsTheAnchor rolls the whole store back to an
// earlier copy, which is consistent in itself: the anchor recorded outside
// the database shows it.
func TestMetadataRollbackNeedsTheAnchor(t *testing.T) {
	ctx := context.Background()
	kek, _ := newKEK(t)
	db := sqliteDB(t)
	store, err := keys.NewSQLStore(ctx, db, keys.SQLite)
	require.NoError(t, err)
	kr := newKeyring(t, keys.Config{KEK: kek, Store: store})
	id := keys.DataKey("tenant:a")
	_, err = kr.EncryptionKey(ctx, id.Scope)
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, id)
	require.NoError(t, err)
	snapshot := map[string][][]any{}
	for _, table := range []string{"phicrypt_key_sets", "phicrypt_keys", "phicrypt_key_meta_head"} {
		snapshot[table] = dumpTable(t, db, table)
	}
	require.NoError(t, kr.SetState(ctx, id, 1, keys.Compromised))
	report, err := kr.VerifyMetadata(ctx, keys.MetadataVerifyOptions{})
	require.NoError(t, err)
	anchor := report.Head

	for _, table := range []string{"phicrypt_keys", "phicrypt_key_sets", "phicrypt_key_meta_head"} {
		restoreTable(t, db, table, snapshot[table])
	}
	fresh := newKeyring(t, keys.Config{KEK: kek, Store: store})
	_, err = fresh.VerifyMetadata(ctx, keys.MetadataVerifyOptions{})
	assert.NoError(t, err, "a consistent rollback looks like a restored backup")
	report, err = fresh.VerifyMetadata(ctx, keys.MetadataVerifyOptions{Anchor: &anchor})
	assert.ErrorIs(t, err, keys.ErrMetadataTampered)
	assert.Equal(t, []keys.MetadataProblem{{Kind: "anchor"}}, report.Problems)
	_, err = kr.Rotate(ctx, id)
	assert.ErrorIs(t, err, keys.ErrMetadataTampered, "a keyring that saw the newer head refuses to write")
}

func dumpTable(t *testing.T, db *sql.DB, table string) [][]any {
	rows, err := db.Query("SELECT * FROM " + table)
	require.NoError(t, err)
	defer rows.Close()
	cols, err := rows.Columns()
	require.NoError(t, err)
	var out [][]any
	for rows.Next() {
		row := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range row {
			ptrs[i] = &row[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		out = append(out, row)
	}
	require.NoError(t, rows.Err())
	return out
}

func restoreTable(t *testing.T, db *sql.DB, table string, rows [][]any) {
	_, err := db.Exec("DELETE FROM " + table)
	require.NoError(t, err)
	for _, row := range rows {
		q := "INSERT INTO " + table + " VALUES (?" + repeat(", ?", len(row)-1) + ")"
		_, err := db.Exec(q, row...)
		require.NoError(t, err)
	}
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

// TestSealMetadataMigratesExistingSets: key sets written before metadata
// authentication (no MAC) are refused until the one-time migration seals
// them, and work after it.
func TestSealMetadataMigratesExistingSets(t *testing.T) {
	for name, open := range metaStores() {
		if name == "memory" {
			continue // a memory store never outlives a release
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			kek, _ := newKEK(t)
			store, _ := open(t)
			kr := newKeyring(t, keys.Config{KEK: kek, Store: store})
			c := compact(t, kr)
			var cts [][]byte
			for _, scope := range []string{"tenant:a", "tenant:b", "tenant:c"} {
				ct, err := c.Encrypt(ctx, []byte(scope), binding(scope, "r"))
				require.NoError(t, err)
				cts = append(cts, ct)
				// As a release without metadata authentication left it.
				tamper(t, store, keys.DataKey(scope), func(ks *keys.KeySet) { ks.MetaCounter, ks.MetaMAC = 0, nil })
			}
			// and with no head either.
			_, err := store.(*keys.SQLStore).DB().ExecContext(ctx, "DELETE FROM phicrypt_key_meta_head")
			require.NoError(t, err)
			upgraded := newKeyring(t, keys.Config{KEK: kek, Store: store})
			_, err = compact(t, upgraded).Decrypt(ctx, cts[0], binding("tenant:a", "r"))
			assert.ErrorIs(t, err, keys.ErrMetadataTampered, "unsealed sets are refused before the migration")

			rec := &recorder{}
			migrator := newKeyring(t, keys.Config{KEK: kek, Store: store, Auditor: rec})
			report, err := migrator.SealMetadata(ctx)
			require.NoError(t, err)
			assert.Equal(t, keys.SealReport{Scanned: 3, Sealed: 3}, report)
			assert.Equal(t, 3, rec.count(keys.OpSealMetadata))
			_, err = migrator.VerifyMetadata(ctx, keys.MetadataVerifyOptions{})
			require.NoError(t, err)
			for i, scope := range []string{"tenant:a", "tenant:b", "tenant:c"} {
				pt, err := compact(t, upgraded).Decrypt(ctx, cts[i], binding(scope, "r"))
				require.NoError(t, err)
				assert.Equal(t, scope, string(pt))
			}
			again, err := migrator.SealMetadata(ctx)
			require.NoError(t, err)
			assert.Zero(t, again.Sealed)
		})
	}
}

// TestMetadataHeadUnderConcurrentReplicas: replicas writing key sets at
// once (a store write per encryption) keep the head consistent, and none
// mistakes another's newer write for tampering.
func TestMetadataHeadUnderConcurrentReplicas(t *testing.T) {
	for name, open := range metaStores() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			kek, _ := newKEK(t)
			store, _ := open(t)
			replicas := make([]*keys.Keyring, 3)
			for i := range replicas {
				replicas[i] = newKeyring(t, keys.Config{KEK: kek, Store: store, ReserveBlock: 1, MaxMessages: 5})
			}
			var wg sync.WaitGroup
			for g := 0; g < 6; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for i := 0; i < 10; i++ {
						_, err := replicas[g%3].EncryptionKey(ctx, fmt.Sprint("tenant:", (g+i)%4))
						assert.NoError(t, err)
					}
				}(g)
			}
			wg.Wait()
			report, err := replicas[0].VerifyMetadata(ctx, keys.MetadataVerifyOptions{})
			require.NoError(t, err)
			assert.Equal(t, 4, report.Sets)
			assert.GreaterOrEqual(t, report.Head.Counter, uint64(60), "one sealed write per encryption")
		})
	}
}
