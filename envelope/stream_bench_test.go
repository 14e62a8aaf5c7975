package envelope_test

import (
	"bytes"
	"context"
	"crypto/cipher"
	"io"
	"testing"

	"github.com/phicrypt/phicrypt/envelope"
)

// BenchmarkStream compares, in one run, streaming 100 MiB in 64 KiB
// segments with the baseline: raw AES-256-GCM with random nonces sealing
// (or opening) the same bytes in the same segment size into a reused
// buffer, with no associated data. Stream figures include the stream's
// start (header, key derivation; the data key is cached) and its copies
// through io.Copy. Compare MB/s and B/op; nothing asserts a timing.
func BenchmarkStream(b *testing.B) {
	const size, segment = 100 << 20, envelope.DefaultStreamSegmentSize
	ctx := context.Background()
	pt := streamData(size)
	raw := rawGCM(b)
	kek, _ := newLocalKEK(b)
	s := newStreamer(b, kek, segment, 0)
	ct := encryptAll(b, s, pt, documentBinding)

	b.Run("RawSeal100MiB", func(b *testing.B) {
		buf := make([]byte, 0, segment+raw.Overhead())
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			for p := pt; len(p) > 0; p = p[min(len(p), segment):] {
				raw.Seal(buf[:0], nil, p[:min(len(p), segment)], nil)
			}
		}
	})
	b.Run("RawOpen100MiB", func(b *testing.B) {
		sealed := rawSegments(raw, pt, segment)
		buf := make([]byte, 0, segment)
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			for _, c := range sealed {
				if _, err := raw.Open(buf[:0], nil, c, nil); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	encrypt := func(b *testing.B, src func() io.Reader) {
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
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
	// io.Copy from a bytes.Reader hands the writer all 100 MiB in one
	// Write: segments are sealed from the caller's slice.
	b.Run("Encrypt100MiB/Write", func(b *testing.B) {
		encrypt(b, func() io.Reader { return bytes.NewReader(pt) })
	})
	// From a reader without WriteTo (a file, a network body), io.Copy
	// uses the writer's ReadFrom: one copy into its buffer.
	b.Run("Encrypt100MiB/ReadFrom", func(b *testing.B) {
		encrypt(b, func() io.Reader { return readerOnly{bytes.NewReader(pt)} })
	})
	decrypt := func(b *testing.B, copyOut func(r io.Reader) (int64, error)) {
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			r, err := s.DecryptStream(ctx, bytes.NewReader(ct), documentBinding)
			if err != nil {
				b.Fatal(err)
			}
			if n, err := copyOut(r); err != nil || n != size {
				b.Fatal(n, err)
			}
		}
	}
	// io.Copy uses the reader's WriteTo.
	b.Run("Decrypt100MiB/WriteTo", func(b *testing.B) {
		decrypt(b, func(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) })
	})
	// Reads of a segment or more decrypt straight into the caller's
	// buffer.
	b.Run("Decrypt100MiB/Read64KiB", func(b *testing.B) {
		buf := make([]byte, segment)
		decrypt(b, func(r io.Reader) (int64, error) { return io.CopyBuffer(writerOnly{io.Discard}, readerOnly{r}, buf) })
	})
	// io.Copy's default 32 KiB reads: the reader copies out of its
	// buffer.
	b.Run("Decrypt100MiB/Read32KiB", func(b *testing.B) {
		buf := make([]byte, 32<<10)
		decrypt(b, func(r io.Reader) (int64, error) { return io.CopyBuffer(writerOnly{io.Discard}, readerOnly{r}, buf) })
	})
}

// rawSegments seals pt in segments of the given size with a.
func rawSegments(a cipher.AEAD, pt []byte, segment int) [][]byte {
	var out [][]byte
	for p := pt; len(p) > 0; p = p[min(len(p), segment):] {
		out = append(out, a.Seal(nil, nil, p[:min(len(p), segment)], nil))
	}
	return out
}

// readerOnly and writerOnly hide io.Copy's fast paths (WriterTo,
// ReaderFrom).
type readerOnly struct{ io.Reader }

type writerOnly struct{ io.Writer }
