// Package gormphi makes GORM seal records before writing them and open
// them after reading them, with a fields.Codec. Register the plugin once
// per *gorm.DB; records then read and write as usual:
//
//	type Patient struct {
//		ID        string                      `gorm:"primaryKey" phi:"id"` // table: GORM's, "patients"
//		TenantID  string                      `gorm:"index:idx_ssn,priority:1" phi:"scope"`
//		SSN       fields.String               `phi:"encrypt"`              // a text column
//		Last      fields.String               `phi:"encrypt"`
//		BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`              // text too: it holds a ciphertext
//		SSNIndex  fields.BlindIndex           `gorm:"index:idx_ssn,priority:2" phi:"index,of=SSN,normalize=digits,bits=16"` // bytea, BLOB
//	}
//
//	plugin, _ := gormphi.New(gormphi.Config{Codec: codec, Models: []any{&Patient{}}})
//	db.Use(plugin)
//	db.Create(&Patient{ID: uuid, TenantID: tenant, SSN: fields.New("999-12-3456"), ...})
//	db.First(&p, "id = ?", uuid)               // p.SSN.Get() == "999-12-3456"
//	found, _ := gormphi.Find(db, &Patient{TenantID: tenant, SSN: fields.New("999123456")})
//
// Find searches by example through the blind indexes whose sources the
// template sets; Query runs a fields.Query (prefixes, sounds-like names,
// date ranges, equality), and both post-filter the opened rows. Searches
// return only rows of the template's scope; when a PHIScope method gives
// the scope, no column holds it, so the query reads candidates of other
// scopes too, and the plugin leaves those sealed.
//
// # Callbacks, not serializers
//
// GORM offers two extension points for this: a field serializer and a
// plugin registering callbacks. A serializer sees one field at a time, in
// no guaranteed order relative to the record's id and scope, and cannot
// compute a blind index over two fields (last name and birth date) or
// seal a batch with one key lookup per scope. Sealing needs the whole
// record, so this package is a plugin (GORM's "Write Plugins" pattern):
//
//   - Create (Create, CreateInBatches, Save of a new record): the records
//     are sealed after the BeforeSave and BeforeCreate hooks (which may set
//     the id) and before any association or INSERT.
//   - Update (Save, Updates, Update, UpdateColumn, UpdateColumns): the
//     plugin computes the assignments as GORM's update callback would
//     (honouring Select, Omit and the skipping of zero fields), checks
//     those to encrypted and blind index columns, seals the encrypted ones
//     against the record's id and scope, adds the blind indexes they
//     change, and hands GORM the finished SET clause.
//   - Query (Find, First, Take, Last, Raw(...).Find, preloads): the records
//     read are opened before the AfterFind hooks. A failure (a ciphertext
//     moved to another row fails with envelope.ErrDecrypt) fails the query.
//
// Encrypted values and blind indexes are already driver.Valuer and
// sql.Scanner, so GORM stores and scans them without a serializer.
//
// # Updates with maps and structs
//
// Updates(map[string]any{...}) and Update(column, value) take, for an
// encrypted column, a fields.Encrypted of the field's exact type (or a
// pointer to one), or nil for NULL; for a blind index column, a
// fields.BlindIndex. Anything else (a string, a number, gorm.Expr) could
// be plaintext and is refused with ErrPlaintext, whatever the session. The
// plugin seals the values against the record given to Model, which must
// be one record with its id and scope set (fields.ErrMissingRecordID
// otherwise): an update of an encrypted column over many rows at once
// (db.Model(&Patient{}).Where(...)) cannot bind one ciphertext to each of
// them. A struct given to Updates is treated the same way, field by field.
//
// When an update changes a source of a blind index, the index is
// recomputed and written, whatever Select and Omit say. A compound index
// (last name + birth date) needs every source: each must be in the update
// or opened in the record given to Model (read with First, say);
// otherwise the update fails with ErrIndexSources rather than leave a
// stale index. The opened sources are those of the record as it was
// read: read it in the update's transaction with a row lock
// (tx.Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate}),
// which the SQLite dialect leaves out since its write transactions run
// one at a time), or a concurrent update of another source, committed in
// between, leaves an index of a value the row no longer holds. After the
// update, the record given to Model holds the sealed values and the new
// indexes.
//
// Create from a map (db.Model(&Patient{}).Create(map[string]any{...}))
// is checked but not sealed: give it sealed values, or use a struct.
//
// # Paths that skip the plugin
//
// Session(&gorm.Session{SkipHooks: true}), UpdateColumn and UpdateColumns
// skip sealing and opening, as they skip GORM's hooks: values are written
// as they are and read as ciphertexts (for migrations and copies). The
// checks still run: an unsealed value is refused with fields.ErrNotSealed
// and a plain string with ErrPlaintext. Exec and raw SQL bypass GORM's
// callbacks entirely; there, an unsealed fields.Encrypted still refuses to
// become a driver value (fields.ErrNotSealed), but a plain Go string is
// written as given: never pass PHI to raw SQL as a string. Statements
// without a model (db.Table("patients")), or with a model without phi
// tags, are checked by table name for the tables of types the plugin has
// seen (see Config.Models). Table and column names are compared as the
// database resolves them: without letter case, quotes, a schema or table
// prefix, or an alias, so "PATIENTS", "main.patients" and "sSn" are
// checked as patients and ssn are.
//
// Scan, Row, Rows, ScanRows and Pluck run no query callbacks after the
// row is read: their values stay sealed (Opened is false, Get returns the
// zero value) until opened with Open; Scan in this package does both.
//
// # Columns
//
// Every ciphertext is bound to its table and column names (see package
// fields), so the names GORM uses and the names the values are bound to
// must agree; then database/sql code, migrations and the phicrypt command
// line tool, which work by column name, read what GORM wrote. The
// plugin's defaults agree: the phi column of a field is the snake_case of
// its Go name, as is GORM's default naming strategy. A custom column
// needs both tags, with one name:
//
//	SSN fields.String `gorm:"column:social" phi:"encrypt,column=social"`
//
// The table is GORM's (its naming strategy, or a TableName method) when
// the phi id tag names none: the plugin binds the type to it on the
// plugin's codec (fields.Codec.BindTable) when it first sees the type,
// so list the types in Config.Models to bind them at startup. A type used
// by two *gorm.DB that name its table differently, with one codec, is
// refused (fields.ErrTableBinding): its values are bound to one table.
// Code that reads the same rows without GORM (database/sql, the phicrypt
// command line tool, migrate.SpecFor) needs the table too: give it there
// (migrate.WithTable), or name it in the tag (table=NAME), which the
// plugin then checks against GORM's.
//
// The plugin checks each record type against GORM's schema when it is
// registered (Config.Models) or first used, and refuses it with a
// *LayoutError (ErrLayout) when: a column differs, the phi table is not
// GORM's table, an encrypted field or index is not a GORM column (a field
// of a named, non-embedded struct, or tagged gorm:"-"), a phi-tagged
// field is a GORM column that package fields does not see (reached
// through an embedded *struct, or in an embedded struct tagged phi:"-"),
// or a gorm type tag gives a column a type that cannot hold what it
// stores. Tag
// association fields (has many, belongs to) phi:"-": they are records of
// their own, sealed by their own callbacks.
//
// Column types need no gorm tag: fields.Encrypted and fields.BlindIndex
// tell GORM their data types (GormDataType), whatever the plaintext type.
// Encrypted values are text armor (the default) in text columns (text on
// PostgreSQL and SQLite, varchar or longtext on MySQL); with
// fields.Config{Binary: true}, tag them gorm:"type:bytes" for bytea
// (PostgreSQL) or BLOB (SQLite, MySQL) columns, about a third smaller.
// Blind indexes are bytes (bytea, BLOB), or base64url text with the index
// tag's text option, tagged gorm:"type:text"; index them together with
// the tenant column, as in the example above.
//
// # Large reads
//
// GORM scans every row of a Find before the plugin's hook opens them
// (spread over GOMAXPROCS goroutines from 512 records on). A record with many
// encrypted fields is large, and growing a slice of such values costs
// more than scanning them: Find into a []*Model, or a slice made with the
// capacity the read needs, and prefer binary values, which are smaller
// and need no decoding. On PostgreSQL, 10,000 patients of six encrypted
// fields and three indexes read at about 75k rows/s into []Patient with
// text armor and 130k rows/s into []*Patient with binary values
// (fields/gormphi's BenchmarkPostgres).
//
// # Shredding
//
// Eraser(db, models...) is a keys.IndexEraser for keys.Keyring.Shred: it
// sets the blind index columns of a shredded scope's rows to NULL in the
// models' tables. With a per-patient scope field and a tenant-wide index
// (scope=TenantID on the index tag) this is what keeps a shredded
// patient's index values from still confirming a guessed SSN; the
// ciphertexts stay, unreadable once the patient's keys are destroyed.
//
// # Transactions and errors
//
// A failure to seal (the KMS is down and the data key is not cached, say:
// kms.ErrUnavailable) aborts the write before any SQL is sent, and rolls
// back the transaction GORM opened for it, or the caller's
// (db.Transaction). Keep GORM's default transaction on
// (SkipDefaultTransaction false) so that associations saved before the
// UPDATE roll back too. The statement's context (db.WithContext) reaches
// the keyring and the KMS, with its deadline and its audit principal
// (keys.WithPrincipal). Errors wrap those of packages fields, envelope,
// keys and kms; test them with errors.Is. GORM joins a statement's errors
// and keeps only the last one in the chain: a seal error followed by a
// failed rollback (on a cancelled context) matches only the latter.
//
// On SQLite, keep the key store (keys.SQLStore) and the audit log in a
// database file of their own: SQLite has one writer at a time, and a
// data key created (or a message budget reserved) while a GORM
// transaction holds a read snapshot of the same file makes that
// transaction fail with SQLITE_BUSY_SNAPSHOT. PostgreSQL has no such
// limit.
package gormphi
