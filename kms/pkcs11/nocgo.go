//go:build !cgo

package pkcs11

import (
	"context"
	"net/url"

	"github.com/phicrypt/phicrypt/kms"
)

// KEK is a key-encryption key on a PKCS#11 token. In a build without cgo
// none can be opened: New fails with ErrNoCgo.
type KEK struct{}

var _ kms.Opener = Open

// New fails with ErrNoCgo: PKCS#11 needs cgo.
func New(ctx context.Context, cfg Config) (*KEK, error) {
	return nil, kms.NewError(ctx, "pkcs11 open", "", kms.ErrInvalidInput, ErrNoCgo)
}

// Open fails with ErrNoCgo: PKCS#11 needs cgo.
func Open(ctx context.Context, u *url.URL) (kms.KEK, error) {
	return nil, kms.NewError(ctx, "pkcs11 open", "", kms.ErrInvalidInput, ErrNoCgo)
}

// GenerateKey fails with ErrNoCgo: PKCS#11 needs cgo.
func GenerateKey(ctx context.Context, cfg Config) (uint32, error) {
	return 0, kms.NewError(ctx, "pkcs11 generate", "", kms.ErrInvalidInput, ErrNoCgo)
}

// KeyID returns "".
func (k *KEK) KeyID() string { return "" }

// Version returns 0.
func (k *KEK) Version() uint32 { return 0 }

// Mechanism returns MechanismAuto.
func (k *KEK) Mechanism() Mechanism { return MechanismAuto }

// Close does nothing.
func (k *KEK) Close() error { return nil }

// Wrap fails with ErrNoCgo.
func (k *KEK) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	return kms.WrappedKey{}, kms.NewError(ctx, "pkcs11 wrap", "", kms.ErrInvalidInput, ErrNoCgo)
}

// Unwrap fails with ErrNoCgo.
func (k *KEK) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	return nil, kms.NewError(ctx, "pkcs11 unwrap", "", kms.ErrInvalidInput, ErrNoCgo)
}
