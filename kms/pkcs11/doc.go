// Package pkcs11 is a KEK held in a hardware security module (HSM) or any
// other PKCS#11 token: an AES-256 key that never leaves the token wraps and
// unwraps data keys on the token.
//
// # Requirements
//
// The package loads the token's PKCS#11 module (a C shared library) through
// github.com/miekg/pkcs11 and so needs cgo (CGO_ENABLED=1 and a C
// compiler). Built without cgo it is an empty package and nothing else in
// this module imports it, so the rest of phicrypt builds with
// CGO_ENABLED=0.
//
// # Keys and versions
//
// The KEK is an AES-256 secret key object found by its label (CKA_LABEL).
// Later versions carry the label followed by ".v2", ".v3", … (for "kek":
// "kek", "kek.v2", "kek.v3"). Wrap uses the newest version found when the
// KEK was opened; Unwrap uses the version a wrapped key names, and looks up
// on the token a version newer than those it knew (another process rotated),
// so rotation never needs a restart for reading. [GenerateKey] creates the
// first or the next version on the token with CKA_SENSITIVE=true,
// CKA_EXTRACTABLE=false, CKA_MODIFIABLE=false and only the usage attributes
// its mechanism needs. [New] refuses a key that is not AES-256, or that is
// extractable or not sensitive (its bytes could leave the token) unless
// Config.AllowExtractable is set.
//
// # Mechanisms and wrapped keys
//
// Where the token offers CKM_AES_GCM for encryption, a wrapped key is
//
//	0x01 || version (uint32, big-endian) || IV (12) || ciphertext || tag (16)
//
// made by C_Encrypt with AES-256-GCM. The IV is 96 bits from Go's
// crypto/rand, passed to the token in CK_GCM_PARAMS; a token that ignores
// it and generates its own (FIPS-mode HSMs such as AWS CloudHSM do) writes
// its IV back, and the wrapped key stores the IV the token used. The GCM
// associated data is the first five bytes followed by the caller's AAD, so
// the AAD is bound by the token's own GCM. A key version must not wrap more
// than 2^32 data keys (NIST SP 800-38D, random IVs); rotate long before.
//
// Where the token lacks AES-GCM (or Config.Mechanism asks for it), the key
// is wrapped with C_WrapKey and CKM_AES_KEY_WRAP_PAD (RFC 5649, NIST SP
// 800-38F KWP), which has no associated data. The AAD is then bound inside
// the wrapped plaintext instead:
//
//	0x02 || version (uint32, big-endian) || KWP(R || n || DEK || T || zeros)
//
// with R 16 random bytes (so that wrapping is randomized), n the data key's
// length in one byte, T = SHA-256("phicrypt/kms/pkcs11 kwp aad v1" || 0x00
// || the first five bytes || AAD), and zeros to a multiple of 8 bytes (so
// that the token adds no padding of its own, which some tokens fail to
// remove on unwrap). KWP's unwrapping function is a strong pseudorandom
// permutation of the whole plaintext, so a changed ciphertext, version or
// AAD yields a wrong T, which Unwrap compares in constant time (a 256-bit
// check on top of KWP's own integrity check) and reports as
// kms.ErrUnwrapFailed. Never is the AAD silently dropped. The data key is a
// session object (CKO_SECRET_KEY, CKK_GENERIC_SECRET) on the token for the
// duration of one call, destroyed right after; the token must allow such
// objects to be extractable and unwrapped as non-sensitive, which HSMs in a
// strict FIPS mode may refuse. Prefer GCM.
//
// Unwrap reads the format byte, so a KEK unwraps keys of either mechanism
// with a version whose usage attributes allow it.
//
// # Sessions
//
// Calls share a bounded pool of read-only sessions (Config.MaxSessions,
// default 4), each used by one call at a time. A session is logged in when
// opened, unless the token already is (PKCS#11 login state belongs to the
// process, not the session). A session that reports an error other than an
// authentication failure of the data is closed and replaced; a call whose
// session was closed or logged out under it is retried once on a new
// session, and nothing else is retried here (wrap the KEK with kms.Retry).
// A call waits for a free session until its context ends, but a PKCS#11
// call in progress cannot be interrupted: the context is checked before and
// after it. [KEK.Close] waits for calls in progress, closes the sessions
// and, when it is the last user of the module in the process, finalizes
// it (C_Finalize). Several KEKs may share one module and token.
//
// Because login state is shared by the process, a KEK opened while the
// token is logged in with another PIN by an earlier KEK of this package
// fails with kms.ErrPermissionDenied instead of silently using that login.
//
// # Errors
//
// CKR_PIN_INCORRECT, CKR_PIN_LOCKED, CKR_USER_NOT_LOGGED_IN and
// CKR_KEY_FUNCTION_NOT_PERMITTED map to kms.ErrPermissionDenied; a missing
// token or key to kms.ErrKeyNotFound; CKR_ENCRYPTED_DATA_INVALID,
// CKR_ENCRYPTED_DATA_LEN_RANGE, CKR_WRAPPED_KEY_INVALID, CKR_AEAD_DECRYPT_FAILED
// and a failed tag to kms.ErrUnwrapFailed; device errors and closed
// sessions to kms.ErrUnavailable. Some tokens (SoftHSM2 among them) report
// a failed GCM tag or KWP check as CKR_GENERAL_ERROR: after such an error
// the session is probed with C_GetSessionInfo, and the failure is an
// unwrap failure when the session is still healthy, an unavailable token
// otherwise.
//
// # URIs
//
// [Open] opens a KEK from an RFC 7512 PKCS#11 URI:
//
//	pkcs11:token=phi;object=kek?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/hsm-pin
//
// The PIN comes from pin-source, a file ("file:/path" or "/path") or an
// environment variable ("env:NAME", an extension of RFC 7512), or by
// default from the PHICRYPT_PKCS11_PIN environment variable. RFC 7512's
// pin-value attribute is refused: key URIs live in configuration files and
// logs, where a PIN must not.
//
// Default key ids are the URI's path part, "pkcs11:token=<token
// label>;object=<key label>", percent-encoded as RFC 7512 says.
package pkcs11
