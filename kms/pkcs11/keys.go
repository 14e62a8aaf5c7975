//go:build cgo

package pkcs11

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	p11 "github.com/miekg/pkcs11"

	"github.com/phicrypt/phicrypt/kms"
)

// maxKeyObjects bounds how many AES keys findVersions examines on a token.
const maxKeyObjects = 100000

// maxPINFileSize bounds a PIN file.
const maxPINFileSize = 4096

// errInvalidConfig is the cause of an invalid Config.
var errInvalidConfig = errors.New("pkcs11: invalid config")

// errNoToken is the cause when no token matches the Config.
var errNoToken = errors.New("pkcs11: token not found")

// token is a token that a Config selects, on a loaded module.
type token struct {
	mod      *module
	slot     uint
	label    string
	pin      string
	gcm, kwp bool // mechanisms the token offers
}

// openToken validates cfg, reads its PIN, loads the module and finds the
// token. The caller releases tok.mod.
func openToken(cfg Config) (*token, error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", errInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case cfg.ModulePath == "":
		return nil, invalid("ModulePath is empty")
	case (cfg.TokenLabel == "") == (cfg.Slot == nil):
		return nil, invalid("set exactly one of TokenLabel and Slot")
	case cfg.KeyLabel == "":
		return nil, invalid("KeyLabel is empty")
	case cfg.MaxSessions < 0 || cfg.MaxSessions > maxSessions:
		return nil, invalid("MaxSessions must be 0 to %d", maxSessions)
	case cfg.Mechanism < MechanismAuto || cfg.Mechanism > MechanismKWP:
		return nil, invalid("unknown mechanism %v", cfg.Mechanism)
	}
	if _, ok := versionOf(cfg.KeyLabel, stripVersion(cfg.KeyLabel)); ok && stripVersion(cfg.KeyLabel) != cfg.KeyLabel {
		return nil, invalid("KeyLabel %q names a version; use the first version's label", cfg.KeyLabel)
	}
	pin, err := readPIN(cfg)
	if err != nil {
		return nil, err
	}
	mod, err := loadModule(cfg.ModulePath)
	if err != nil {
		return nil, invalid("%v", err)
	}
	tok := &token{mod: mod, pin: pin}
	if err := tok.find(cfg); err != nil {
		mod.release()
		return nil, err
	}
	return tok, nil
}

// find selects the token's slot and reads its label and mechanisms.
func (tok *token) find(cfg Config) error {
	c := tok.mod.ctx
	if cfg.Slot != nil {
		info, err := c.GetTokenInfo(*cfg.Slot)
		if errors.Is(err, p11.Error(p11.CKR_SLOT_ID_INVALID)) {
			return fmt.Errorf("%w: no slot %d", errNoToken, *cfg.Slot)
		}
		if err != nil {
			return err
		}
		tok.slot, tok.label = *cfg.Slot, info.Label
	} else {
		slots, err := c.GetSlotList(true)
		if err != nil {
			return err
		}
		found := 0
		for _, slot := range slots {
			info, err := c.GetTokenInfo(slot)
			if err != nil {
				return err
			}
			if info.Label == cfg.TokenLabel {
				tok.slot, tok.label = slot, info.Label
				found++
			}
		}
		switch {
		case found == 0:
			return fmt.Errorf("%w: no token labelled %q", errNoToken, cfg.TokenLabel)
		case found > 1:
			return fmt.Errorf("%w: %d tokens are labelled %q; select one by Slot", errInvalidConfig, found, cfg.TokenLabel)
		}
	}
	offers := func(mech, flags uint) bool {
		info, err := c.GetMechanismInfo(tok.slot, []*p11.Mechanism{p11.NewMechanism(mech, nil)})
		return err == nil && info.Flags&flags == flags && info.MinKeySize <= 32 && info.MaxKeySize >= 32
	}
	tok.gcm = offers(p11.CKM_AES_GCM, p11.CKF_ENCRYPT|p11.CKF_DECRYPT)
	tok.kwp = offers(p11.CKM_AES_KEY_WRAP_PAD, p11.CKF_WRAP|p11.CKF_UNWRAP)
	return nil
}

// readPIN returns the PIN from the one source cfg names.
func readPIN(cfg Config) (string, error) {
	set := 0
	for _, ok := range []bool{cfg.PIN != "", cfg.PINFile != "", cfg.PINEnv != ""} {
		if ok {
			set++
		}
	}
	if set != 1 {
		return "", fmt.Errorf("%w: set exactly one of PIN, PINFile and PINEnv", errInvalidConfig)
	}
	switch {
	case cfg.PINFile != "":
		return readPINFile(cfg.PINFile)
	case cfg.PINEnv != "":
		pin, ok := os.LookupEnv(cfg.PINEnv)
		if !ok || pin == "" {
			return "", fmt.Errorf("%w: environment variable %s is not set", errInvalidConfig, cfg.PINEnv)
		}
		return pin, nil
	}
	return cfg.PIN, nil
}

func readPINFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%w: PIN file: %w", errInvalidConfig, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxPINFileSize {
		return "", fmt.Errorf("%w: PIN file %s is not a regular file of at most %d bytes", errInvalidConfig, path, maxPINFileSize)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%w: PIN file %s has mode %04o, want 0600 or stricter", errInvalidConfig, path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: PIN file: %w", errInvalidConfig, err)
	}
	pin := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	clear(data)
	if pin == "" {
		return "", fmt.Errorf("%w: PIN file %s is empty", errInvalidConfig, path)
	}
	return pin, nil
}

// labelFor returns the label of version v of the key labelled base.
func labelFor(base string, v uint32) string {
	if v == 1 {
		return base
	}
	return base + ".v" + strconv.FormatUint(uint64(v), 10)
}

// versionOf returns the version that label names for the key labelled
// base: 1 for base itself, n for base.vn with n >= 2 written canonically.
func versionOf(label, base string) (uint32, bool) {
	if label == base {
		return 1, true
	}
	rest, ok := strings.CutPrefix(label, base+".v")
	if !ok || rest == "" || rest[0] == '0' || len(rest) > 10 {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 32)
	if err != nil || n < 2 {
		return 0, false
	}
	return uint32(n), true
}

// stripVersion returns label without a ".vN" suffix.
func stripVersion(label string) string {
	if i := strings.LastIndex(label, ".v"); i > 0 {
		if _, ok := versionOf(label, label[:i]); ok {
			return label[:i]
		}
	}
	return label
}

// aesKeys is the template of the AES secret keys a KEK may use.
func aesKeys(extra ...*p11.Attribute) []*p11.Attribute {
	return append([]*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
	}, extra...)
}

// findObjects returns the handles of the objects matching template.
func findObjects(c *p11.Ctx, s p11.SessionHandle, template []*p11.Attribute) ([]p11.ObjectHandle, error) {
	if err := c.FindObjectsInit(s, template); err != nil {
		return nil, err
	}
	var all []p11.ObjectHandle
	for len(all) < maxKeyObjects {
		batch, _, err := c.FindObjects(s, 256)
		if err != nil {
			c.FindObjectsFinal(s)
			return nil, err
		}
		if len(batch) == 0 {
			break
		}
		all = append(all, batch...)
	}
	return all, c.FindObjectsFinal(s)
}

// findVersions returns every version of the key labelled base on the token.
// Two keys with the label of one version make the key ambiguous.
func findVersions(c *p11.Ctx, s p11.SessionHandle, base string) (map[uint32]keyVersion, error) {
	handles, err := findObjects(c, s, aesKeys())
	if err != nil {
		return nil, err
	}
	versions := make(map[uint32]keyVersion)
	for _, h := range handles {
		attrs, err := c.GetAttributeValue(s, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, nil)})
		if err != nil {
			continue // an object that vanished or hides its label is not ours
		}
		v, ok := versionOf(string(attrs[0].Value), base)
		if !ok {
			continue
		}
		if _, dup := versions[v]; dup {
			return nil, fmt.Errorf("%w: several keys are labelled %q", errInvalidConfig, labelFor(base, v))
		}
		kv, err := readKey(c, s, h)
		if err != nil {
			return nil, err
		}
		versions[v] = kv
	}
	return versions, nil
}

// findVersion looks up version v of the key labelled base.
func findVersion(c *p11.Ctx, s p11.SessionHandle, base string, v uint32) (keyVersion, bool, error) {
	handles, err := findObjects(c, s, aesKeys(p11.NewAttribute(p11.CKA_LABEL, labelFor(base, v))))
	if err != nil || len(handles) != 1 {
		return keyVersion{}, false, err
	}
	kv, err := readKey(c, s, handles[0])
	return kv, err == nil, err
}

// readKey reads the attributes of a key that decide how it may be used.
func readKey(c *p11.Ctx, s p11.SessionHandle, h p11.ObjectHandle) (keyVersion, error) {
	attrs, err := c.GetAttributeValue(s, h, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_VALUE_LEN, nil),
		p11.NewAttribute(p11.CKA_SENSITIVE, nil),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, nil),
		p11.NewAttribute(p11.CKA_ENCRYPT, nil),
		p11.NewAttribute(p11.CKA_DECRYPT, nil),
		p11.NewAttribute(p11.CKA_WRAP, nil),
		p11.NewAttribute(p11.CKA_UNWRAP, nil),
	})
	if err != nil {
		return keyVersion{}, err
	}
	b := func(i int) bool { return len(attrs[i].Value) == 1 && attrs[i].Value[0] != 0 }
	kv := keyVersion{
		handle:      h,
		size:        int(ulong(attrs[0].Value)),
		sensitive:   b(1),
		extractable: b(2),
		encrypt:     b(3),
		decrypt:     b(4),
		wrap:        b(5),
		unwrap:      b(6),
	}
	return kv, nil
}

// ulong decodes a CK_ULONG attribute, which has the platform's size and
// byte order.
func ulong(v []byte) uint64 {
	switch len(v) {
	case 8:
		return binary.NativeEndian.Uint64(v)
	case 4:
		return uint64(binary.NativeEndian.Uint32(v))
	}
	return 0
}

// GenerateKey creates a new AES-256 key on the token that cfg names: the
// first version, labelled cfg.KeyLabel, when the token has none, otherwise
// the version after the newest, labelled cfg.KeyLabel + ".v" + n. It
// returns the new version. The key is a private token object with
// CKA_SENSITIVE=true, CKA_EXTRACTABLE=false and CKA_MODIFIABLE=false,
// allowed C_Encrypt and C_Decrypt for MechanismGCM or C_WrapKey and
// C_UnwrapKey for MechanismKWP (MechanismAuto picks GCM when the token
// offers it). A KEK opened before sees the new version for Unwrap, and
// wraps with it once reopened. Rotations must not run concurrently: two
// keys with one label make the KEK refuse to open.
func GenerateKey(ctx context.Context, cfg Config) (uint32, error) {
	fail := func(kind, err error) (uint32, error) {
		return 0, kms.NewError(ctx, "generate", cfg.KeyID, kind, err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err, nil)
	}
	tok, err := openToken(cfg)
	if err != nil {
		return fail(kindOf(err), err)
	}
	defer tok.mod.release()
	mech := cfg.Mechanism
	if mech == MechanismAuto {
		mech = MechanismKWP
		if tok.gcm {
			mech = MechanismGCM
		}
	}
	if (mech == MechanismGCM && !tok.gcm) || (mech == MechanismKWP && !tok.kwp) {
		return fail(kms.ErrInvalidInput, fmt.Errorf("token does not offer %v", mech))
	}
	c := tok.mod.ctx
	s, err := c.OpenSession(tok.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		return fail(kindOf(err), err)
	}
	defer c.CloseSession(s)
	if err := tok.mod.login(s, tok.slot, tok.pin, false); err != nil {
		return fail(kindOf(err), err)
	}
	versions, err := findVersions(c, s, cfg.KeyLabel)
	if err != nil {
		return fail(kindOf(err), err)
	}
	var next uint32 = 1
	for v := range versions {
		next = max(next, v+1)
	}
	gcm, kwp := mech == MechanismGCM, mech == MechanismKWP
	_, err = c.GenerateKey(s, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, aesKeys(
		p11.NewAttribute(p11.CKA_VALUE_LEN, 32),
		p11.NewAttribute(p11.CKA_LABEL, labelFor(cfg.KeyLabel, next)),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_MODIFIABLE, false),
		p11.NewAttribute(p11.CKA_ENCRYPT, gcm),
		p11.NewAttribute(p11.CKA_DECRYPT, gcm),
		p11.NewAttribute(p11.CKA_WRAP, kwp),
		p11.NewAttribute(p11.CKA_UNWRAP, kwp),
		p11.NewAttribute(p11.CKA_SIGN, false),
		p11.NewAttribute(p11.CKA_VERIFY, false),
		p11.NewAttribute(p11.CKA_DERIVE, false),
	))
	if err != nil {
		return fail(kindOf(err), err)
	}
	if err := ctx.Err(); err != nil {
		// The key exists; report it with the context's error all the same.
		return next, kms.NewError(ctx, "generate", cfg.KeyID, err, nil)
	}
	return next, nil
}
