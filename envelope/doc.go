// Package envelope encrypts individual values (a patient's SSN, a FHIR
// document) with data keys, binding each ciphertext to the context it
// belongs to, in a versioned, self-describing wire format.
//
// Most applications should use the fields package, which encrypts tagged
// struct fields through this package with keys from the keys package. Use
// envelope directly for values outside structs, or to build integrations.
//
// # Two forms
//
// [Compact] is the form for database columns. The ciphertext names its data
// key (DEK) by version only; the key comes from a [Keyring], selected by the
// scope of the Binding (the scope is the DEK's identity, so the pair
// (scope, version) names one key). A 64-byte value costs 36 bytes of
// overhead with AES-256-GCM, and nothing but the AEAD once the keyring
// caches the key.
//
// [SelfContained] is the form for documents, blobs and exports. The
// ciphertext carries its data key wrapped by a KEK (see package kms) and a
// commitment to that key, so it decrypts anywhere the KEK is reachable. It
// reuses a data key per scope for a bounded time and number of values and
// caches unwrapped keys, so a batch costs one KMS call per scope.
//
// Both have Encrypt and Decrypt with the same signatures. Encrypt writes the
// configured [Encoding]; Decrypt reads both.
//
// # Context binding
//
// Every value is bound to a [Binding]: scope, table, column, record id and
// caller extras. The Binding is not stored; it is authenticated as
// associated data, so Decrypt needs the same Binding as Encrypt. A
// ciphertext copied to another patient's row, another column, table or
// tenant fails with [ErrDecrypt]. Record ids must exist before the value is
// encrypted: use client-generated UUIDs or ULIDs as primary keys, or bind a
// natural key that never changes.
//
// # Guarantees and limits
//
//   - Confidentiality and integrity of the value and of its binding, under
//     AES-256-GCM (default; FIPS 140-3 approved, from the standard library)
//     or XChaCha20-Poly1305. Deterministic AES-SIV is available in the
//     compact form for equality lookups; it reveals which values are equal.
//   - Key commitment in the self-contained form: a ciphertext opens under
//     one data key only, whatever KEK or keyring is tried.
//   - Random nonces: a data key must not encrypt more than 2^32 values with
//     AES-GCM (NIST SP 800-38D); SelfContained rotates its data keys well
//     before (DefaultDataKeyMaxMessages), and the keys package enforces the
//     budget for Compact.
//   - No API accepts a nonce, IV or randomness source.
//   - Decrypt never panics and reports one opaque ErrDecrypt for every
//     authentication failure; a malformed input is a *FormatError that names
//     the field, never the bytes. Values above the configured maximum size
//     fail with ErrTooLarge before any allocation.
//   - Nothing in this package prints plaintext or key material: DEK's
//     String, GoString, Format, LogValue and MarshalJSON print its suite and
//     version; errors never contain plaintext, keys or ciphertexts.
//   - In FIPS 140-3 mode (GODEBUG=fips140=on or only) suites that are not
//     approved fail with ErrNotApproved.
//
// # Wire format, version 1
//
// A ciphertext is binary, for bytea and BLOB columns, or text: the binary
// form armored as "phicrypt:" followed by unpadded base64url (RFC 4648
// section 5). Only the canonical encoding is accepted: no padding,
// whitespace, line breaks or non-zero trailing bits. A value that starts
// with neither the magic byte nor the prefix is plaintext ([ErrNotEncrypted]).
// Integers are big-endian.
//
// Compact form:
//
//	offset  size  field
//	0       1     magic 0xF5 (never valid UTF-8, so text is never mistaken for it)
//	1       1     format version 0x01
//	2       1     form 0x01 (compact)
//	3       1     suite: 0x01 AES-256-GCM, 0x02 XChaCha20-Poly1305, 0x03 AES-SIV
//	4       4     data key version (uint32, not zero)
//	8       n     nonce (12 bytes, 24 for XChaCha20-Poly1305, none for AES-SIV),
//	              ciphertext, tag (16 bytes; the SIV for AES-SIV, placed first)
//
// Self-contained form:
//
//	offset  size  field
//	0       1     magic 0xF5
//	1       1     format version 0x01
//	2       1     form 0x02 (self-contained)
//	3       1     suite: 0x01 AES-256-GCM or 0x02 XChaCha20-Poly1305
//	4       2     length k of the KEK id (1..512)
//	6       k     KEK id, printable ASCII (kms.WrappedKey.KeyID)
//	6+k     2     length w of the wrapped data key (1..4096)
//	8+k     w     wrapped data key (kms.WrappedKey.Ciphertext)
//	8+k+w   32    key commitment
//	40+k+w  n     nonce, ciphertext, tag, as above
//
// The data key is 256 random bits. The AEAD key is derived from it with
// HKDF-SHA-256 (no salt, info "phicrypt/v1/aead-key/" followed by the suite
// byte), 32 bytes for AES-256-GCM and XChaCha20-Poly1305, 64 for AES-SIV.
// The key commitment is HKDF-SHA-256 of the data key with info
// "phicrypt/v1/key-commitment", 32 bytes, compared in constant time before
// decryption. The wrapped data key's AAD for the KEK is the first four
// header bytes followed by the scope as a length-prefixed string (below).
//
// The AEAD's associated data is the whole header (every byte before the
// nonce) followed by the canonical encoding of the Binding: Scope, Table,
// Column and RecordID, each as a uint32 length and its bytes, then the
// number of extras as a uint32, then each extra's key and value likewise,
// sorted by key (keys are distinct). Every field is length-prefixed, so
// moving bytes between fields changes the AAD.
//
// This layout is frozen: the vectors in testdata/golden-v1.json must decrypt
// in every later version. A new layout gets a new format version byte.
package envelope
