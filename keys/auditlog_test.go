package keys_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
)

func auditDBs() map[string]func(t testing.TB) (*sql.DB, keys.Dialect) {
	return map[string]func(t testing.TB) (*sql.DB, keys.Dialect){
		"sqlite":   func(t testing.TB) (*sql.DB, keys.Dialect) { return sqliteDB(t), keys.SQLite },
		"postgres": func(t testing.TB) (*sql.DB, keys.Dialect) { return postgresDB(t), keys.Postgres },
	}
}

// fillLog writes n events through a keyring whose Auditor is log.
func fillLog(t *testing.T, db *sql.DB, d keys.Dialect, log *keys.AuditLog, n int) {
	ctx := keys.WithPrincipal(context.Background(), "svc-ehr")
	store, err := keys.NewSQLStore(ctx, db, d)
	require.NoError(t, err)
	kek, _ := newKEK(t)
	kr := newKeyring(t, keys.Config{KEK: kek, Store: store, Auditor: log, AuditUses: true})
	for i := 0; i < n; i++ {
		_, err := kr.EncryptionKey(ctx, "tenant:a")
		require.NoError(t, err)
	}
}

func TestAuditLogVerifier(t *testing.T) {
	for name, open := range auditDBs() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, d := open(t)
			kek, _ := newKEK(t)
			log, err := keys.NewAuditLog(ctx, db, d, kek)
			require.NoError(t, err)
			fillLog(t, db, d, log, 10) // create + 10 uses
			report, err := log.Verify(ctx, keys.VerifyOptions{})
			require.NoError(t, err)
			assert.Equal(t, int64(11), report.Events)
			assert.Equal(t, int64(11), report.Head.Seq)
			anchor := report.Head

			// Reopening the log (another process) reuses its chain key.
			reopened, err := keys.NewAuditLog(ctx, db, d, kek)
			require.NoError(t, err)
			_, err = reopened.Verify(ctx, keys.VerifyOptions{Anchor: &anchor})
			require.NoError(t, err)

			tamper := func(what, query string, args ...any) []keys.AuditProblem {
				t.Helper()
				_, err := db.ExecContext(ctx, query, args...)
				require.NoError(t, err, what)
				report, err := log.Verify(ctx, keys.VerifyOptions{Anchor: &anchor})
				assert.ErrorIs(t, err, keys.ErrAuditTampered, what)
				return report.Problems
			}
			q := d.Rebind

			// An edited event.
			var event string
			require.NoError(t, db.QueryRowContext(ctx, "SELECT event FROM phicrypt_audit WHERE seq = 4").Scan(&event))
			problems := tamper("edit", q("UPDATE phicrypt_audit SET event = ? WHERE seq = 4"), event[:len(event)-1]+` `)
			assert.Equal(t, []keys.AuditProblem{{Seq: 4, Kind: "modified"}}, problems)
			_, err = db.ExecContext(ctx, q("UPDATE phicrypt_audit SET event = ? WHERE seq = 4"), event)
			require.NoError(t, err)
			_, err = log.Verify(ctx, keys.VerifyOptions{Anchor: &anchor})
			require.NoError(t, err, "restored")

			// A deleted event.
			var event6 string
			var mac6 []byte
			require.NoError(t, db.QueryRowContext(ctx, "SELECT event, mac FROM phicrypt_audit WHERE seq = 6").Scan(&event6, &mac6))
			problems = tamper("delete", "DELETE FROM phicrypt_audit WHERE seq = 6")
			assert.Equal(t, []keys.AuditProblem{{Seq: 6, Kind: "deleted"}}, problems)
			_, err = db.ExecContext(ctx, q("INSERT INTO phicrypt_audit (seq, event, mac) VALUES (?, ?, ?)"), 6, event6, mac6)
			require.NoError(t, err)

			// An inserted event, forged without the key.
			problems = tamper("insert", q("INSERT INTO phicrypt_audit (seq, event, mac) VALUES (?, ?, ?)"), 100, `{"op":"unwrap"}`, make([]byte, 32))
			assert.Equal(t, []keys.AuditProblem{{Seq: 100, Kind: "inserted"}}, problems)
			_, err = db.ExecContext(ctx, "DELETE FROM phicrypt_audit WHERE seq = 100")
			require.NoError(t, err)

			// Deleting the newest event while the head still names it.
			var event11 string
			var mac11 []byte
			require.NoError(t, db.QueryRowContext(ctx, "SELECT event, mac FROM phicrypt_audit WHERE seq = 11").Scan(&event11, &mac11))
			problems = tamper("delete newest", "DELETE FROM phicrypt_audit WHERE seq = 11")
			assert.Equal(t, []keys.AuditProblem{{Seq: 11, Kind: "deleted"}, {Seq: 11, Kind: "anchor"}}, problems)
			_, err = db.ExecContext(ctx, q("INSERT INTO phicrypt_audit (seq, event, mac) VALUES (?, ?, ?)"), 11, event11, mac11)
			require.NoError(t, err)
			_, err = log.Verify(ctx, keys.VerifyOptions{Anchor: &anchor})
			require.NoError(t, err, "restored")

			// Deleting the tail and rewinding the head: only the anchor
			// shows it.
			var headMAC []byte
			require.NoError(t, db.QueryRowContext(ctx, "SELECT mac FROM phicrypt_audit WHERE seq = 9").Scan(&headMAC))
			_, err = db.ExecContext(ctx, "DELETE FROM phicrypt_audit WHERE seq > 9")
			require.NoError(t, err)
			problems = tamper("truncate", q("UPDATE phicrypt_audit_head SET seq = 9, mac = ? WHERE id = 1"), headMAC)
			assert.Equal(t, []keys.AuditProblem{{Seq: 11, Kind: "anchor"}}, problems)
			_, err = log.Verify(ctx, keys.VerifyOptions{})
			assert.NoError(t, err, "without an anchor, a clean truncation is invisible: record the head outside the database")
		})
	}
}

func TestAuditLogConcurrentAppends(t *testing.T) {
	for name, open := range auditDBs() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, d := open(t)
			kek, _ := newKEK(t)
			logs := make([]*keys.AuditLog, 3)
			for i := range logs { // three processes
				var err error
				logs[i], err = keys.NewAuditLog(ctx, db, d, kek)
				require.NoError(t, err)
			}
			var wg sync.WaitGroup
			for g := 0; g < 12; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for i := 0; i < 10; i++ {
						err := logs[g%3].Audit(ctx, keys.Event{Time: time.Now(), Op: keys.OpUse, Scope: fmt.Sprint("tenant:", g), Key: "data", Outcome: keys.Success})
						assert.NoError(t, err)
					}
				}(g)
			}
			wg.Wait()
			report, err := logs[0].Verify(ctx, keys.VerifyOptions{})
			require.NoError(t, err)
			assert.Equal(t, int64(120), report.Events, "no append lost or forked")
		})
	}
}

// TestAuditLogVerifyWhileAppending: Verify of an intact log reports
// nothing while other callers append to it: it reads the head and the
// events from one snapshot, so an append between the two reads cannot
// look like a truncated tail.
func TestAuditLogVerifyWhileAppending(t *testing.T) {
	for name, open := range auditDBs() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, d := open(t)
			kek, _ := newKEK(t)
			log, err := keys.NewAuditLog(ctx, db, d, kek)
			require.NoError(t, err)
			writer, err := keys.NewAuditLog(ctx, db, d, kek) // another process
			require.NoError(t, err)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var appended atomic.Int64
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						assert.NoError(t, writer.Audit(ctx, keys.Event{Time: time.Now(), Op: keys.OpUse, Scope: "tenant:a", Key: "data", Outcome: keys.Success}))
						appended.Add(1)
					}
				}()
			}
			defer wg.Wait()
			defer close(stop)
			// At least 100 verifies, over at least 200 appends.
			var last int64
			for i := 0; i < 100 || appended.Load() < 200; i++ {
				report, err := log.Verify(ctx, keys.VerifyOptions{})
				require.NoError(t, err, "an intact log, appended to while read: %+v", report.Problems)
				require.GreaterOrEqual(t, report.Events, last, "a snapshot never goes back")
				last = report.Events
			}
		})
	}
}

// TestAuditLogChainKeyDeleted: a database writer who deletes the chain
// key's rows cannot make the log look absent (ErrNoAuditLog, which tools
// read as "do not record"), nor have NewAuditLog start a new chain over
// the old events: both fail with ErrAuditTampered and create no key.
func TestAuditLogChainKeyDeleted(t *testing.T) {
	for name, open := range auditDBs() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			kek, _ := newKEK(t)
			// scenario tampers with a log of 11 events.
			scenario := func(t *testing.T, tamper ...string) (*sql.DB, keys.Dialect) {
				db, d := open(t)
				log, err := keys.NewAuditLog(ctx, db, d, kek)
				require.NoError(t, err)
				fillLog(t, db, d, log, 10)
				for _, q := range tamper {
					_, err := db.ExecContext(ctx, q)
					require.NoError(t, err, q)
				}
				return db, d
			}
			chainKeys := func(t *testing.T, db *sql.DB) int {
				var n int
				require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM phicrypt_keys WHERE scope = 'phicrypt:audit'").Scan(&n))
				return n
			}
			for _, tc := range []struct {
				name   string
				tamper []string
			}{
				{"key set and versions deleted", []string{
					"DELETE FROM phicrypt_keys WHERE scope = 'phicrypt:audit'",
					"DELETE FROM phicrypt_key_sets WHERE scope = 'phicrypt:audit'"}},
				{"versions deleted", []string{"DELETE FROM phicrypt_keys WHERE scope = 'phicrypt:audit'"}},
				{"events deleted too, head kept", []string{
					"DELETE FROM phicrypt_keys WHERE scope = 'phicrypt:audit'",
					"DELETE FROM phicrypt_key_sets WHERE scope = 'phicrypt:audit'",
					"DELETE FROM phicrypt_audit"}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					db, d := scenario(t, tc.tamper...)
					_, err := keys.OpenAuditLog(ctx, db, d, kek)
					assert.ErrorIs(t, err, keys.ErrAuditTampered)
					assert.NotErrorIs(t, err, keys.ErrNoAuditLog)
					_, err = keys.NewAuditLog(ctx, db, d, kek)
					assert.ErrorIs(t, err, keys.ErrAuditTampered)
					store, err := keys.OpenSQLStore(ctx, db, d)
					require.NoError(t, err)
					_, err = keys.NewAuditLogIn(ctx, store, kek)
					assert.ErrorIs(t, err, keys.ErrAuditTampered)
					assert.Zero(t, chainKeys(t, db), "no new chain key over the old events")
				})
			}

			// A database whose log was never used has no log, and gets one.
			db, d := open(t)
			_, err := keys.OpenAuditLog(ctx, db, d, kek)
			require.ErrorIs(t, err, keys.ErrNoAuditLog)
			_, err = keys.NewAuditLog(ctx, db, d, kek)
			require.NoError(t, err)
		})
	}
}

// TestAuditLogGroupCommit checks the group commit: concurrent appends
// from one AuditLog all land, in one valid chain, each exactly once, and
// callers whose contexts end while they wait neither stall the queue nor
// lose the others' events.
func TestAuditLogGroupCommit(t *testing.T) {
	for name, open := range auditDBs() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, d := open(t)
			kek, _ := newKEK(t)
			log, err := keys.NewAuditLog(ctx, db, d, kek)
			require.NoError(t, err)

			const callers = 64
			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				ok       = map[string]bool{}
				canceled int
			)
			for g := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cctx := ctx
					if g%8 == 7 {
						// Some callers give up at once.
						c, cancel := context.WithCancel(ctx)
						cancel()
						cctx = c
					}
					scope := fmt.Sprint("tenant:", g)
					err := log.Audit(cctx, keys.Event{Time: time.Now(), Op: keys.OpUse, Scope: scope, Key: "data", Outcome: keys.Success})
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						assert.ErrorIs(t, err, context.Canceled)
						canceled++
						return
					}
					ok[scope] = true
				}()
			}
			wg.Wait()
			// The queue still moves after the cancellations.
			require.NoError(t, log.Audit(ctx, keys.Event{Time: time.Now(), Op: keys.OpUse, Scope: "tenant:last", Key: "data", Outcome: keys.Success}))

			report, err := log.Verify(ctx, keys.VerifyOptions{})
			require.NoError(t, err)
			assert.GreaterOrEqual(t, report.Events, int64(len(ok)+1))
			assert.LessOrEqual(t, report.Events, int64(callers+1), "no event twice")
			// Every confirmed event is in the log, exactly once.
			rows, err := db.QueryContext(ctx, "SELECT event FROM phicrypt_audit")
			require.NoError(t, err)
			defer rows.Close()
			seen := map[string]int{}
			for rows.Next() {
				var ev keys.Event
				var raw string
				require.NoError(t, rows.Scan(&raw))
				require.NoError(t, json.Unmarshal([]byte(raw), &ev))
				seen[ev.Scope]++
			}
			for scope := range ok {
				assert.Equal(t, 1, seen[scope], scope)
			}
			for scope, n := range seen {
				assert.Equal(t, 1, n, scope)
			}
		})
	}
}
