package keys_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/keys"
)

// BenchmarkEncryptionKeyHit is the steady state: the active data key of a
// scope from the cache.
func BenchmarkEncryptionKeyHit(b *testing.B) {
	ctx := context.Background()
	kr := newKeyring(b, keys.Config{})
	_, err := kr.EncryptionKey(ctx, "tenant:st-mary")
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.EncryptionKey(ctx, "tenant:st-mary"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecryptionKeyHit(b *testing.B) {
	ctx := context.Background()
	kr := newKeyring(b, keys.Config{})
	_, err := kr.EncryptionKey(ctx, "tenant:st-mary")
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.DecryptionKey(ctx, "tenant:st-mary", 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecryptionKeyMiss is the miss path with a local KEK and the
// memory store: every call reads the store and unwraps.
func BenchmarkDecryptionKeyMiss(b *testing.B) {
	ctx := context.Background()
	kek, _ := newKEK(b)
	store := keys.NewMemoryStore()
	_, err := newKeyring(b, keys.Config{KEK: kek, Store: store}).EncryptionKey(ctx, "tenant:st-mary")
	require.NoError(b, err)
	cold := newKeyring(b, keys.Config{KEK: kek, Store: store, CacheMaxAge: -1})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cold.DecryptionKey(ctx, "tenant:st-mary", 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSteadyStateKMSCalls encrypts 10,000 values per iteration through
// envelope.Compact and reports the KMS calls they caused (the target is 0).
func BenchmarkSteadyStateKMSCalls(b *testing.B) {
	ctx := context.Background()
	kek, _ := newKEK(b)
	kr := newKeyring(b, keys.Config{KEK: kek})
	c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr})
	require.NoError(b, err)
	bd := binding("tenant:st-mary", "r")
	_, err = c.Encrypt(ctx, []byte("warm"), bd)
	require.NoError(b, err)
	before := kek.Calls()
	dst := make([]byte, 0, 256)
	for b.Loop() {
		for i := 0; i < 10000; i++ {
			if _, err := c.AppendEncrypt(ctx, dst[:0], []byte("999-12-3456"), bd); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(kek.Calls()-before)/float64(b.N), "kms-calls/10k-encryptions")
}

// BenchmarkIndexKeysHit is a warm search's key lookup: the live versions
// of a blind index key, from the cache, without a store call, over the
// memory store and SQLite (where a store call would be SQL).
func BenchmarkIndexKeysHit(b *testing.B) {
	ctx := context.Background()
	for _, name := range []string{"memory", "sqlite"} {
		b.Run(name, func(b *testing.B) {
			kr := newKeyring(b, keys.Config{Store: stores()[name](b)})
			_, err := kr.IndexKeys(ctx, "tenant:st-mary", "patients", "ssn")
			require.NoError(b, err)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := kr.IndexKeys(ctx, "tenant:st-mary", "patients", "ssn"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
