package keys

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/internal/sqltx"
	"github.com/phicrypt/phicrypt/kms"
)

// Dialect is the SQL dialect of a database.
type Dialect uint8

// Dialects.
const (
	// Postgres is PostgreSQL 12 or later, e.g. through pgx's stdlib driver
	// ("github.com/jackc/pgx/v5/stdlib", driver name "pgx").
	Postgres Dialect = iota + 1
	// SQLite is SQLite 3.35 or later, e.g. through modernc.org/sqlite
	// (pure Go, driver name "sqlite"), the embedded default.
	SQLite
)

// String returns "postgres" or "sqlite".
func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "postgres"
	case SQLite:
		return "sqlite"
	}
	return fmt.Sprintf("Dialect(%d)", uint8(d))
}

// SQLStore is a Store in a SQL database, shared by every process that opens
// it: replicas of a service share their keys through it. It stores only
// wrapped keys.
//
// Update runs in a transaction that locks the key set's row (SELECT … FOR
// UPDATE on PostgreSQL; BEGIN IMMEDIATE on SQLite, which locks the whole
// database for the short transaction), and a partial unique index allows
// one active version per key set whatever a writer does.
//
// For SQLite, open the database with a busy timeout and WAL journaling,
// e.g. "file:keys.db?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
// with modernc.org/sqlite; the store also sets the busy timeout on the
// connections it writes through.
type SQLStore struct {
	db      *sql.DB
	dialect Dialect
}

var _ Store = (*SQLStore)(nil)

// NewSQLStore returns a store in db, creating or upgrading its tables (see
// Migrate), which takes a role allowed to run DDL. OpenSQLStore only
// checks the schema version.
func NewSQLStore(ctx context.Context, db *sql.DB, dialect Dialect) (*SQLStore, error) {
	if db == nil {
		return nil, errors.New("keys: nil database")
	}
	if err := checkDialect(dialect); err != nil {
		return nil, err
	}
	s := &SQLStore{db: db, dialect: dialect}
	if err := Migrate(ctx, db, dialect); err != nil {
		return nil, err
	}
	return s, nil
}

// DB returns the store's database.
func (s *SQLStore) DB() *sql.DB { return s.db }

// Dialect returns the store's dialect.
func (s *SQLStore) Dialect() Dialect { return s.dialect }

// valueRows returns the VALUES list of a multi-row INSERT: rows tuples of
// cols placeholders each, "(?, ?), (?, ?)".
func valueRows(rows, cols int) string {
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(tuple+", ", rows), ", ")
}

// Rebind rewrites the ? placeholders of query for the dialect: $1, $2, … for
// PostgreSQL, unchanged for SQLite.
func (d Dialect) Rebind(query string) string {
	if d != Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// tx runs fn in a write transaction (see sqltx.Write). On SQLite the
// connection has secure_delete on, so that the old bytes of a rewritten or
// erased wrapped key are zeroed rather than left in the page's free space
// (see Purge).
func (s *SQLStore) tx(ctx context.Context, fn func(q querier) error) error {
	return writeTx(ctx, s.db, s.dialect, func(q querier) error {
		if err := sqltx.SecureDelete(ctx, q, s.dialect == Postgres); err != nil {
			return fmt.Errorf("keys: %w", err)
		}
		return fn(q)
	})
}

// querier is what a transaction offers.
type querier = sqltx.Querier

func writeTx(ctx context.Context, db *sql.DB, d Dialect, fn func(q querier) error) error {
	return sqltx.Write(ctx, db, d == Postgres, "keys", fn)
}

const keyColumns = "version, state, suite, kek_id, wrapped, created_at, changed_at, wrapped_at, reserved"

// Get implements Store. It reads the key set's row and its versions'
// rows in one statement, a left join, so from one snapshot and in one
// round trip: a concurrent writer must not make them disagree, since the
// metadata MAC covers both.
func (s *SQLStore) Get(ctx context.Context, id ID) (*KeySet, error) {
	rows, err := s.db.QueryContext(ctx, s.dialect.Rebind("SELECT s.min_decrypt_version, s.meta_counter, s.meta_mac, "+
		joinedKeyColumns+" FROM phicrypt_key_sets s LEFT JOIN phicrypt_keys k ON k.scope = s.scope AND k.name = s.name"+
		" WHERE s.scope = ? AND s.name = ? ORDER BY k.version"), id.Scope, id.Name)
	if err != nil {
		return nil, fmt.Errorf("keys: load %s: %w", id.kind(), err)
	}
	defer rows.Close()
	var ks *KeySet
	for rows.Next() {
		var (
			minVersion, metaCounter int64
			mac                     []byte
		)
		r, ok, err := scanRecord(rows, &minVersion, &metaCounter, &mac)
		if err != nil {
			return nil, fmt.Errorf("keys: load %s: %w", id.kind(), err)
		}
		if ks == nil {
			ks = &KeySet{ID: id}
			if err := setMeta(ks, minVersion, metaCounter); err != nil {
				return nil, err
			}
			if len(mac) > 0 {
				ks.MetaMAC = mac
			}
		}
		if ok { // a set without versions is one row of NULL key columns
			ks.Versions = append(ks.Versions, r)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keys: load %s: %w", id.kind(), err)
	}
	if ks == nil {
		return nil, fmt.Errorf("%w: %s", ErrKeyNotFound, id.kind())
	}
	return ks, nil
}

// joinedKeyColumns are keyColumns of the phicrypt_keys table aliased k.
const joinedKeyColumns = "k.version, k.state, k.suite, k.kek_id, k.wrapped, k.created_at, k.changed_at, k.wrapped_at, k.reserved"

// load reads key set id; lock takes its row lock on PostgreSQL. Unlike
// Get it takes two statements, and must: under READ COMMITTED, a join
// with FOR UPDATE OF the set re-reads a concurrently updated set row but
// keeps the statement's older snapshot of the versions, a torn read that
// loses updates (TestStoreUpdatesAreAtomic and
// TestMetadataHeadUnderConcurrentReplicas fail). The versions are read
// after the lock is held, in a statement of their own.
func (s *SQLStore) load(ctx context.Context, q querier, id ID, lock bool) (*KeySet, error) {
	query := "SELECT min_decrypt_version, meta_counter, meta_mac FROM phicrypt_key_sets WHERE scope = ? AND name = ?"
	if lock && s.dialect == Postgres {
		query += " FOR UPDATE"
	}
	ks := &KeySet{ID: id}
	var minVersion, metaCounter int64
	// Query, not QueryRow: a value that does not scan (text in a number
	// column) is corrupt metadata, unlike a failure of the query.
	rows, err := q.QueryContext(ctx, s.dialect.Rebind(query), id.Scope, id.Name)
	if err != nil {
		return nil, fmt.Errorf("keys: load %s: %w", id.kind(), err)
	}
	found := rows.Next()
	if found {
		if err := rows.Scan(&minVersion, &metaCounter, &ks.MetaMAC); err != nil {
			rows.Close()
			return nil, fmt.Errorf("keys: load %s: %w", id.kind(), corrupt(err))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keys: load %s: %w", id.kind(), err)
	}
	if !found {
		return nil, fmt.Errorf("%w: %s", ErrKeyNotFound, id.kind())
	}
	if err := setMeta(ks, minVersion, metaCounter); err != nil {
		return nil, err
	}
	if len(ks.MetaMAC) == 0 {
		ks.MetaMAC = nil
	}
	rows, err = q.QueryContext(ctx, s.dialect.Rebind("SELECT "+keyColumns+" FROM phicrypt_keys WHERE scope = ? AND name = ? ORDER BY version"), id.Scope, id.Name)
	if err != nil {
		return nil, fmt.Errorf("keys: load %s: %w", id.kind(), err)
	}
	defer rows.Close()
	for rows.Next() {
		r, _, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("keys: load %s: %w", id.kind(), err)
		}
		ks.Versions = append(ks.Versions, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keys: load %s: %w", id.kind(), err)
	}
	return ks, nil
}

// scanRecord scans the columns first, then keyColumns into a Record. It
// reports false, with no error, when the key columns are NULL: the row of
// a left join that found no version. A value that does not scan (text in
// a number column) or is out of range fails with ErrMetadataTampered: no
// Store wrote it.
func scanRecord(rows *sql.Rows, first ...any) (Record, bool, error) {
	var (
		r                               Record
		version, state, suite, reserved sql.NullInt64
		created, changed, wrappedAt     sql.NullInt64
		kekID                           sql.NullString
		wrapped                         []byte
	)
	if err := rows.Scan(append(first, &version, &state, &suite, &kekID, &wrapped, &created, &changed, &wrappedAt, &reserved)...); err != nil {
		return r, false, corrupt(err)
	}
	if !version.Valid {
		return r, false, nil
	}
	if version.Int64 < 1 || version.Int64 > math.MaxUint32 || state.Int64 < 0 || state.Int64 > math.MaxUint8 ||
		suite.Int64 < 0 || suite.Int64 > math.MaxUint8 || reserved.Int64 < 0 {
		return r, false, fmt.Errorf("%w: a key version's number, state, suite or budget is out of range", ErrMetadataTampered)
	}
	r.Version, r.State, r.Suite, r.Reserved = uint32(version.Int64), State(state.Int64), envelope.Suite(suite.Int64), uint64(reserved.Int64)
	r.Created, r.Changed, r.WrappedAt = time.Unix(0, created.Int64).UTC(), time.Unix(0, changed.Int64).UTC(), time.Unix(0, wrappedAt.Int64).UTC()
	if len(wrapped) > 0 {
		r.Wrapped = kms.WrappedKey{KeyID: kekID.String, Ciphertext: wrapped}
	}
	return r, true, nil
}

// Update implements Store.
func (s *SQLStore) Update(ctx context.Context, id ID, fn func(ks *KeySet) error) (*KeySet, error) {
	var out *KeySet
	err := s.tx(ctx, func(q querier) error {
		var insert string
		switch s.dialect {
		case Postgres:
			insert = "INSERT INTO phicrypt_key_sets (scope, name) VALUES (?, ?) ON CONFLICT DO NOTHING"
		default:
			insert = "INSERT OR IGNORE INTO phicrypt_key_sets (scope, name) VALUES (?, ?)"
		}
		if _, err := q.ExecContext(ctx, s.dialect.Rebind(insert), id.Scope, id.Name); err != nil {
			return fmt.Errorf("keys: update %s: %w", id.kind(), err)
		}
		old, err := s.load(ctx, q, id, true)
		if err != nil {
			return err
		}
		ks := old.clone()
		if err := fn(ks); err != nil {
			return err
		}
		if err := checkUpdate(old, ks); err != nil {
			return err
		}
		if err := s.write(ctx, q, old, ks); err != nil {
			return err
		}
		out = ks
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// write stores the differences between old and ks. Versions whose state
// leaves Active are written before any that becomes Active, so the unique
// index on the active version holds at every statement.
func (s *SQLStore) write(ctx context.Context, q querier, old, ks *KeySet) error {
	if ks.MinDecryptVersion != old.MinDecryptVersion || ks.MetaCounter != old.MetaCounter || string(ks.MetaMAC) != string(old.MetaMAC) {
		if _, err := q.ExecContext(ctx, s.dialect.Rebind("UPDATE phicrypt_key_sets SET min_decrypt_version = ?, meta_counter = ?, meta_mac = ? WHERE scope = ? AND name = ?"),
			int64(ks.MinDecryptVersion), int64(ks.MetaCounter), nullBytes(ks.MetaMAC), ks.ID.Scope, ks.ID.Name); err != nil {
			return fmt.Errorf("keys: update %s: %w", ks.ID.kind(), err)
		}
	}
	for pass := 0; pass < 2; pass++ {
		for i, r := range ks.Versions {
			becomesActive := r.State == Active && (i >= len(old.Versions) || old.Versions[i].State != Active)
			if becomesActive != (pass == 1) {
				continue
			}
			var err error
			switch {
			case i >= len(old.Versions):
				_, err = q.ExecContext(ctx, s.dialect.Rebind("INSERT INTO phicrypt_keys (scope, name, "+keyColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
					ks.ID.Scope, ks.ID.Name, int64(r.Version), int64(r.State), int64(r.Suite), r.Wrapped.KeyID, nullBytes(r.Wrapped.Ciphertext),
					r.Created.UnixNano(), r.Changed.UnixNano(), r.WrappedAt.UnixNano(), int64(r.Reserved))
			case !recordEqual(old.Versions[i], r):
				_, err = q.ExecContext(ctx, s.dialect.Rebind("UPDATE phicrypt_keys SET state = ?, suite = ?, kek_id = ?, wrapped = ?, created_at = ?, changed_at = ?, wrapped_at = ?, reserved = ? WHERE scope = ? AND name = ? AND version = ?"),
					int64(r.State), int64(r.Suite), r.Wrapped.KeyID, nullBytes(r.Wrapped.Ciphertext),
					r.Created.UnixNano(), r.Changed.UnixNano(), r.WrappedAt.UnixNano(), int64(r.Reserved),
					ks.ID.Scope, ks.ID.Name, int64(r.Version))
			}
			if err != nil {
				return fmt.Errorf("keys: write %s version %d: %w", ks.ID.kind(), r.Version, err)
			}
		}
	}
	return nil
}

// corrupt is the failure to scan a stored value (text in a number column,
// say): the row was not written by a Store, so the metadata is refused as
// tampered with.
func corrupt(err error) error {
	return fmt.Errorf("%w: unreadable column: %w", ErrMetadataTampered, err)
}

// setMeta sets ks's minimum decryption version and metadata counter, as
// stored, if they are in range.
func setMeta(ks *KeySet, minVersion, metaCounter int64) error {
	if minVersion < 0 || minVersion > math.MaxUint32 || metaCounter < 0 {
		return fmt.Errorf("%w: %s: minimum decryption version or counter out of range", ErrMetadataTampered, ks.ID.kind())
	}
	ks.MinDecryptVersion, ks.MetaCounter = uint32(minVersion), uint64(metaCounter)
	return nil
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

func recordEqual(a, b Record) bool {
	return a.Version == b.Version && a.State == b.State && a.Suite == b.Suite &&
		a.Wrapped.KeyID == b.Wrapped.KeyID && string(a.Wrapped.Ciphertext) == string(b.Wrapped.Ciphertext) &&
		a.Created.Equal(b.Created) && a.Changed.Equal(b.Changed) && a.WrappedAt.Equal(b.WrappedAt) && a.Reserved == b.Reserved
}

// List implements Store. It reads the page from one snapshot, in two
// queries: the key sets, then their versions.
//
// Pages are in byte order of (scope, name), through a row-value
// comparison that an index serves: phicrypt_key_sets_bytes on PostgreSQL
// (whose primary key follows the database's collation), the primary key
// on SQLite. Each page costs its own rows, not a scan of the table.
func (s *SQLStore) List(ctx context.Context, scope string, after ID, limit int) ([]*KeySet, error) {
	collate := ""
	if s.dialect == Postgres {
		collate = ` COLLATE "C"`
	}
	where := "(scope" + collate + ", name" + collate + ") > (?, ?)"
	args := []any{after.Scope, after.Name}
	if scope != "" {
		where += " AND scope = ?"
		args = append(args, scope)
	}
	args = append(args, limit)
	order := " ORDER BY scope" + collate + ", name" + collate
	page := "FROM phicrypt_key_sets WHERE " + where + order + " LIMIT ?"
	tx, err := s.readTx(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, s.dialect.Rebind("SELECT scope, name, min_decrypt_version, meta_counter, meta_mac "+page), args...)
	if err != nil {
		return nil, fmt.Errorf("keys: list: %w", err)
	}
	var out []*KeySet
	byID := map[ID]*KeySet{}
	for rows.Next() {
		ks := &KeySet{}
		var minVersion, metaCounter int64
		if err := rows.Scan(&ks.ID.Scope, &ks.ID.Name, &minVersion, &metaCounter, &ks.MetaMAC); err != nil {
			rows.Close()
			return nil, fmt.Errorf("keys: list: %w", corrupt(err))
		}
		if err := setMeta(ks, minVersion, metaCounter); err != nil {
			rows.Close()
			return nil, err
		}
		if len(ks.MetaMAC) == 0 {
			ks.MetaMAC = nil
		}
		out = append(out, ks)
		byID[ks.ID] = ks
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keys: list: %w", err)
	}
	if len(out) == 0 {
		return out, nil
	}
	// The same page again, joined to its versions by primary key.
	rows, err = tx.QueryContext(ctx, s.dialect.Rebind("SELECT k.scope, k.name, "+keyColumns+" FROM phicrypt_keys k JOIN (SELECT scope, name "+page+
		") p ON k.scope = p.scope AND k.name = p.name ORDER BY k.scope"+collate+", k.name"+collate+", k.version"), args...)
	if err != nil {
		return nil, fmt.Errorf("keys: list: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id ID
		r, _, err := scanRecord(rows, &id.Scope, &id.Name)
		if err != nil {
			return nil, fmt.Errorf("keys: list: %w", err)
		}
		if ks := byID[id]; ks != nil {
			ks.Versions = append(ks.Versions, r)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keys: list: %w", err)
	}
	return out, nil
}
