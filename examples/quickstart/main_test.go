package main

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms/local"
)

func TestQuickstart(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state")

	var first bytes.Buffer
	require.NoError(t, run(ctx, &first, dir))
	out := first.String()
	assert.Contains(t, out, "created local KEK local:quickstart")
	assert.Contains(t, out, "stored 20 patients, KMS calls so far: 7", "a data key and two index keys per tenant, and the metadata key")
	assert.Contains(t, out, "1 match")
	assert.Contains(t, out, "Ignacio928 Gottlieb798, born 1993-05-10, 182 Stanton Neck Unit 15, Boston")
	assert.Contains(t, out, "moved to another patient's row: fields: main.Patient.SSN (column ssn): envelope: message authentication failed")

	// Nothing of the PHI is in the database file in clear.
	db, err := os.ReadFile(filepath.Join(dir, "quickstart.db"))
	require.NoError(t, err)
	wal, _ := os.ReadFile(filepath.Join(dir, "quickstart.db-wal"))
	for _, phi := range []string{"999-32-6219", "Ignacio928", "Gottlieb798", "Stanton Neck"} {
		assert.False(t, bytes.Contains(db, []byte(phi)) || bytes.Contains(wal, []byte(phi)), "%s in the database", phi)
	}

	fi, err := os.Stat(filepath.Join(dir, "quickstart-kek.json"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	// A second run reuses the KEK and the keys: no new key is created.
	var second bytes.Buffer
	require.NoError(t, run(ctx, &second, dir))
	assert.Contains(t, second.String(), "using local KEK local:quickstart")
	assert.True(t, strings.Contains(second.String(), "KMS calls so far: 7"), "the keys (and the metadata key) are unwrapped from the store, not recreated")
	conn, err := sql.Open("sqlite", filepath.Join(dir, "quickstart.db"))
	require.NoError(t, err)
	defer conn.Close()
	var n int
	require.NoError(t, conn.QueryRow(`SELECT count(*) FROM phicrypt_keys`).Scan(&n))
	assert.Equal(t, 7, n, "one data key and two index keys for each of two tenants, and the metadata key")
}

func TestQuickstartRefusesOpenKeyFile(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, run(context.Background(), &bytes.Buffer{}, dir))
	require.NoError(t, os.Chmod(filepath.Join(dir, "quickstart-kek.json"), 0o644))
	err := run(context.Background(), &bytes.Buffer{}, dir)
	assert.ErrorIs(t, err, local.ErrInsecurePermissions)
}
