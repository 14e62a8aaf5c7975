package keys

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/phicrypt/phicrypt/internal/kdf"
	"github.com/phicrypt/phicrypt/kms"
)

// ErrAuditTampered means Verify found the audit log altered, or that
// NewAuditLog or OpenAuditLog found a log that holds events without its
// chain key (the key's rows were deleted from the key store).
var ErrAuditTampered = errors.New("keys: audit log tampered with")

// ErrNoAuditLog means OpenAuditLog found no audit log in the database.
var ErrNoAuditLog = errors.New("keys: no audit log in this database")

// auditChainKey is the key set of the audit log's chain key, kept in the
// same tables as the other keys, wrapped by the KEK. Its scope is reserved
// (ReservedScopePrefix): no Keyring method can create, rotate, retire or
// destroy it, so the chain cannot be shredded. Only the functions of this
// file read and create it, through the Store directly; Keyring.Rewrap
// rewraps it with the other keys after a KEK rotation.
var auditChainKey = ID{Scope: ReservedScopePrefix + "audit", Name: "chain"}

// AuditLog is a tamper-evident Auditor persisted in the SQL store's
// database. Each event is stored with an HMAC-SHA-256 over the previous
// event's MAC, its own sequence number and its canonical JSON, under a key
// that the KEK wraps: someone who can write the database but cannot use
// the KEK cannot edit, insert, delete or reorder events without Verify
// noticing. Appends are serialized across processes (a row lock on
// PostgreSQL, an immediate transaction on SQLite), and concurrent appends
// within a process share one transaction (see Audit).
//
// Deleting the newest events and rewinding the head is the one change a
// chain cannot show by itself: record Verify's Head somewhere the database
// administrators cannot write (a log shipper, a WORM bucket, a ticket) and
// pass it back as VerifyOptions.Anchor.
//
// Each group commit takes a connection from db's pool. A service that
// shares the pool with its requests keeps enough idle connections for the
// requests it serves at once plus one (sql.DB.SetMaxIdleConns): with
// database/sql's default of 2, every commit may open a new connection.
type AuditLog struct {
	db      *sql.DB
	dialect Dialect
	key     []byte

	// The group commit's queue: events waiting for a commit, and whether
	// a caller is committing.
	mu         sync.Mutex
	queue      []*auditWaiter
	committing bool
}

var _ Auditor = (*AuditLog)(nil)

// NewAuditLog returns the audit log of db, creating its tables (Migrate)
// and its chain key (wrapped by kek) on first use. A log that holds events
// but whose chain key is gone fails with ErrAuditTampered: a new key
// would start a second chain over the old one, and nobody could tell
// which events were forged.
func NewAuditLog(ctx context.Context, db *sql.DB, dialect Dialect, kek kms.KEK) (*AuditLog, error) {
	return openAuditLog(ctx, db, dialect, kek, true)
}

// OpenAuditLog returns the audit log of db if one exists (NewAuditLog
// created it), and fails with ErrNoAuditLog otherwise: when the database
// holds neither the log's chain key nor any event. Events without the
// chain key fail with ErrAuditTampered, never ErrNoAuditLog, so that
// deleting the key cannot make the log look absent. Tools that record
// their operations in an application's audit log when it has one, such as
// the phicrypt command, use it.
func OpenAuditLog(ctx context.Context, db *sql.DB, dialect Dialect, kek kms.KEK) (*AuditLog, error) {
	return openAuditLog(ctx, db, dialect, kek, false)
}

func openAuditLog(ctx context.Context, db *sql.DB, dialect Dialect, kek kms.KEK, create bool) (*AuditLog, error) {
	store, err := NewSQLStore(ctx, db, dialect)
	if err != nil {
		return nil, err
	}
	return auditLogIn(ctx, store, kek, create)
}

// auditLogIn returns the audit log of store's database, without DDL.
func auditLogIn(ctx context.Context, store *SQLStore, kek kms.KEK, create bool) (*AuditLog, error) {
	db, dialect := store.db, store.dialect
	raw, err := auditKey(ctx, store, kek, create)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	key, err := kdf.Key(raw, kdf.LabelAuditChain, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return &AuditLog{db: db, dialect: dialect, key: key}, nil
}

// auditKey returns the raw chain key, creating it if the store has none
// and create is set (ErrNoAuditLog otherwise). A chain key that is gone
// while the log holds events, or whose version was removed or destroyed
// (no Keyring method can), fails with ErrAuditTampered.
func auditKey(ctx context.Context, store *SQLStore, kek kms.KEK, create bool) ([]byte, error) {
	ks, err := store.Get(ctx, auditChainKey)
	if errors.Is(err, ErrKeyNotFound) {
		used, uerr := auditLogUsed(ctx, store)
		if uerr != nil {
			return nil, uerr
		}
		if used {
			// The key is committed before the first event: read it again,
			// in case another process created it since.
			ks, err = store.Get(ctx, auditChainKey)
			if errors.Is(err, ErrKeyNotFound) {
				return nil, fmt.Errorf("%w: the log holds events but its chain key is gone from the key store", ErrAuditTampered)
			}
		}
	}
	if errors.Is(err, ErrKeyNotFound) && !create {
		return nil, ErrNoAuditLog
	}
	if errors.Is(err, ErrKeyNotFound) {
		raw := make([]byte, 32)
		rand.Read(raw)
		wk, err := kek.Wrap(ctx, raw, wrapAAD(auditChainKey, 1, 0))
		if err != nil {
			return nil, fmt.Errorf("keys: wrap audit chain key: %w", err)
		}
		now := time.Now()
		ks, err = store.Update(ctx, auditChainKey, func(ks *KeySet) error {
			if len(ks.Versions) == 0 {
				ks.Versions = append(ks.Versions, Record{Version: 1, State: Active, Wrapped: wk, Created: now, Changed: now, WrappedAt: now})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	rec := ks.Version(1)
	if rec == nil || rec.State == Destroyed {
		return nil, fmt.Errorf("%w: the chain key's version is gone from the key store", ErrAuditTampered)
	}
	raw, err := kek.Unwrap(ctx, rec.Wrapped, wrapAAD(auditChainKey, 1, 0))
	if err != nil {
		return nil, fmt.Errorf("keys: unwrap audit chain key: %w", err)
	}
	return raw, nil
}

// auditLogUsed reports whether the audit log's tables hold an event or a
// head row, which only a holder of the chain key writes.
func auditLogUsed(ctx context.Context, store *SQLStore) (bool, error) {
	var used bool
	err := store.db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM phicrypt_audit) OR EXISTS (SELECT 1 FROM phicrypt_audit_head)").Scan(&used)
	if err != nil {
		return false, fmt.Errorf("keys: open audit log: %w", err)
	}
	return used, nil
}

// chainMAC is HMAC-SHA-256(key, prev || seq || event).
func (l *AuditLog) chainMAC(prev []byte, seq int64, event []byte) []byte {
	m := hmac.New(sha256.New, l.key)
	m.Write(prev)
	m.Write(binary.BigEndian.AppendUint64(nil, uint64(seq)))
	m.Write(event)
	return m.Sum(nil)
}

// genesis is the "previous MAC" of the first event.
var genesis = make([]byte, sha256.Size)

// maxAuditBatch bounds how many events one group commit appends.
const maxAuditBatch = 256

// auditCommitTimeout bounds a group commit, which runs on behalf of every
// caller in its batch and so ignores the cancellation of the one that
// happens to lead it.
const auditCommitTimeout = 30 * time.Second

// auditWaiter is a caller of Audit whose event is queued for a group
// commit. done receives the commit's outcome, or lead when the caller is
// to commit the queue itself.
type auditWaiter struct {
	event []byte
	done  chan auditResult
}

type auditResult struct {
	err  error
	lead bool
}

// Audit appends e to the log and returns once it is committed: durable in
// the database and chained after every earlier event. Concurrent calls
// share one transaction (a group commit): the first caller commits the
// events queued while the previous commit ran, up to maxAuditBatch, in
// one chain step, and hands the rest of the queue to the next caller. So
// the head row is locked once per batch instead of once per event, and a
// burst of events (a search that finds many patients, many requests at
// once) costs a few transactions. An error means the event may not be in
// the log; the caller fails closed.
func (l *AuditLog) Audit(ctx context.Context, e Event) error {
	event, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("keys: audit: %w", err)
	}
	w := &auditWaiter{event: event, done: make(chan auditResult, 1)}
	l.mu.Lock()
	l.queue = append(l.queue, w)
	lead := !l.committing
	l.committing = true
	l.mu.Unlock()
	if !lead {
		// Waiting is bounded by the leader's auditCommitTimeout; a caller
		// whose context ends stops waiting, and its event may still be
		// committed.
		select {
		case r := <-w.done:
			if !r.lead {
				return r.err
			}
		case <-ctx.Done():
			go l.follow(w)
			return fmt.Errorf("keys: audit: %w", ctx.Err())
		}
	}
	return l.lead(ctx, w)
}

// follow serves a waiter that stopped waiting: if leadership reaches it,
// it still commits, so the queue never stalls.
func (l *AuditLog) follow(w *auditWaiter) {
	if r := <-w.done; r.lead {
		l.lead(context.Background(), w)
	}
}

// lead commits the head of the queue, up to maxAuditBatch events, and
// returns the outcome of w's. The leader is always the first waiter in
// the queue: the first caller finds the queue empty, and each leader hands
// over to the waiter then first in the queue.
func (l *AuditLog) lead(ctx context.Context, w *auditWaiter) error {
	l.mu.Lock()
	n := min(len(l.queue), maxAuditBatch)
	batch := l.queue[:n:n]
	l.queue = l.queue[n:]
	l.mu.Unlock()

	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditCommitTimeout)
	err := l.appendBatch(cctx, batch)
	cancel()
	for _, b := range batch {
		if b != w {
			b.done <- auditResult{err: err}
		}
	}
	l.mu.Lock()
	if len(l.queue) == 0 {
		l.committing = false
	} else {
		l.queue[0].done <- auditResult{lead: true}
	}
	l.mu.Unlock()
	return err
}

// appendBatch appends the events of batch, in order, in one transaction.
func (l *AuditLog) appendBatch(ctx context.Context, batch []*auditWaiter) error {
	err := writeTx(ctx, l.db, l.dialect, func(q querier) error {
		head := "SELECT seq, mac FROM phicrypt_audit_head WHERE id = 1"
		if l.dialect == Postgres {
			// Serializes appends across processes: a second writer waits
			// here, then reads the head the first one wrote.
			if _, err := q.ExecContext(ctx, "INSERT INTO phicrypt_audit_head (id, seq, mac) VALUES (1, 0, $1) ON CONFLICT DO NOTHING", genesis); err != nil {
				return err
			}
			head += " FOR UPDATE"
		} else if _, err := q.ExecContext(ctx, "INSERT OR IGNORE INTO phicrypt_audit_head (id, seq, mac) VALUES (1, 0, ?)", genesis); err != nil {
			return err
		}
		var seq int64
		var mac []byte
		if err := q.QueryRowContext(ctx, head).Scan(&seq, &mac); err != nil {
			return err
		}
		args := make([]any, 0, 3*len(batch))
		for _, w := range batch {
			seq++
			mac = l.chainMAC(mac, seq, w.event)
			args = append(args, seq, string(w.event), mac)
		}
		insert := "INSERT INTO phicrypt_audit (seq, event, mac) VALUES " + valueRows(len(batch), 3)
		if _, err := q.ExecContext(ctx, l.dialect.Rebind(insert), args...); err != nil {
			return err
		}
		_, err := q.ExecContext(ctx, l.dialect.Rebind("UPDATE phicrypt_audit_head SET seq = ?, mac = ? WHERE id = 1"), seq, mac)
		return err
	})
	if err != nil {
		return fmt.Errorf("keys: audit: %w", err)
	}
	return nil
}

// Checkpoint is a position in the audit chain: a sequence number and the
// MAC of the event there.
type Checkpoint struct {
	Seq int64
	MAC []byte
}

// AuditProblem is one alteration Verify found.
type AuditProblem struct {
	// Seq is where: the sequence number of the altered or inserted row, or
	// the first missing one.
	Seq int64
	// Kind is "modified", "inserted", "deleted" or "anchor".
	Kind string
}

type auditRow struct {
	seq   int64
	event []byte
	mac   []byte
}

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Anchor, if set, is a Head recorded earlier outside the database:
	// the chain must still hold it.
	Anchor *Checkpoint
}

// VerifyReport is the result of Verify.
type VerifyReport struct {
	// Events is the number of rows read.
	Events int64
	// Head is the last event's checkpoint: keep it outside the database
	// and pass it as an Anchor next time.
	Head Checkpoint
	// Problems lists the alterations found, in chain order.
	Problems []AuditProblem
}

// Verify reads the whole log and checks its chain. It reports each
// alteration (an edited event, an inserted one, deleted ones, a head that
// does not match the last event, an anchor that is gone) and then fails
// with ErrAuditTampered; an intact log returns a nil error.
//
// The head and the events are read from one snapshot (a read-only
// REPEATABLE READ transaction on PostgreSQL, a read transaction on SQLite
// in WAL mode), so events appended while Verify runs are either all in
// what it reads or none of them: a live log is never reported altered.
func (l *AuditLog) Verify(ctx context.Context, opts VerifyOptions) (VerifyReport, error) {
	var r VerifyReport
	var txOpts *sql.TxOptions
	if l.dialect == Postgres {
		txOpts = &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	}
	tx, err := l.db.BeginTx(ctx, txOpts)
	if err != nil {
		return r, fmt.Errorf("keys: verify audit log: %w", err)
	}
	defer tx.Rollback()
	var headSeq int64
	var headMAC []byte
	err = tx.QueryRowContext(ctx, "SELECT seq, mac FROM phicrypt_audit_head WHERE id = 1").Scan(&headSeq, &headMAC)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		headSeq, headMAC = 0, genesis
	case err != nil:
		return r, fmt.Errorf("keys: verify audit log: %w", err)
	}
	rows, err := tx.QueryContext(ctx, "SELECT seq, event, mac FROM phicrypt_audit ORDER BY seq")
	if err != nil {
		return r, fmt.Errorf("keys: verify audit log: %w", err)
	}
	defer rows.Close()
	prev, want := genesis, int64(1)
	anchored := opts.Anchor == nil
	// check judges row x, given the row after it (nil at the end): the
	// log is streamed with one row of lookahead. A row belongs to the chain
	// if its MAC follows from the previous one, or if the next row's MAC
	// follows from it (then the row was edited, or rows before it were
	// deleted), or if it is the row the head names.
	check := func(x, next *auditRow) {
		r.Events++
		genuine := hmac.Equal(x.mac, l.chainMAC(prev, x.seq, x.event))
		if !genuine {
			chained := next != nil && hmac.Equal(next.mac, l.chainMAC(x.mac, next.seq, next.event))
			isHead := x.seq == headSeq && hmac.Equal(x.mac, headMAC)
			if !chained && !isHead {
				r.Problems = append(r.Problems, AuditProblem{Seq: x.seq, Kind: "inserted"})
				return
			}
			if x.seq > want {
				r.Problems = append(r.Problems, AuditProblem{Seq: want, Kind: "deleted"})
			} else {
				r.Problems = append(r.Problems, AuditProblem{Seq: x.seq, Kind: "modified"})
			}
		}
		prev, want = x.mac, x.seq+1
		r.Head = Checkpoint{Seq: x.seq, MAC: x.mac}
		if opts.Anchor != nil && x.seq == opts.Anchor.Seq && hmac.Equal(x.mac, opts.Anchor.MAC) {
			anchored = true
		}
	}
	var cur *auditRow
	for rows.Next() {
		x := &auditRow{}
		var event string
		if err := rows.Scan(&x.seq, &event, &x.mac); err != nil {
			return r, fmt.Errorf("keys: verify audit log: %w", err)
		}
		x.event = []byte(event)
		if cur != nil {
			check(cur, x)
		}
		cur = x
	}
	if err := rows.Err(); err != nil {
		return r, fmt.Errorf("keys: verify audit log: %w", err)
	}
	if cur != nil {
		check(cur, nil)
	}
	if headSeq != r.Head.Seq || (headSeq > 0 && !hmac.Equal(headMAC, r.Head.MAC)) {
		// The head names an event past the last one: the tail is gone.
		r.Problems = append(r.Problems, AuditProblem{Seq: r.Head.Seq + 1, Kind: "deleted"})
	}
	if !anchored {
		r.Problems = append(r.Problems, AuditProblem{Seq: opts.Anchor.Seq, Kind: "anchor"})
	}
	if len(r.Problems) > 0 {
		return r, fmt.Errorf("%w: %d problems, first at event %d (%s)", ErrAuditTampered, len(r.Problems), r.Problems[0].Seq, r.Problems[0].Kind)
	}
	return r, nil
}
