package gormphi

import "net/url"

// SQLiteDSN returns the data source name of the SQLite database file at
// path, for the pure-Go driver modernc.org/sqlite (and mattn/go-sqlite3,
// which reads the same settings), set up for a service that reads and
// writes from many goroutines:
//
//   - _txlock=immediate: every transaction that is not read-only begins
//     with BEGIN IMMEDIATE, taking the database's one write lock up front.
//     A transaction that reads before it writes (a create that first
//     searches for a duplicate MRN, an update that loads the record) would
//     otherwise start as a reader and fail to upgrade when another
//     connection wrote meanwhile: SQLITE_BUSY_SNAPSHOT (517), which no
//     busy timeout can wait out. GORM runs Create, Save, Update and Delete
//     in such transactions.
//   - busy_timeout(10000): a writer waits up to 10 s for the lock instead
//     of failing at once with SQLITE_BUSY (5).
//   - journal_mode(WAL): readers do not block the writer, nor the writer
//     readers.
//   - foreign_keys(1).
//
// Open the database with it through gorm.io/driver/sqlite:
//
//	sqlite.Dialector{DriverName: "sqlite", DSN: gormphi.SQLiteDSN("ehr.db")}
func SQLiteDSN(path string) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() +
		"?_txlock=immediate&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)"
}
