package envelope_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"testing"

	"github.com/stretchr/testify/require"
	tinkaead "github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/phicrypt/phicrypt/envelope"
)

// The benchmarks compare, in one run, each form against the raw standard
// library AEAD and against Tink's KMS envelope AEAD. Compare ns/op side by
// side; nothing here asserts a timing.

var field64 = []byte("Lemuel304 MacGyver246, 999-12-3456, 1972-03-14, Boston MA 02118")

func rawGCM(b *testing.B) cipher.AEAD {
	blk, err := aes.NewCipher(make([]byte, 32))
	require.NoError(b, err)
	a, err := cipher.NewGCMWithRandomNonce(blk)
	require.NoError(b, err)
	return a
}

// BenchmarkRaw is the baseline: AES-256-GCM with a random nonce sealing into
// a reused buffer, without and with an AAD the size of a Binding.
func BenchmarkRaw(b *testing.B) {
	a := rawGCM(b)
	dst := make([]byte, 0, 1<<21)
	aad := make([]byte, 8+4*5+len(patientBinding.Scope)+len(patientBinding.Table)+len(patientBinding.Column)+len(patientBinding.RecordID))
	ct := a.Seal(nil, nil, field64, aad)
	b.Run("Seal64", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			a.Seal(dst[:0], nil, field64, nil)
		}
	})
	b.Run("Seal64AAD", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			a.Seal(dst[:0], nil, field64, aad)
		}
	})
	b.Run("Seal64AADAlloc", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			a.Seal(nil, nil, field64, aad)
		}
	})
	b.Run("Open64AAD", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.Open(dst[:0], nil, ct, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	big := make([]byte, 1<<20)
	b.Run("Seal1MiB", func(b *testing.B) {
		b.SetBytes(int64(len(big)))
		for b.Loop() {
			a.Seal(dst[:0], nil, big, aad)
		}
	})
	b.Run("Seal1MiBAlloc", func(b *testing.B) {
		b.SetBytes(int64(len(big)))
		b.ReportAllocs()
		for b.Loop() {
			a.Seal(nil, nil, big, aad)
		}
	})
}

func BenchmarkCompact(b *testing.B) {
	ctx := context.Background()
	for _, enc := range []struct {
		name string
		enc  envelope.Encoding
	}{{"Binary", envelope.Binary}, {"Text", envelope.Text}} {
		c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: newTestKeyring("bench", envelope.AES256GCM), Encoding: enc.enc})
		require.NoError(b, err)
		ct, err := c.Encrypt(ctx, field64, patientBinding)
		require.NoError(b, err)
		b.Run("Encrypt64"+enc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Encrypt(ctx, field64, patientBinding); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("AppendEncrypt64"+enc.name, func(b *testing.B) {
			dst := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.AppendEncrypt(ctx, dst[:0], field64, patientBinding); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Decrypt64"+enc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Decrypt(ctx, ct, patientBinding); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: newTestKeyring("bench", envelope.AES256GCM)})
	require.NoError(b, err)
	big := make([]byte, 1<<20)
	ct, err := c.Encrypt(ctx, big, patientBinding)
	require.NoError(b, err)
	b.Run("Encrypt1MiB", func(b *testing.B) {
		b.SetBytes(int64(len(big)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Encrypt(ctx, big, patientBinding); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendEncrypt1MiB", func(b *testing.B) {
		dst := make([]byte, 0, 2<<20)
		b.SetBytes(int64(len(big)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.AppendEncrypt(ctx, dst[:0], big, patientBinding); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Decrypt1MiB", func(b *testing.B) {
		b.SetBytes(int64(len(big)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Decrypt(ctx, ct, patientBinding); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendDecrypt1MiB", func(b *testing.B) {
		dst := make([]byte, 0, 2<<20)
		b.SetBytes(int64(len(big)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.AppendDecrypt(ctx, dst[:0], ct, patientBinding); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSelfContained(b *testing.B) {
	ctx := context.Background()
	kek, _ := newLocalKEK(b)
	cached, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek})
	require.NoError(b, err)
	perValue, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, DataKeyMaxAge: -1, CacheMaxAge: -1})
	require.NoError(b, err)
	ct, err := cached.Encrypt(ctx, field64, patientBinding)
	require.NoError(b, err)
	b.Run("Encrypt64Cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cached.Encrypt(ctx, field64, patientBinding); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendEncrypt64Cached", func(b *testing.B) {
		dst := make([]byte, 0, 1024)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cached.AppendEncrypt(ctx, dst[:0], field64, patientBinding); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Decrypt64Cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cached.Decrypt(ctx, ct, patientBinding); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Encrypt64NewDataKeyPerValue", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := perValue.Encrypt(ctx, field64, patientBinding); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTinkKMSEnvelopeAEAD is Tink's envelope AEAD with a local AES-GCM
// "remote" KEK: a new data key and a KEK call for every value.
func BenchmarkTinkKMSEnvelopeAEAD(b *testing.B) {
	h, err := keyset.NewHandle(tinkaead.AES256GCMKeyTemplate())
	require.NoError(b, err)
	kek, err := tinkaead.New(h)
	require.NoError(b, err)
	env := tinkaead.NewKMSEnvelopeAEAD2(tinkaead.AES256GCMKeyTemplate(), kek)
	aad := []byte(patientBinding.Scope + patientBinding.Table + patientBinding.Column + patientBinding.RecordID)
	ct, err := env.Encrypt(field64, aad)
	require.NoError(b, err)
	b.Run("Encrypt64", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := env.Encrypt(field64, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Decrypt64", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := env.Decrypt(ct, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
}
