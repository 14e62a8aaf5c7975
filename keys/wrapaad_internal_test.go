package keys

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/phicrypt/phicrypt/envelope"
)

// TestWrapAADBindsIdentity checks that a stored key's AAD names its scope,
// key set name, version and suite unambiguously, so that a wrapped key
// copied to another row fails to unwrap even if the metadata MAC did not
// catch the copy.
func TestWrapAADBindsIdentity(t *testing.T) {
	base := wrapAAD(ID{Scope: "tenant:a", Name: "data"}, 1, envelope.AES256GCM)
	for name, other := range map[string][]byte{
		"scope":   wrapAAD(ID{Scope: "tenant:b", Name: "data"}, 1, envelope.AES256GCM),
		"name":    wrapAAD(ID{Scope: "tenant:a", Name: "index/patients/ssn"}, 1, envelope.AES256GCM),
		"version": wrapAAD(ID{Scope: "tenant:a", Name: "data"}, 2, envelope.AES256GCM),
		"suite":   wrapAAD(ID{Scope: "tenant:a", Name: "data"}, 1, envelope.XChaCha20Poly1305),
		"shifted": wrapAAD(ID{Scope: "tenant:ad", Name: "ata"}, 1, envelope.AES256GCM),
	} {
		assert.NotEqual(t, base, other, name)
	}
}
