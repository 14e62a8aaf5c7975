package migrate_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/internal/testsvc"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
	"github.com/phicrypt/phicrypt/migrate"
)

// TestDMLOnlyRole runs the library under a PostgreSQL role that may read
// and write rows and nothing more: the tables come from the exported
// scripts, applied by a privileged role as a schema tool would; the
// application opens the key store, the audit log and a migration job
// without any DDL.
func TestDMLOnlyRole(t *testing.T) {
	ctx := context.Background()
	pg := testsvc.SharedPostgres(t)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e12, 36)
	role, name := "phicrypt_dml_"+suffix, "dml_"+suffix
	// Registered first, so it runs after the database is dropped.
	t.Cleanup(func() { pg.Psql(context.Background(), "postgres", "-c", "DROP ROLE IF EXISTS "+role) })
	adminDSN := pg.CreateDatabase(t, name)
	admin, err := sql.Open("pgx", adminDSN)
	require.NoError(t, err)
	t.Cleanup(func() { admin.Close() })

	// The schema tool's part, as the owner.
	scripts, err := keys.SchemaMigrations(keys.Postgres)
	require.NoError(t, err)
	for _, script := range append(scripts, migrate.SchemaMigrations()...) {
		_, err := admin.ExecContext(ctx, script)
		require.NoError(t, err)
	}
	e := &env{db: admin, dialect: keys.Postgres, dsn: adminDSN, plain: map[string][4]string{}}
	_, err = admin.ExecContext(ctx, `CREATE TABLE patients (
		id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, ssn TEXT, last TEXT, birth_date TEXT,
		visits INTEGER, visits_enc TEXT, ssn_index BYTEA, name_dob BYTEA)`)
	require.NoError(t, err)
	e.load(t, 300)
	_, err = pg.Psql(ctx, name, "-c", strings.Join([]string{
		"CREATE ROLE " + role + " LOGIN",
		"REVOKE CREATE ON SCHEMA public FROM PUBLIC",
		"GRANT USAGE ON SCHEMA public TO " + role,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO " + role,
	}, "; "))
	require.NoError(t, err)

	// The application's part, as the DML-only role.
	appDSN := strings.Replace(adminDSN, "//"+pg.User+"@", "//"+role+"@", 1)
	require.NotEqual(t, adminDSN, appDSN)
	app, err := sql.Open("pgx", appDSN)
	require.NoError(t, err)
	t.Cleanup(func() { app.Close() })

	_, err = keys.NewSQLStore(ctx, app, keys.Postgres)
	require.ErrorContains(t, err, "permission denied", "NewSQLStore runs DDL, even on a current schema")
	store, err := keys.OpenSQLStore(ctx, app, keys.Postgres)
	require.NoError(t, err, "OpenSQLStore only checks the version")
	e.kekPath = filepath.Join(t.TempDir(), "kek.json")
	kek, err := local.Create(e.kekPath, local.Options{KeyID: "local:dml-test"})
	require.NoError(t, err)
	log, err := keys.NewAuditLogIn(ctx, store, kek)
	require.NoError(t, err)
	e.keyring, err = keys.New(keys.Config{KEK: kek, Store: store, Auditor: log, AuditFailClosed: true})
	require.NoError(t, err)
	e.codec, err = fields.NewCodec(fields.Config{Keyring: e.keyring})
	require.NoError(t, err)
	e.db = app

	cfg := e.config("dml-encrypt", migrate.Encrypt)
	_, err = migrate.Run(ctx, cfg)
	require.ErrorContains(t, err, "permission denied", "by default Run creates its tables")
	cfg.CheckSchemaOnly = true
	report, err := migrate.Run(ctx, cfg)
	require.NoError(t, err)
	assert.Equal(t, int64(300), report.Written)
	e.checkPlaintext(t, e.readAll(t, e.codec))
	st, err := migrate.Status(ctx, app, keys.Postgres, "dml-encrypt")
	require.NoError(t, err)
	assert.False(t, st.Finished.IsZero())

	_, err = e.keyring.Rotate(ctx, keys.DataKey("tenant:1"))
	require.NoError(t, err)
	_, err = e.keyring.VerifyMetadata(ctx, keys.MetadataVerifyOptions{})
	require.NoError(t, err)
	vr, err := log.Verify(ctx, keys.VerifyOptions{})
	require.NoError(t, err)
	assert.Greater(t, vr.Events, int64(3))

	// A schema the application does not know is refused, without DDL.
	_, err = admin.ExecContext(ctx, "UPDATE phicrypt_schema SET version = 1")
	require.NoError(t, err)
	_, err = keys.OpenSQLStore(ctx, app, keys.Postgres)
	var se *keys.SchemaError
	require.ErrorAs(t, err, &se)
	assert.ErrorIs(t, err, keys.ErrSchemaVersion)
	assert.Equal(t, keys.SchemaError{Tables: "keys", Have: 1, Want: keys.SchemaVersion}, *se)
}
