//go:build cgo

package pkcs11

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// LoadedModules returns the number of PKCS#11 modules this package holds
// loaded, so that tests can check that every KEK was closed.
func LoadedModules() int {
	modules.Lock()
	defer modules.Unlock()
	return len(modules.m)
}

// OpenSessions returns the number of sessions k has open.
func OpenSessions(k *KEK) int { return len(k.pool.slots) }

// HoldSession takes a session of k's pool until the returned function is
// called.
func HoldSession(t *testing.T, k *KEK) (release func()) {
	s, err := k.pool.get(context.Background())
	require.NoError(t, err)
	return func() { k.pool.put(s, true) }
}
