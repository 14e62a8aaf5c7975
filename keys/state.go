package keys

import (
	"errors"
	"fmt"

	"github.com/phicrypt/phicrypt/envelope"
)

// State is a key's lifecycle state, after NIST SP 800-57 Part 1 Rev. 5,
// section 7. Values are stored: they never change meaning.
type State uint8

// States.
const (
	// PreActive keys exist but are not used yet.
	PreActive State = 1
	// Active keys encrypt and decrypt. A key set has at most one.
	Active State = 2
	// DecryptOnly keys (NIST's "deactivated") decrypt what they encrypted
	// and encrypt nothing new: the state of a rotated-out version.
	DecryptOnly State = 3
	// Suspended keys are temporarily unusable for anything.
	Suspended State = 4
	// Compromised keys are suspected to be known to an adversary. They
	// encrypt nothing; they decrypt only through a keyring configured with
	// AllowCompromisedDecryption, to re-encrypt data under a new key.
	Compromised State = 5
	// Destroyed keys have had their wrapped material erased from the
	// store: what they encrypted is unreadable (crypto-shredding). The
	// record stays as a tombstone so that readers get ErrKeyDestroyed
	// rather than ErrKeyNotFound.
	Destroyed State = 6
)

var stateNames = map[State]string{
	PreActive:   "pre-active",
	Active:      "active",
	DecryptOnly: "decrypt-only",
	Suspended:   "suspended",
	Compromised: "compromised",
	Destroyed:   "destroyed",
}

// String returns the state's name, e.g. "decrypt-only".
func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// ParseState returns the state named s.
func ParseState(s string) (State, error) {
	for st, n := range stateNames {
		if n == s {
			return st, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown key state %q", ErrInvalidTransition, s)
}

// transitions lists the allowed state changes, those of SP 800-57 Part 1
// Rev. 5, figure 8: a key is activated once, deactivated (DecryptOnly)
// before it is destroyed, never reactivated after deactivation, and nothing
// leaves Destroyed. Destroying a scope walks its active key through
// DecryptOnly first; every step is audited.
var transitions = map[State][]State{
	PreActive:   {Active, Compromised, Destroyed},
	Active:      {Suspended, DecryptOnly, Compromised},
	Suspended:   {Active, DecryptOnly, Compromised},
	DecryptOnly: {Compromised, Destroyed},
	Compromised: {Destroyed},
	Destroyed:   nil,
}

// CanTransition reports whether a key may go from state from to state to.
func CanTransition(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// CanEncrypt reports whether a key in state s may encrypt.
func (s State) CanEncrypt() bool { return s == Active }

// CanDecrypt reports whether a key in state s may decrypt (Compromised
// keys need AllowCompromisedDecryption as well).
func (s State) CanDecrypt() bool { return s == Active || s == DecryptOnly }

// Errors. Test for them with errors.Is.
var (
	// ErrKeyNotFound means the key set or the version does not exist. It
	// matches envelope.ErrKeyNotFound too.
	ErrKeyNotFound error = &sentinel{"keys: key not found", envelope.ErrKeyNotFound}
	// ErrKeyDestroyed means the key was destroyed (crypto-shredded): the
	// data it protected is unrecoverable.
	ErrKeyDestroyed = errors.New("keys: key destroyed")
	// ErrKeyUnusable means the key's state forbids the use: a suspended or
	// compromised key, a pre-active one, a version below the key set's
	// minimum decryption version.
	ErrKeyUnusable = errors.New("keys: key state forbids this use")
	// ErrInvalidTransition means a state change that SP 800-57 (as applied
	// here) does not allow, e.g. destroying the active key.
	ErrInvalidTransition = errors.New("keys: invalid key state transition")
	// ErrConflict means a concurrent change won: the caller may retry.
	ErrConflict = errors.New("keys: concurrent update")
	// ErrAudit means an audit sink failed and the keyring is fail-closed.
	ErrAudit = errors.New("keys: audit failed")
	// ErrInvalidID means a key set's scope or name is malformed: an empty
	// scope (no key is ever chosen for one, so none could be shredded), a
	// reserved scope (ErrReservedScope), or a bad index name (see
	// IndexKeyName).
	ErrInvalidID = errors.New("keys: invalid key id")
	// ErrReservedScope means a scope that begins with ReservedScopePrefix:
	// phicrypt keeps those for its own keys (the audit log's chain key),
	// and no Keyring method creates, uses, rotates, retires or destroys
	// keys there. It matches ErrInvalidID too.
	ErrReservedScope error = &sentinel{"keys: scope reserved for phicrypt", ErrInvalidID}
)

// sentinel is an error value that also matches a more general one.
type sentinel struct {
	msg  string
	also error
}

func (s *sentinel) Error() string { return s.msg }
func (s *sentinel) Unwrap() error { return s.also }

// TransitionError is a refused state change.
type TransitionError struct {
	ID       ID
	Version  uint32
	From, To State
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("keys: %s version %d: cannot go from %v to %v", e.ID.kind(), e.Version, e.From, e.To)
}

// Unwrap returns ErrInvalidTransition.
func (e *TransitionError) Unwrap() error { return ErrInvalidTransition }
