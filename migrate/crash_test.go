package migrate_test

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
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

// TestCrashSafety migrates a PostgreSQL table with a worker process that
// is killed with SIGKILL at random moments and restarted until it
// finishes, for five seeds: 100,000 rows with PHICRYPT_FULL_TESTS=1, 5,000
// otherwise (the same properties, kills included, in a few seconds). Afterwards the table has the same rows,
// every value decrypts (once: nothing was encrypted twice) to the original
// plaintext, and the job is complete.
func TestCrashSafety(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("in the worker process")
	}
	rows := 5_000
	if testsvc.Full() {
		rows = 100_000
		if raceEnabled || testing.Short() {
			rows = 10_000
		}
	}
	for seed := uint64(1); seed <= 5; seed++ {
		t.Run("seed"+strconv.FormatUint(seed, 10), func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, kinds[1], rows)
			rng := rand.New(rand.NewPCG(seed, 42))
			kills := 0
			// Workers are killed at a random moment of a window that
			// doubles after every run that finished no partition, so
			// that slow machines (or -race) still make progress, and
			// returns to its start after one that did.
			base := 250 // ms
			window, done := base, 0
			for run := 0; ; run++ {
				require.Less(t, run, 500, "the job never finished")
				cmd := exec.Command(os.Args[0], "-test.run=^TestMigrationWorker$", "-test.count=1")
				cmd.Env = append(os.Environ(), childEnv+"="+e.dsn, "PHICRYPT_TEST_KEK="+e.kekPath)
				exited, err := testsvc.StartChild(cmd)
				require.NoError(t, err)
				select {
				case err := <-exited:
					require.NoError(t, err, "the worker failed on its own")
				case <-time.After(time.Duration(20+rng.IntN(window)) * time.Millisecond):
					cmd.Process.Signal(syscall.SIGKILL)
					<-exited
					kills++
					if st, err := migrate.Status(ctx, e.db, e.dialect, "crash"); err == nil && st.PartitionsDone > done {
						done, window = st.PartitionsDone, base
					} else {
						window = min(2*window, 60_000)
					}
					continue
				}
				break
			}
			t.Logf("%d rows, %d kills", rows, kills)
			assert.Positive(t, kills, "the test must actually kill workers")

			var n int
			require.NoError(t, e.db.QueryRow("SELECT count(*) FROM patients").Scan(&n))
			assert.Equal(t, rows, n, "no row lost or added")
			st, err := migrate.Status(ctx, e.db, e.dialect, "crash")
			require.NoError(t, err)
			assert.Equal(t, st.Partitions, st.PartitionsDone)
			assert.False(t, st.Finished.IsZero(), "status complete")
			v, err := migrate.Verify(ctx, migrate.VerifyConfig{DB: e.db, Dialect: e.dialect, Spec: spec})
			require.NoError(t, err)
			assert.True(t, v.Complete(), v.String())

			got := e.readAll(t, e.codec)
			for id, want := range e.plain {
				p := got[id]
				require.NotNil(t, p)
				have := [4]string{p.SSN.Get(), p.Last.Get(), p.BirthDate.Get().Format("2006-01-02"), strconv.FormatInt(p.Visits.Get(), 10)}
				require.Equal(t, rowHash(want), rowHash(have), "row %s: plaintext changed or encrypted twice", id)
			}
		})
	}
}

const childEnv = "PHICRYPT_MIGRATE_CHILD_DSN"

// TestMigrationWorker is the worker process of TestCrashSafety: it runs
// the job until it is done.
func TestMigrationWorker(t *testing.T) {
	dsn := os.Getenv(childEnv)
	if dsn == "" {
		t.Skip("only run by TestCrashSafety, as a separate process")
	}
	ctx := context.Background()
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	defer db.Close()
	kek, err := local.New(local.Config{Path: os.Getenv("PHICRYPT_TEST_KEK")})
	require.NoError(t, err)
	store, err := keys.NewSQLStore(ctx, db, keys.Postgres)
	require.NoError(t, err)
	kr, err := keys.New(keys.Config{KEK: kek, Store: store})
	require.NoError(t, err)
	codec, err := fields.NewCodec(fields.Config{Keyring: kr})
	require.NoError(t, err)
	_, err = migrate.Run(ctx, migrate.Config{DB: db, Dialect: keys.Postgres, Codec: codec, Keyring: kr,
		Job: "crash", Kind: migrate.Encrypt, Spec: spec, PartitionRows: 1000, BatchRows: 250})
	require.NoError(t, err)
}
