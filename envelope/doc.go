// Package envelope encrypts individual values (a patient's SSN, a FHIR
// document) with data keys, binding each ciphertext to the context it
// belongs to, in a versioned, self-describing wire format.
//
// Most applications should use the fields package, which encrypts tagged
// struct fields through this package with keys from the keys package. Use
// envelope directly for values outside structs, or to build integrations.
//
// # Forms
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
// The stream form is for large attachments (scanned documents, images,
// notes of 100 MiB and more): [SelfContained.EncryptStream] returns an
// io.WriteCloser and [SelfContained.DecryptStream] an io.Reader, each
// holding about two segments (64 KiB each by default) in memory whatever
// the stream's size. A stream carries its wrapped data key like a
// self-contained value, and is cut into segments, each authenticated with
// its position and whether it is the last, so that a stream cut short,
// reordered, or spliced with segments of another stream fails with
// [ErrDecrypt]. Plaintext that DecryptStream returns before io.EOF is
// authentic but possibly incomplete.
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
//   - Key commitment in the self-contained and stream forms: a ciphertext
//     opens under one data key only, whatever KEK or keyring is tried.
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
//   - KMS cost under forgery: [SelfContained] remembers, for a bounded
//     time and number (one minute and 1,024 by default, see
//     SelfContainedConfig.FailedUnwrapMaxAge), each data key that the KEK
//     refused to unwrap as inauthentic, so that copies of one forged
//     value cost one KMS call, not one each. Outages, timeouts and unknown
//     KEKs are never remembered. Each distinct forged wrapped key still
//     costs one call.
//   - Key bytes in memory: the data keys that SelfContained caches for
//     streams are zeroed when their cache entry is evicted or expires.
//     Derived AEAD state (the AES key schedule) cannot be cleared from Go.
//   - Memory before authentication: DecryptStream grows its buffers as
//     the stream's bytes arrive, not to the segment size the unauthenticated
//     header claims, so a forged header makes it allocate a few KiB.
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
// Stream form (binary only, never armored):
//
//	offset  size  field
//	0       1     magic 0xF5
//	1       1     format version 0x01
//	2       1     form 0x03 (stream)
//	3       1     suite: 0x01 AES-256-GCM or 0x02 XChaCha20-Poly1305
//	4       2     length k of the KEK id (1..512)
//	6       k     KEK id, printable ASCII
//	6+k     2     length w of the wrapped data key (1..4096)
//	8+k     w     wrapped data key
//	8+k+w   32    key commitment
//	40+k+w  4     segment size S: plaintext bytes per segment (uint32,
//	              256..1048576; 65536 by default)
//	44+k+w  32    salt, random per stream
//	76+k+w  ...   segments 0, 1, ..., n-1, back to back
//
// Segment i is nonce, ciphertext, tag, as above. Every segment but the last
// holds exactly S bytes of plaintext; the last (final) one holds 1 to S
// bytes, or 0 when the whole stream is empty. Nothing follows it. A stream
// has at most 2^32 segments. The reader tells the final segment by the end
// of its input: a segment is final exactly when fewer than S+28 bytes (S+40
// for XChaCha20-Poly1305) remain, or exactly that many and nothing after.
//
// The KEK id, wrapped data key and key commitment are those of the
// self-contained form, and a stream uses the same data keys as the
// self-contained values of its scope and suite (SelfContained shares its
// caches between them), so the wrapped key's AAD is the self-contained
// form's: 0xF5 0x01 0x02, the suite byte, then the scope. Each stream
// encrypts under a key of its own: HKDF-SHA-256 of the data key, with the
// stream's salt as salt and info "phicrypt/v1/stream-key/" followed by the
// suite byte, 32 bytes. Segment i's associated data is the whole stream
// header (every byte before segment 0), then the canonical encoding of the
// Binding as above, then i as a uint64, then one byte: 0x01 if the segment
// is final, 0x00 if not. Nonces are random, drawn per segment like every
// other nonce in this package.
//
// This gives the guarantees of STREAM (Hoang, Reyhanitabar, Rogaway and
// Vizár, "Online Authenticated-Encryption and its Nonce-Reuse
// Misuse-Resistance", CRYPTO 2015; also Tink's streaming AEAD), which seals
// segment i under a nonce made of a per-stream prefix, i and a final flag.
// Here the stream is identified by its key and header, and i and the flag
// are in the associated data instead of the nonce: the AEAD authenticates
// (key, associated data, ciphertext), so a segment that opens was sealed by
// the writer under this stream's key, for this header and Binding, at
// position i, with this flag. The reader counts i itself and derives the
// flag from where its input ends, so:
//
//   - reordering, dropping or duplicating a segment puts a segment at an
//     index it was not sealed for;
//   - cutting the stream at a segment boundary makes the last remaining
//     segment read as final, though it was sealed as not final; cutting it
//     inside a segment or header leaves a segment or header that is short;
//     dropping the final segment is the boundary case;
//   - appending bytes after the final segment makes it read as not final
//     (or as a longer segment);
//   - a segment from another stream, even one under the same data key and
//     Binding, was sealed under another key (another salt) and with
//     another header in its associated data.
//
// STREAM derives each nonce from the position; this format cannot, because
// in FIPS 140-3 mode (GODEBUG=fips140=only) the standard library's AES-GCM
// refuses caller-chosen nonces and only cipher.NewGCMWithRandomNonce is
// allowed. Nonces need only be unique under one key, and each stream has
// its own key, so the 2^32 segment limit bounds the chance of a nonce
// collision within a stream to about 2^-33 (NIST SP 800-38D, section 8.3);
// a data key reused across many streams never puts two streams' segments
// under one key. XChaCha20-Poly1305 draws 192-bit nonces. The data key's
// commitment is checked before any segment is opened; each stream key is a
// function of the committed data key and the authenticated salt.
//
// This layout is frozen: the vectors in testdata/golden-v1.json and
// testdata/golden-stream-v1.json must decrypt in every later version. A new
// layout gets a new format version byte.
package envelope
