//go:build cgo

package pkcs11_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/testsvc"
	"github.com/phicrypt/phicrypt/kms/pkcs11"
)

// BenchmarkWrap and BenchmarkUnwrap measure calls per second on SoftHSM2,
// in parallel over the default session pool.
func BenchmarkWrap(b *testing.B) {
	for _, mech := range []pkcs11.Mechanism{pkcs11.MechanismGCM, pkcs11.MechanismKWP} {
		b.Run(mech.String(), func(b *testing.B) {
			k := benchKEK(b, mech)
			dek, aad := make([]byte, 32), []byte("scope=tenant:st-mary")
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := k.Wrap(context.Background(), dek, aad); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkUnwrap(b *testing.B) {
	for _, mech := range []pkcs11.Mechanism{pkcs11.MechanismGCM, pkcs11.MechanismKWP} {
		b.Run(mech.String(), func(b *testing.B) {
			k := benchKEK(b, mech)
			aad := []byte("scope=tenant:st-mary")
			wk, err := k.Wrap(context.Background(), make([]byte, 32), aad)
			require.NoError(b, err)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := k.Unwrap(context.Background(), wk, aad); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func benchKEK(b *testing.B, mech pkcs11.Mechanism) *pkcs11.KEK {
	h := testsvc.StartSoftHSM(b)
	cfg := pkcs11.Config{ModulePath: h.ModulePath, TokenLabel: h.TokenLabel, PIN: h.PIN, KeyLabel: "kek", Mechanism: mech}
	_, err := pkcs11.GenerateKey(context.Background(), cfg)
	require.NoError(b, err)
	k, err := pkcs11.New(context.Background(), cfg)
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, k.Close()) })
	return k
}
