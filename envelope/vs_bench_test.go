package envelope_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/internal/benchcmp"
	"github.com/phicrypt/phicrypt/keys"
)

// BenchmarkVsRaw interleaves each form with raw AES-256-GCM doing the same
// work, and reports their ratio (ours/base) as well as each time per call:
// on a shared machine a ratio of two separate benchmarks drifts with the
// load, one of interleaved calls does not. The raw side seals with a
// random nonce into a reused buffer, with an AAD as long as the Binding's
// encoding and the header (the AAD the compact form authenticates).
func BenchmarkVsRaw(b *testing.B) {
	ctx := context.Background()
	raw := rawGCM(b)
	aad := make([]byte, 8+4*5+len(patientBinding.Scope)+len(patientBinding.Table)+len(patientBinding.Column)+len(patientBinding.RecordID))
	rawDst := make([]byte, 0, 1024)
	rawCT := raw.Seal(nil, nil, field64, aad)
	rawSeal := func() { raw.Seal(rawDst[:0], nil, field64, aad) }
	rawOpen := func() {
		if _, err := raw.Open(rawDst[:0], nil, rawCT, aad); err != nil {
			b.Fatal(err)
		}
	}

	// Compact with this package's test keyring (a map under a lock), and
	// with the keys package's Keyring that applications use (its cache).
	kek, _ := newLocalKEK(b)
	kr, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore()})
	require.NoError(b, err)
	for _, k := range []struct {
		name    string
		keyring envelope.Keyring
	}{{"", newTestKeyring("bench", envelope.AES256GCM)}, {"/keys.Keyring", kr}} {
		c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: k.keyring})
		require.NoError(b, err)
		dst := make([]byte, 0, 1024)
		ct, err := c.Encrypt(ctx, field64, patientBinding)
		require.NoError(b, err)
		b.Run("Compact/AppendEncrypt64"+k.name, func(b *testing.B) {
			benchcmp.Pair(b, 0, func() {
				if _, err := c.AppendEncrypt(ctx, dst[:0], field64, patientBinding); err != nil {
					b.Fatal(err)
				}
			}, rawSeal)
		})
		b.Run("Compact/AppendDecrypt64"+k.name, func(b *testing.B) {
			benchcmp.Pair(b, 0, func() {
				if _, err := c.AppendDecrypt(ctx, dst[:0], ct, patientBinding); err != nil {
					b.Fatal(err)
				}
			}, rawOpen)
		})
	}

	// A 1 MiB stream, against raw AES-256-GCM sealing the same bytes in
	// the same 64 KiB segments into a reused buffer. The stream's figure
	// includes its start: header, key derivation (the data key is
	// cached), buffers.
	const size, segment = 1 << 20, envelope.DefaultStreamSegmentSize
	pt := streamData(size)
	s := newStreamer(b, kek, segment, 0)
	segBuf := make([]byte, 0, segment+raw.Overhead())
	rawSegments := func() {
		for p := pt; len(p) > 0; p = p[min(len(p), segment):] {
			raw.Seal(segBuf[:0], nil, p[:min(len(p), segment)], aad)
		}
	}
	encrypt := func(src func() io.Reader) func() {
		return func() {
			w, err := s.EncryptStream(ctx, io.Discard, documentBinding)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(w, src()); err != nil {
				b.Fatal(err)
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("Stream1MiB/Write", func(b *testing.B) {
		benchcmp.Pair(b, size, encrypt(func() io.Reader { return bytes.NewReader(pt) }), rawSegments)
	})
	b.Run("Stream1MiB/ReadFrom", func(b *testing.B) {
		benchcmp.Pair(b, size, encrypt(func() io.Reader { return readerOnly{bytes.NewReader(pt)} }), rawSegments)
	})
	sealed := encryptAll(b, s, pt, documentBinding)
	rawSealed := [][]byte{}
	for p := pt; len(p) > 0; p = p[min(len(p), segment):] {
		rawSealed = append(rawSealed, raw.Seal(nil, nil, p[:min(len(p), segment)], aad))
	}
	plainBuf := make([]byte, 0, segment)
	b.Run("Stream1MiB/Decrypt", func(b *testing.B) {
		benchcmp.Pair(b, size, func() {
			r, err := s.DecryptStream(ctx, bytes.NewReader(sealed), documentBinding)
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.Copy(io.Discard, r); err != nil || n != size {
				b.Fatal(n, err)
			}
		}, func() {
			for _, c := range rawSealed {
				if _, err := raw.Open(plainBuf[:0], nil, c, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
