package pkcs11

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// This file holds what compiles without cgo: the configuration, the
// mechanisms and the names. Without cgo, New, Open and GenerateKey fail
// with ErrNoCgo (nocgo.go).

// ErrNoCgo is the error of New, Open and GenerateKey in a build without
// cgo (CGO_ENABLED=0): the package loads the token's PKCS#11 module, a C
// library, through cgo.
var ErrNoCgo = errors.New("pkcs11: this program was built without cgo (CGO_ENABLED=0), and PKCS#11 modules are C libraries: rebuild it with cgo")

// Scheme is the URI scheme of PKCS#11 keys (RFC 7512).
const Scheme = "pkcs11"

// DefaultPINEnv is the environment variable Open reads the PIN from when
// the URI has no pin-source.
const DefaultPINEnv = "PHICRYPT_PKCS11_PIN"

// Mechanism selects how the KEK wraps data keys.
type Mechanism int

const (
	// MechanismAuto uses AES-GCM when the token offers it for encryption
	// and the key allows encryption, and AES key wrap with padding
	// otherwise.
	MechanismAuto Mechanism = iota
	// MechanismGCM is CKM_AES_GCM with C_Encrypt and C_Decrypt.
	MechanismGCM
	// MechanismKWP is CKM_AES_KEY_WRAP_PAD (RFC 5649) with C_WrapKey and
	// C_UnwrapKey, the AAD bound inside the wrapped plaintext.
	MechanismKWP
)

// String returns "auto", "AES-GCM" or "AES-KWP".
func (m Mechanism) String() string {
	switch m {
	case MechanismAuto:
		return "auto"
	case MechanismGCM:
		return "AES-GCM"
	case MechanismKWP:
		return "AES-KWP"
	}
	return fmt.Sprintf("Mechanism(%d)", int(m))
}

// DefaultMaxSessions is the session pool's size when Config.MaxSessions is
// zero.
const DefaultMaxSessions = 4

// maxSessions bounds Config.MaxSessions.
const maxSessions = 256

// Config says which token and key the KEK uses. ModulePath, KeyLabel,
// exactly one of TokenLabel and Slot, and exactly one of PIN, PINFile and
// PINEnv must be set.
type Config struct {
	// ModulePath is the absolute path of the token's PKCS#11 module, e.g.
	// /usr/lib/softhsm/libsofthsm2.so.
	ModulePath string
	// TokenLabel selects the token by its label (CKA_LABEL of the token).
	TokenLabel string
	// Slot selects the token by slot id instead.
	Slot *uint
	// PIN is the user PIN. It is never printed or marshalled.
	PIN string `json:"-"`
	// PINFile is a file holding the user PIN (one trailing newline is
	// ignored). It must not be readable by its group or others.
	PINFile string
	// PINEnv is an environment variable holding the user PIN.
	PINEnv string
	// KeyLabel is the label of the key's first version; version n > 1 is
	// labelled KeyLabel + ".v" + n.
	KeyLabel string
	// KeyID overrides the key id that wrapped keys carry, by default
	// "pkcs11:token=<token label>;object=<KeyLabel>".
	KeyID string
	// Mechanism is the wrapping mechanism, MechanismAuto by default.
	Mechanism Mechanism
	// MaxSessions bounds the session pool (1 to 256, DefaultMaxSessions
	// when zero).
	MaxSessions int
	// AllowExtractable accepts a key whose CKA_EXTRACTABLE is true or
	// CKA_SENSITIVE false. Its bytes can then leave the token: use it only
	// for keys imported on purpose, with a documented backup procedure.
	AllowExtractable bool
}

// String describes the configuration with the PIN redacted.
func (c Config) String() string {
	slot := "nil"
	if c.Slot != nil {
		slot = fmt.Sprint(*c.Slot)
	}
	pin := ""
	if c.PIN != "" {
		pin = "REDACTED"
	}
	return fmt.Sprintf("pkcs11.Config{ModulePath: %q, TokenLabel: %q, Slot: %s, PIN: %q, PINFile: %q, PINEnv: %q, KeyLabel: %q, KeyID: %q, Mechanism: %v, MaxSessions: %d, AllowExtractable: %t}",
		c.ModulePath, c.TokenLabel, slot, pin, c.PINFile, c.PINEnv, c.KeyLabel, c.KeyID, c.Mechanism, c.MaxSessions, c.AllowExtractable)
}

// GoString is String.
func (c Config) GoString() string { return c.String() }

// Format prints String for every verb, so that no verb prints the PIN.
func (c Config) Format(f fmt.State, verb rune) { fmt.Fprint(f, c.String()) }

// LogValue logs the configuration without the PIN.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("module_path", c.ModulePath), slog.String("token_label", c.TokenLabel),
		slog.String("key_label", c.KeyLabel), slog.String("key_id", c.KeyID), slog.String("mechanism", c.Mechanism.String()))
}

// KeyID returns the default key id of the key labelled keyLabel on the
// token labelled tokenLabel: "pkcs11:token=…;object=…", each value
// percent-encoded as RFC 7512 says.
func KeyID(tokenLabel, keyLabel string) string {
	return Scheme + ":token=" + escape(tokenLabel) + ";object=" + escape(keyLabel)
}

// escape percent-encodes every byte but RFC 3986's unreserved characters,
// which is always valid in an RFC 7512 attribute value.
func escape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
