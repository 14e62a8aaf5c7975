package migrate_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/migrate"
)

func sqliteOnly(t *testing.T) *sql.DB {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "m.db")+"?_pragma=busy_timeout(10000)")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func schemaOf(t *testing.T, db *sql.DB) map[string]string {
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

// TestMigrateSchemaScripts: the exported scripts build what Migrate
// builds; CheckSchema and Status run no DDL and type their refusals.
func TestMigrateSchemaScripts(t *testing.T) {
	ctx := context.Background()
	empty := sqliteOnly(t)
	err := migrate.CheckSchema(ctx, empty, keys.SQLite)
	var se *keys.SchemaError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, keys.SchemaError{Tables: "migrate", Have: 0, Want: migrate.SchemaVersion}, *se)
	_, err = migrate.Status(ctx, empty, keys.SQLite, "job")
	assert.ErrorIs(t, err, migrate.ErrNoJob)
	assert.Empty(t, schemaOf(t, empty), "neither created a table")

	byMigrate, byScripts := sqliteOnly(t), sqliteOnly(t)
	require.NoError(t, migrate.Migrate(ctx, byMigrate, keys.SQLite))
	for _, s := range migrate.SchemaMigrations() {
		_, err := byScripts.Exec(s)
		require.NoError(t, err)
	}
	assert.Equal(t, schemaOf(t, byMigrate), schemaOf(t, byScripts))
	require.NoError(t, migrate.CheckSchema(ctx, byScripts, keys.SQLite))

	_, err = byScripts.Exec("UPDATE phicrypt_migration_schema SET version = 99")
	require.NoError(t, err)
	require.ErrorAs(t, migrate.CheckSchema(ctx, byScripts, keys.SQLite), &se)
	assert.Equal(t, 99, se.Have)
	assert.ErrorIs(t, migrate.Migrate(ctx, byScripts, keys.SQLite), keys.ErrSchemaVersion, "a newer schema is not touched")

	// Tables made by a release before the version table count as
	// version 1.
	legacy := sqliteOnly(t)
	require.NoError(t, migrate.Migrate(ctx, legacy, keys.SQLite))
	_, err = legacy.Exec("DROP TABLE phicrypt_migration_schema")
	require.NoError(t, err)
	require.NoError(t, migrate.CheckSchema(ctx, legacy, keys.SQLite))
	require.NoError(t, migrate.Migrate(ctx, legacy, keys.SQLite))
	assert.Equal(t, schemaOf(t, byMigrate), schemaOf(t, legacy))
}
