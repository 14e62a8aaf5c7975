//go:build cgo

package pkcs11

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	p11 "github.com/miekg/pkcs11"
)

// A PKCS#11 module is initialized once per process (C_Initialize), and
// finalizing it (C_Finalize) ends every session of the process. KEKs that
// load the same module therefore share one *module, counted by references,
// and the last to close finalizes it. This registry holds no key material.
var modules = struct {
	sync.Mutex
	m map[string]*module
}{m: make(map[string]*module)}

// module is one loaded and initialized PKCS#11 module.
type module struct {
	path  string
	ctx   *p11.Ctx
	refs  int  // guarded by modules.Mutex
	owned bool // this package called C_Initialize, so it finalizes

	mu     sync.Mutex
	salt   [32]byte
	logins map[uint][32]byte // slot -> salted hash of the PIN that logged in
}

// loadModule returns the module at path, loading and initializing it on
// first use. Callers release it when done.
func loadModule(path string) (*module, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("module path %q is not absolute", path)
	}
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		path = resolved
	} else {
		return nil, fmt.Errorf("module: %w", err)
	}
	modules.Lock()
	defer modules.Unlock()
	if m, ok := modules.m[path]; ok {
		m.refs++
		return m, nil
	}
	ctx := p11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("module %s could not be loaded", path)
	}
	owned := true
	if err := ctx.Initialize(); err != nil {
		if !errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
			ctx.Destroy()
			return nil, fmt.Errorf("initialize: %w", err)
		}
		// Someone else in the process initialized it; they finalize it.
		owned = false
	}
	m := &module{path: path, ctx: ctx, refs: 1, owned: owned, logins: make(map[uint][32]byte)}
	rand.Read(m.salt[:])
	modules.m[path] = m
	return m, nil
}

// release drops a reference, finalizing and unloading the module with the
// last one.
func (m *module) release() error {
	modules.Lock()
	defer modules.Unlock()
	m.refs--
	if m.refs > 0 {
		return nil
	}
	delete(modules.m, m.path)
	var err error
	if m.owned {
		err = m.ctx.Finalize()
	}
	m.ctx.Destroy()
	return err
}

func (m *module) pinHash(slot uint, pin string) [32]byte {
	h := sha256.New()
	h.Write(m.salt[:])
	fmt.Fprintf(h, "%d\x00%s", slot, pin)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// login logs session s's token in as the user with pin, unless loggedIn
// says it already is. A token already logged in by this package with
// another PIN is reported as CKR_PIN_INCORRECT rather than silently shared:
// PKCS#11 login state belongs to the process, not to a session.
func (m *module) login(s p11.SessionHandle, slot uint, pin string, loggedIn bool) error {
	sum := m.pinHash(slot, pin)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !loggedIn {
		err := m.ctx.Login(s, p11.CKU_USER, pin)
		if err == nil {
			m.logins[slot] = sum
			return nil
		}
		if !errors.Is(err, p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN)) {
			return err
		}
	}
	if prev, ok := m.logins[slot]; ok && subtle.ConstantTimeCompare(prev[:], sum[:]) != 1 {
		return errOtherPIN
	}
	return nil
}

// errOtherPIN reports a token logged in with a PIN other than the KEK's.
var errOtherPIN = fmt.Errorf("token is logged in with another PIN: %w", p11.Error(p11.CKR_PIN_INCORRECT))
