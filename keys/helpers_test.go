package keys_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/phicrypt/phicrypt/internal/testsvc"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/kmstest"
	"github.com/phicrypt/phicrypt/kms/local"
)

func TestMain(m *testing.M) { os.Exit(testsvc.RunMain(m)) }

// advance moves the clock of the testing/synctest bubble the test runs in
// by d, and returns once the timers that came due (cache expiry) have run.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// newKEK returns an instrumented local KEK and the key file's path.
func newKEK(t testing.TB) (*kmstest.Instrumented, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kek.json")
	kek, err := local.Create(path, local.Options{KeyID: "local:keys-test"})
	require.NoError(t, err)
	return kmstest.Instrument(kek), path
}

func newKeyring(t testing.TB, cfg keys.Config) *keys.Keyring {
	t.Helper()
	if cfg.KEK == nil {
		cfg.KEK, _ = newKEK(t)
	}
	if cfg.Store == nil {
		cfg.Store = keys.NewMemoryStore()
	}
	kr, err := keys.New(cfg)
	require.NoError(t, err)
	return kr
}

// sqliteDB opens a fresh SQLite database in a temporary file.
func sqliteDB(t testing.TB) *sql.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// postgresDB opens a fresh database in the package's shared PostgreSQL.
func postgresDB(t testing.TB) *sql.DB {
	t.Helper()
	return openPostgres(t, testsvc.SharedPostgres(t).CreateDatabase(t, dbName(t)))
}

// openPostgres opens dsn with pgx, as one process would.
func openPostgres(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

var dbSeq atomic.Int64

func dbName(testing.TB) string {
	return "keys_" + strconv.FormatInt(dbSeq.Add(1), 10)
}

// stores returns a constructor for each kind of store, keyed by name. Each
// call of a constructor returns a new, empty store; SQL constructors may
// return the same database to a second call with the same t when shared is
// set, to act as replicas.
func stores() map[string]func(t testing.TB) keys.Store {
	return map[string]func(t testing.TB) keys.Store{
		"memory": func(t testing.TB) keys.Store { return keys.NewMemoryStore() },
		"sqlite": func(t testing.TB) keys.Store {
			s, err := keys.NewSQLStore(context.Background(), sqliteDB(t), keys.SQLite)
			require.NoError(t, err)
			return s
		},
		"postgres": func(t testing.TB) keys.Store {
			s, err := keys.NewSQLStore(context.Background(), postgresDB(t), keys.Postgres)
			require.NoError(t, err)
			return s
		},
	}
}

// recorder is an Auditor that keeps events, and can fail on demand.
type recorder struct {
	mu     sync.Mutex
	events []keys.Event
	fail   error
}

func (r *recorder) Audit(_ context.Context, e keys.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) ops() []keys.Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []keys.Op
	for _, e := range r.events {
		out = append(out, e.Op)
	}
	return out
}

func (r *recorder) count(op keys.Op) int {
	n := 0
	for _, o := range r.ops() {
		if o == op {
			n++
		}
	}
	return n
}
