package keys_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
)

// sqliteSchema returns the tables and indexes of db, by name.
func sqliteSchema(t *testing.T, db *sql.DB) map[string]string {
	rows, err := db.Query("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL")
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, stmt string
		require.NoError(t, rows.Scan(&name, &stmt))
		out[name] = stmt
	}
	require.NoError(t, rows.Err())
	return out
}

func applyScripts(t *testing.T, db *sql.DB, scripts []string) {
	for _, s := range scripts {
		_, err := db.Exec(s)
		require.NoError(t, err)
	}
}

// TestSchemaMigrationsMatchMigrate: the exported scripts build the same
// schema as Migrate, which OpenSQLStore then accepts.
func TestSchemaMigrationsMatchMigrate(t *testing.T) {
	ctx := context.Background()
	byMigrate := sqliteDB(t)
	require.NoError(t, keys.Migrate(ctx, byMigrate, keys.SQLite))
	byScripts := sqliteDB(t)
	scripts, err := keys.SchemaMigrations(keys.SQLite)
	require.NoError(t, err)
	require.Len(t, scripts, keys.SchemaVersion)
	applyScripts(t, byScripts, scripts)
	assert.Equal(t, sqliteSchema(t, byMigrate), sqliteSchema(t, byScripts))
	require.NoError(t, keys.CheckSchema(ctx, byScripts, keys.SQLite))
	require.NoError(t, keys.Migrate(ctx, byScripts, keys.SQLite), "Migrate finds nothing to do")

	pg, err := keys.SchemaMigrations(keys.Postgres)
	require.NoError(t, err)
	assert.Contains(t, pg[0], "BYTEA")
	_, err = keys.SchemaMigrations(keys.Dialect(9))
	assert.Error(t, err)
}

// TestOpenSQLStoreRunsNoDDL: OpenSQLStore checks the version and creates
// nothing.
func TestOpenSQLStoreRunsNoDDL(t *testing.T) {
	ctx := context.Background()
	db := sqliteDB(t)
	_, err := keys.OpenSQLStore(ctx, db, keys.SQLite)
	var se *keys.SchemaError
	require.ErrorAs(t, err, &se)
	assert.ErrorIs(t, err, keys.ErrSchemaVersion)
	assert.Equal(t, keys.SchemaError{Tables: "keys", Have: 0, Want: keys.SchemaVersion}, *se)
	assert.Empty(t, sqliteSchema(t, db), "no table was created")

	scripts, err := keys.SchemaMigrations(keys.SQLite)
	require.NoError(t, err)
	applyScripts(t, db, scripts[:1])
	_, err = keys.OpenSQLStore(ctx, db, keys.SQLite)
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 1, se.Have, "an older schema is refused, not upgraded")
	applyScripts(t, db, scripts[1:])
	store, err := keys.OpenSQLStore(ctx, db, keys.SQLite)
	require.NoError(t, err)
	kek, _ := newKEK(t)
	kr := newKeyring(t, keys.Config{KEK: kek, Store: store})
	_, err = kr.EncryptionKey(ctx, "tenant:a")
	require.NoError(t, err)
	log, err := keys.NewAuditLogIn(ctx, store, kek)
	require.NoError(t, err)
	_, err = log.Verify(ctx, keys.VerifyOptions{})
	require.NoError(t, err)
}

// TestUpgradeFromSchemaVersion1: a key store written at schema version 1
// (no metadata MACs) is upgraded by Migrate, refused until SealMetadata
// seals it, and then decrypts what it encrypted before.
func TestUpgradeFromSchemaVersion1(t *testing.T) {
	ctx := context.Background()
	kek, _ := newKEK(t)
	// A key made by any keyring, copied into a version 1 database as the
	// previous release wrote it.
	mem := keys.NewMemoryStore()
	old := newKeyring(t, keys.Config{KEK: kek, Store: mem})
	ct, err := compact(t, old).Encrypt(ctx, []byte("999-12-3456"), binding("tenant:a", "r1"))
	require.NoError(t, err)
	ks, err := mem.Get(ctx, keys.DataKey("tenant:a"))
	require.NoError(t, err)
	r := ks.Versions[0]

	db := sqliteDB(t)
	scripts, err := keys.SchemaMigrations(keys.SQLite)
	require.NoError(t, err)
	applyScripts(t, db, scripts[:1])
	_, err = db.Exec("INSERT INTO phicrypt_key_sets (scope, name) VALUES ('tenant:a', 'data')")
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO phicrypt_keys (scope, name, version, state, suite, kek_id, wrapped, created_at, changed_at, wrapped_at, reserved)
		VALUES ('tenant:a', 'data', 1, ?, ?, ?, ?, ?, ?, ?, ?)`,
		int64(r.State), int64(r.Suite), r.Wrapped.KeyID, r.Wrapped.Ciphertext, r.Created.UnixNano(), r.Changed.UnixNano(), r.WrappedAt.UnixNano(), int64(r.Reserved))
	require.NoError(t, err)

	store, err := keys.NewSQLStore(ctx, db, keys.SQLite)
	require.NoError(t, err, "Migrate upgrades version 1")
	require.NoError(t, keys.CheckSchema(ctx, db, keys.SQLite))
	kr := newKeyring(t, keys.Config{KEK: kek, Store: store})
	_, err = compact(t, kr).Decrypt(ctx, ct, binding("tenant:a", "r1"))
	assert.ErrorIs(t, err, keys.ErrMetadataTampered, "refused until sealed")
	report, err := kr.SealMetadata(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, report.Sealed)
	pt, err := compact(t, kr).Decrypt(ctx, ct, binding("tenant:a", "r1"))
	require.NoError(t, err)
	assert.Equal(t, "999-12-3456", string(pt))
}
