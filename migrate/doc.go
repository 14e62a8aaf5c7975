// Package migrate encrypts existing tables and keeps them current: it
// encrypts legacy plaintext columns, re-encrypts values after a data key
// rotation, and recomputes blind indexes after an index key rotation,
// online, while the application keeps running, crash-safe, resumable and
// shared by any number of workers on any number of machines. (Rewrapping
// data keys after a KEK rotation touches no table: see keys.Rewrap.)
//
// # Adopting encryption on a live table
//
//  1. Deploy the application with its PHI fields as fields.Encrypted and
//     tagged migrate, so it reads both legacy plaintext and ciphertext and
//     writes ciphertext only (the dual-read window).
//  2. Run an Encrypt job over the table, with the Spec of the
//     application's type: SpecFor(&Patient{}) reads it from the struct
//     tags (the columns, their Go types, the blind indexes), so it cannot
//     drift from what the application reads.
//  3. Verify: when the report is Complete, remove the migrate option: the
//     application is in strict mode, and a plaintext value is an error.
//
// Columns whose SQL type cannot hold a ciphertext (an INTEGER, a DATE) are
// encrypted into a Target column instead; the application reads the target
// column, and the source column is dropped after the switch.
//
// # Specs
//
// A Spec names the table, its id and scope columns, the encrypted columns
// with their plaintext types, and the blind indexes. SpecFor builds it
// from a tagged type (fields.Describe); options give what tags do not
// say (WithIDColumn, WithScopeColumn, WithScope, WithTable,
// WithLegacyColumn). Saved with json.Marshal, it is the file that the
// command line tool reads (phicrypt migrate reencrypt --spec
// patients.json); ReadSpec reads it back as strictly as Validate checks
// it. CheckTable compares a spec with its table (missing columns, a
// column type that cannot hold a ciphertext) and returns a *TableError,
// which the command line tool does before every job.
//
// # How a job runs
//
// A job is split, when it is created, into partitions of PartitionRows
// rows by primary key; the jobs and partitions live in two tables of the
// same database (phicrypt_migration_jobs, phicrypt_migration_parts,
// versioned in phicrypt_migration_schema), the job's checkpoints. Run
// creates them (Migrate), which takes a role allowed to run DDL; for a
// role that may only read and write rows, install them from
// SchemaMigrations with your schema tool and set Config.CheckSchemaOnly.
// A worker claims a partition (SELECT … FOR UPDATE SKIP
// LOCKED on PostgreSQL), reads its rows in batches, seals and opens them
// through the fields package with a record type built from the Spec — so
// the engine writes exactly what the application reads — and writes each
// batch with compare-and-swap updates: on PostgreSQL conditioned on the
// row version read (xmin), on SQLite on the values read. The partition
// is marked done in the same transaction. A Reencrypt job skips the typed
// record: it opens each value older than its scope's active key with the
// old key and seals it with the active one, under the same binding the
// application uses, and leaves blind indexes alone unless their key
// changed too. Hence:
//
//   - Killed at any point, a worker loses only its uncommitted partition;
//     the row locks and the claim die with its connection, and the next
//     worker redoes the partition. Nothing is lost and nothing is encrypted
//     twice: values already migrated are recognised and skipped.
//   - An application write between a read and the write is never
//     overwritten: the update's condition fails and the row keeps the
//     application's (encrypted) value; the row is read again and its
//     other values are still migrated.
//   - A value moved to another row, column, table or scope fails to open
//     under the binding of the place it is found: the job stops with an
//     error matching envelope.ErrDecrypt and leaves it as it is.
//   - Running a job again, or a new job over a done table, writes nothing.
//   - Workers need no coordinator: the database is the queue.
//
// A partition's transaction holds row locks while it runs: size partitions
// so a transaction lasts a second or two, and use RateLimit to leave the
// database room for the application.
//
// Rows inserted after a job is created are covered at the table's ends;
// rows that legacy code keeps writing as plaintext in the middle of the
// key space after their partition ran show up in Verify: run a new job.
//
// # What the old rows leave behind
//
// A job replaces values (legacy plaintext, for an Encrypt job) in place,
// and the database keeps older versions of the rows for a while. On
// SQLite the engine writes with secure_delete on, which zeroes the old
// bytes in a page when the page is rewritten, and a job that finishes ends
// with a TRUNCATE checkpoint, so that the write-ahead log no longer holds
// the pages from before: when Run returns nil, no file of the database
// holds a replaced value. A connection that keeps a read transaction open
// past that checkpoint stops it: Run then fails with
// ErrCheckpointIncomplete, and running the job again after that reader
// is done completes it. Free space that held plaintext before the job
// (rows the application deleted or rewrote earlier without secure_delete)
// is not touched: run VACUUM once. On PostgreSQL the old row versions
// remain as dead tuples until VACUUM, and in WAL segments, archives and
// backups; see docs/SHREDDING.md for what to do about each.
//
// # Retiring old keys
//
// Verify counts, per column, the values per data key version and the
// plaintext left, and per blind index the values per index key version.
// A key version that no table references any more may be retired:
// Usage proves it for keys.Keyring.Retire and DestroyVersion, which
// refuse (keys.ErrStillInUse) while a row of the scope still uses it.
//
// # Shredding
//
// Eraser sets a shredded scope's blind index values to NULL in a Spec's
// table, for keys.Keyring.Shred: with a tenant-wide index key they would
// otherwise still match a guessed value. On SQLite the engine and the
// Eraser write with secure_delete on, so replaced plaintext, ciphertexts
// and index values are zeroed rather than left in free space.
package migrate
