package gormphi_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/fields/gormphi"
)

// TestSQLiteConcurrentReadThenWrite runs what an EHR backend's create does
// (search for a duplicate MRN, then insert, in one transaction) from 16
// goroutines at once on SQLite opened with SQLiteDSN: no transaction may
// fail. Without _txlock=immediate they fail with SQLITE_BUSY_SNAPSHOT,
// which a busy timeout cannot wait out.
func TestSQLiteConcurrentReadThenWrite(t *testing.T) {
	codec, _ := newCodec(t, fields.Config{})
	// A path that needs escaping in a URI.
	dir := filepath.Join(t.TempDir(), "a dir #1?")
	require.NoError(t, os.Mkdir(dir, 0o700))
	dsn := gormphi.SQLiteDSN(filepath.Join(dir, "ehr.db"))
	db, err := gorm.Open(sqlite.Dialector{DriverName: "sqlite", DSN: dsn}, &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	t.Cleanup(func() { sqlDB.Close() })
	plugin, err := gormphi.New(gormphi.Config{Codec: codec, Models: []any{&Patient{}}})
	require.NoError(t, err)
	require.NoError(t, db.Use(plugin))
	require.NoError(t, db.AutoMigrate(&Patient{}))

	const clients, each = 16, 12
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, clients*each)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("p-%d-%d", c, i)
				p := &Patient{ID: id, TenantID: "tenant:a", MRN: fields.New("MRN-" + id), SSN: fields.New("999-00-0000")}
				errs <- db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
					found, err := gormphi.Search(tx, &Patient{TenantID: "tenant:a", MRN: fields.New("MRN-" + id)}, "MRNIndex")
					if err != nil {
						return err
					}
					for _, f := range found {
						if f.MRN.Get() == p.MRN.Get() {
							return fmt.Errorf("duplicate %s", id)
						}
					}
					return tx.Create(p).Error
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			t.Log(err)
		}
	}
	assert.Zero(t, failed, "transactions failed under concurrency")
	var n int64
	require.NoError(t, db.Model(&Patient{}).Count(&n).Error)
	assert.Equal(t, int64(clients*each), n)
}
