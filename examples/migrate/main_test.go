package main

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/testsvc"
)

func TestMain(m *testing.M) { os.Exit(testsvc.RunMain(m)) }

func TestMigrateExample(t *testing.T) {
	for name, dsn := range map[string]func() string{
		"sqlite":   func() string { return "" },
		"postgres": func() string { return testsvc.SharedPostgres(t).CreateDatabase(t, "migrate_example") },
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, run(context.Background(), &out, dsn()))
			s := out.String()
			assert.Contains(t, s, "loaded 1174 patients in plaintext")
			assert.Contains(t, s, "encrypted: 1174 rows scanned, 1174 written, in 6 partitions")
			assert.Contains(t, s, "column ssn: 0 plaintext, 0 null, 0 malformed, by key version v1=1174")
			assert.Contains(t, s, "first row, decrypted:")
		})
	}
}
