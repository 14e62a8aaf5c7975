// Package keys manages the lifecycle of data keys and blind index keys:
// scoped and versioned, wrapped by a KEK, shared by every replica of a
// service through a Store, cached unwrapped so that a steady-state
// encryption or decryption makes no store or KMS call, rotated, rewrapped
// after a KEK rotation, destroyed to crypto-shred a patient or a tenant,
// and audited.
//
// Most applications create one Keyring and hand it to the fields package
// (or to envelope.NewCompact, which it implements envelope.Keyring for):
//
//	store, _ := keys.NewSQLStore(ctx, db, keys.Postgres)
//	kr, _ := keys.New(keys.Config{KEK: kek, Store: store})
//	c, _ := envelope.NewCompact(envelope.CompactConfig{Keyring: kr})
//
// # Key sets, scopes and versions
//
// A key set (ID) is the versions of one key: the data key of a scope
// (DataKey) or the key of one blind index of a table column in a scope
// (IndexKeyID). A scope names who shares a key: a tenant, a patient, a
// table; the caller picks it per record. Versions count up from 1; at most
// one is Active and encrypts, older ones decrypt what they encrypted.
// The first use of a scope creates its first version; when two replicas
// do so at the same moment, the store serializes them and both use the one
// version that wins (a unique index on the active version backs this up).
//
// Every key belongs to a non-empty scope, so that destroying the scope
// shreds it: every method that chooses a key (EncryptionKey,
// DecryptionKey, Deterministic, IndexKey, IndexKeys, Rotate, SetState,
// SetMinDecryptVersion, Destroy, ActiveVersion) refuses the empty scope
// with ErrInvalidID, and lifecycle methods refuse key set names the
// keyring does not give out. Scopes beginning with ReservedScopePrefix
// ("phicrypt:") belong to phicrypt itself, such as the audit log's chain
// key in "phicrypt:audit": the same methods refuse them with
// ErrReservedScope (which matches ErrInvalidID), and a refused lifecycle
// operation is audited, so nobody shreds, rotates or retires the audit
// log's key through a Keyring or the phicrypt command. Status lists those
// key sets and Rewrap rewraps them with the others after a KEK rotation.
//
// Every key is 256 random bits, stored only wrapped by the KEK (or under
// its scope's parent key: see "Key hierarchy") with an AAD that binds it
// to its scope, name, version and suite, so a wrapped key copied to
// another row of the store fails to unwrap.
//
// # Caching and KMS calls
//
// Unwrapped keys are cached for CacheMaxAge (5 minutes by default), at
// most CacheMaxEntries of them. Concurrent misses on one key make exactly
// one KMS call. The cache holds derived cipher state, never raw key bytes:
// raw bytes are cleared right after the AEAD or HMAC key is derived from
// them (best effort: Go's runtime may have copied them, and the expanded
// AES key schedule inside crypto/cipher cannot be cleared; it is released
// to the garbage collector with the last reference).
//
// The versions of a blind index key that a search tries (IndexKeys) are
// cached with the active index key, under the same CacheMaxAge, and
// forgotten at once when this keyring rotates, retires or destroys them: a
// warm search makes no store or KMS call. Other replicas' changes are seen
// within CacheMaxAge.
//
// A blind index key version created by this release on is stored with
// Suite IndexParamsBound: IndexKey.For derives from it one key per index
// definition (the caller's description of its normalizers and bits), so
// that a definition changed without a new version stops matching rather
// than mixing values. Versions stored by earlier releases (Suite 0) compute
// every definition with their one key, as they always did.
//
// While the KMS is down, cached keys keep working until CacheMaxAge;
// uncached ones fail within the caller's deadline with an error matching
// kms.ErrUnavailable.
//
// # Key hierarchy
//
// With per-patient scopes, KMS calls grow with patients: each new key is
// a KMS Wrap, each cold read an Unwrap, each KEK rotation rewraps them
// all. Config.Parent gives scopes a parent scope instead, by a rule the
// caller chooses; TenantParent, the documented rule, makes "tenant:X" the
// parent of "tenant:X/patient/Y". It is opt-in (nil keeps every key
// wrapped by the KEK), because it changes who can unwrap a patient's key,
// as said below.
//
// A parent scope has a parent key (key set ParentKeyName), wrapped by the
// KEK. Every key of a child scope (data, deterministic and index keys) is
// wrapped under the parent key's active version, locally, with
// AES-256-GCM and an AAD that binds the child's scope, name, version and
// suite and the parent's scope and version; ParentWrapPrefix describes
// the stored format. Each stored key says which way it is wrapped, so
// readers never guess and need no Config.Parent: keys wrapped by the KEK
// before the hierarchy was turned on stay readable as they are, and
// Rewrap with RewrapOptions.ToParents moves them under their parents
// (one KMS Unwrap per key, once; a stopped run resumes when run again).
//
// KMS calls then grow with parents: one Wrap when a parent key is created,
// one Unwrap per parent key version per keyring per CacheMaxAge, however
// many children are created or read; a child costs a store read and a
// local AES-GCM open. Unwrapped parent keys are cached apart from the
// children's keys (at most ParentCacheMaxEntries, 1,000 by default, each
// for CacheMaxAge), so no number of children evicts them. CreateKeys
// creates the first data keys of many new children in one store
// transaction, for bulk imports.
//
// The trade-off: whoever holds a tenant's unwrapped parent key can unwrap
// every one of its patients' keys without asking the KMS, and the KMS's
// own log (CloudTrail, Vault's audit device) shows one unwrap per tenant,
// no longer one per patient; the keyring's Auditor still records each
// child key unwrapped (OpUnwrap). A parent key is unwrapped only inside a
// keyring, held as cipher state (never raw bytes) in the parent cache: for
// at most CacheMaxAge after it was loaded, at most ParentCacheMaxEntries
// of them per process. So the memory of a replica exposes the tenants it
// served within CacheMaxAge, rather than the patients it had cached; and
// someone with the KEK's permissions and a copy of the store can unwrap
// everything, as without the hierarchy. Lower CacheMaxAge (more KMS calls)
// to narrow the window; keep the hierarchy off where the KMS must see
// every patient's unwrap.
//
// Rewrap after a KEK rotation sends only keys wrapped by the KEK to the
// KMS: parent keys, the keys of scopes without a parent and the reserved
// ones. Rotate(ParentKey(tenant)) makes a new parent key version; the next
// Rewrap rewraps the tenant's children under it locally, with no KMS call
// per child (RewrapReport.Local), and is resumed by running it again.
// After that, no child uses the old version, which may be destroyed. A
// parent key version wraps each new child key version and each rewrap with
// a random nonce, far below GCM's 2^32 limit; rotate it in the hundreds of
// millions.
//
// Shredding a patient is Destroy (or Shred) of its scope, as before: its
// parent is unaffected. Shredding a tenant, Destroy of the parent scope,
// destroys its parent key first, in one store write: from then on every
// child key wrapped under it is unrecoverable (ErrKeyDestroyed), here at
// once and elsewhere within CacheMaxAge. Destroy then destroys the
// tenant's other keys, then its children's key sets (children found by
// the parent their keys name, or by Config.Parent for keys the KEK still
// wraps), which reads the whole store; calling it again finishes a run
// that failed. Children's rows stay as destroyed versions without key
// material, as after a patient's shred: they keep the metadata head whole
// and keep a new key from being created for a shredded patient. No new
// child gets a key either: a key wrapped under the parent key of a
// destroyed scope is refused (ErrKeyDestroyed), even by a keyring that
// still has that parent key cached, and no parent key is created in a
// destroyed scope. A tenant shredded before it had a parent key (its
// patients still wrapped by the KEK, the hierarchy just turned on) is
// searched for children by Config.Parent all the same.
//
// # Budgets and rotation
//
// A data key encrypts at most MaxMessages values (2^32 for random 96-bit
// nonces, NIST SP 800-38D; lower if configured), counted across replicas:
// each keyring reserves blocks of ReserveBlock messages in the store, one
// store write per block. When a version's budget is spent, or it is older
// than MaxKeyAge, the next encryption rotates to a new version. Rotate does
// so on demand. Old versions keep decrypting until SetMinDecryptVersion
// retires them or they are destroyed; the migration engine re-encrypts
// their data first.
//
// Deterministic (AES-SIV) keys and blind index keys never rotate by
// themselves: a new version would turn an equal value into a new
// ciphertext or index value, so equality lookups would miss the rows
// written before and unique constraints would stop holding. AES-SIV uses
// no nonce, so the random-nonce budget does not apply and is not counted.
// Rotate them on demand, then re-encrypt (or reindex) their rows with the
// migration engine; blind index searches try every live version meanwhile
// (IndexKeys), deterministic lookups do not.
//
// # Metadata authentication
//
// A key's usability rests on its metadata: the versions' states, the
// minimum decryption version, the message budget counters. The wrapped
// keys are authenticated by the KEK, but the metadata lives in plain rows.
// So that someone who can write the key store's tables but cannot use the
// KEK (a database administrator, a compromised replica, an SQL injection)
// cannot quietly un-compromise a key, lower the minimum decryption version
// or reset a budget (which could repeat GCM nonces), every key set carries
// a counter and an HMAC-SHA-256 over all of its metadata (MetaCounter,
// MetaMAC). The MAC key is 256 random bits, wrapped by the KEK and stored
// in the reserved key set "phicrypt:metadata"/"mac" (created with the
// first key, rewrapped by Rewrap); a keyring unwraps it once and keeps the
// derived key for its lifetime: one more KMS wrap per store, one more
// unwrap per keyring.
//
// The keyring seals every key set it writes (the counter goes up by one)
// and checks every key set it reads from the store; a missing or wrong
// MAC, or a counter below one this keyring has already seen, fails with
// ErrMetadataTampered, is audited as a denied use (error class
// "metadata-tampered"), and the key set is not used or written over.
// MemoryStore and SQLStore also keep a head, updated in the same
// transaction as each key set: a counter of sealed writes and the XOR of
// every key set's MAC, under the same MAC key, in the manner of the audit
// log's head. VerifyMetadata reads the whole store from one snapshot and
// checks each MAC and the head together.
//
// After this, a writer of the database without the KEK:
//
//   - cannot change any state, minimum, budget, date or wrapped key of a
//     key set, nor move one key set's row or MAC to another, nor delete a
//     MAC, without the key set being refused;
//   - can replay an older authentic copy of one key set (its rows and MAC
//     together, e.g. from before a compromise was recorded). A keyring that
//     has seen a newer counter for it refuses the copy at once; a keyring
//     that has not (a fresh process) cannot tell from that key set alone,
//     and VerifyMetadata finds it in the head ("head"). Run VerifyMetadata
//     on a schedule, and after any restore;
//   - can roll the whole store back to an earlier consistent copy (which
//     is also what restoring a backup does). Keyrings that have seen a
//     newer head refuse to write; otherwise only an anchor shows it: keep
//     VerifyMetadata's Head outside the database (a log shipper, a WORM
//     bucket, a ticket) and pass it back as MetadataVerifyOptions.Anchor;
//   - can still delete rows or make keys unusable (denial of service),
//     and a key set deleted whole comes back empty to a fresh keyring
//     until VerifyMetadata reports the head;
//   - learns nothing new: the MAC key never leaves the KEK unwrapped.
//
// Someone who can use the KEK can forge anything; the KEK's access policy
// is the boundary. Key sets of reserved scopes (the audit chain key, the
// MAC key) carry no MAC: their keys are bound to their identity by the
// wrapping AAD, so changing their rows can only make them unusable.
// Tombstones (TombstoneScope) have no key and do carry one. A
// Store implemented outside this package must persist MetaCounter and
// MetaMAC; it keeps no head, so only the per-key-set checks apply.
//
// Key sets written by a release without metadata authentication have no
// MAC and are refused until SealMetadata, a one-time migration run by the
// operator after upgrading (and after reviewing Status), seals them as
// they stand. It refuses a store whose head shows a stripped MAC, so that
// after it a missing MAC stays refused.
//
// # States
//
// Versions follow NIST SP 800-57 Part 1: PreActive, Active, DecryptOnly
// (deactivated), Suspended, Compromised, Destroyed. SetState refuses the
// transitions the standard does not allow (see CanTransition) with a
// *TransitionError matching ErrInvalidTransition. Every change is audited.
//
// # KEK rotation
//
// After the KEK gains a new version, Rewrap re-encrypts every stored key
// it wraps under the new version, in batches (with the KEK's server-side
// batch rewrap when it implements kms.Rewrapper), touching no data, and
// resumes after a failure. Keys wrapped under a parent key are not sent to
// the KMS (see "Key hierarchy").
//
// # Crypto-shredding
//
// Destroy(scope) destroys every version of every key set of the scope and
// erases the wrapped keys from the store. From then on, everything
// encrypted under them fails with ErrKeyDestroyed: at once in the calling
// process, and in other processes within their CacheMaxAge (set it to what
// your erasure policy can tolerate). Other scopes are unaffected, and no
// new key is ever created for a destroyed scope: before it lists the
// scope's key sets, Destroy records the scope in the store as destroyed,
// a tombstone in the reserved scope TombstoneScope (a sealed key set named
// after the scope, one destroyed version, no key material), even when the
// scope has no key yet. Every write that adds a key version checks, in
// the store's transaction, that neither the key's scope nor the parent it
// is wrapped under has a tombstone, and fails with ErrKeyDestroyed if one
// does; so a key created while Destroy runs is either refused or listed
// and destroyed by it. (A Store implemented outside this package cannot
// read inside its transaction: the keyring checks before the write, and
// after it destroys a version that a concurrent Destroy missed.) Deleting
// a tombstone's rows shows in the metadata head like any other key set.
//
// Shred(scope, ShredOptions{Erasers: ...}) makes shredding complete where
// blind indexes are concerned. A search across a tenant needs the tenant's
// index key, which survives the patient's keys, so the patient's index
// values would still confirm a guessed SSN: Shred erases them (sets them
// to NULL) through each IndexEraser (migrate.Eraser for a table spec,
// gormphi.Eraser for GORM models, IndexEraserFunc for anything else)
// before Destroy, and once more after it. Erasing first means that a
// failure leaves the keys Active, visibly not shredded, rather than
// destroyed with index values nobody will erase; every step is idempotent
// and a failed Shred is run again. Index keys in the patient's own scope
// (searches always within one patient) are destroyed with it.
// Self-contained and stream ciphertexts carry their own KEK-wrapped data
// key and are not affected by Destroy.
//
// Destroy erases the wrapped keys from the store's files as well as its
// rows where the store can: SQLStore writes with SQLite's secure_delete on
// (old bytes are zeroed, not left in free space) and Destroy ends with
// Purge, a TRUNCATE checkpoint that empties the write-ahead log. A reader
// holding an old snapshot blocks that checkpoint: Destroy retries for
// about four seconds, then fails with ErrPurgeIncomplete after destroying
// the keys, and Purge finishes later. On PostgreSQL the old row versions
// remain as dead tuples until VACUUM (FULL) of phicrypt_keys, and in WAL
// segments, archives, base backups and replicas, which the operator
// expires; docs/SHREDDING.md lists them.
//
// # Retiring versions
//
// SetMinDecryptVersion and SetState(Destroyed) act on a version whatever
// still uses it. Retire and DestroyVersion are their guarded forms, for
// operators: they refuse with an *InUseError (ErrStillInUse) naming the
// oldest version in use and its row count until a UsageChecker
// (migrate.Usage, over the tables' specs) proves that no row of the scope
// uses the versions, and they refuse a version that was active less than
// CacheMaxAge ago, under which replicas may still encrypt.
//
// Destruction is only as final as the copies of the store. Database backups,
// replicas, point-in-time recovery and WAL archives taken before Destroy
// still hold the wrapped keys; whoever can restore one and use the KEK can
// decrypt the shredded data again. To make shredding hold, an operator
// either keeps the key store out of long-lived backups (or in backups that
// expire within the erasure deadline), or records each Destroy and replays
// it after any restore, or gives each backup generation its own KEK
// version and retires that version in the KMS when the backup expires.
// The audit log records every destruction for that purpose.
//
// # Audit
//
// An Auditor receives an Event for every key operation: create, unwrap,
// rotate, rewrap, state change, destroy, denied use and refused lifecycle
// operation (and, with AuditUses, every use: each data key returned by
// EncryptionKey or DecryptionKey and each index key returned by IndexKey or
// IndexKeys, cached or not, so that each blind-index search is on record). Events carry the time, operation, scope, key,
// version, KEK id, the principal and purpose taken from the context
// (WithPrincipal, WithPurpose), the outcome and an error class, never key
// material or data. SlogAuditor writes them to a slog.Logger; AuditLog
// keeps them in the database as an HMAC chain under a KEK-wrapped key and
// Verify reports edited, inserted and deleted events. OpenAuditLog opens
// an existing log without creating one (ErrNoAuditLog): the phicrypt
// command records its own key operations there (shred, rotate, rewrap,
// and KEK rotations as OpKEKRotate) when the key store's database has a
// log. The log's chain key cannot be shredded (see ReservedScopePrefix);
// a log that holds events whose chain key was deleted from the key store
// is reported tampered with (ErrAuditTampered) when opened, never absent,
// and NewAuditLog does not start a new chain over it.
// With AuditFailClosed, an operation whose event cannot be recorded fails
// (ErrAudit), decryption and blind indexes included.
//
// # Stores
//
// MemoryStore keeps keys in memory for tests and single processes.
// SQLStore keeps them in PostgreSQL (pgx's database/sql driver) or SQLite
// (modernc.org/sqlite, the embedded default); NewSQLStore creates its
// tables, versioned by Migrate.
//
// NewSQLStore and NewAuditLog run DDL, which needs a role that may create
// tables. An application whose role may only read and write rows installs
// the tables with its schema tool (goose, Atlas, Flyway) from the scripts
// SchemaMigrations returns, one per schema version, and opens the store
// with OpenSQLStore and the audit log with NewAuditLogIn: they run no DDL
// and fail with a *SchemaError (ErrSchemaVersion) when the schema is not
// the version this package needs (CheckSchema).
package keys
