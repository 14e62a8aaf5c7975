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
// buffer, with no associated data (Raw/Seal, Raw/Open). Raw/*FromReader
// first read each segment from an io.Reader into a buffer, the copy that
// a stream from a source that can only be read (a file, a network body)
// also makes. Stream figures include the stream's start (header, key
// derivation; the data key is cached). Compare MB/s and B/op; nothing
// asserts a timing.
func BenchmarkStream(b *testing.B) {
	const size, segment = 100 << 20, envelope.DefaultStreamSegmentSize
	ctx := context.Background()
	pt := streamData(size)
	raw := rawGCM(b)
	kek, _ := newLocalKEK(b)
	s := newStreamer(b, kek, segment, 0)
	ct := encryptAll(b, s, pt, documentBinding)

	b.Run("Raw/Seal", func(b *testing.B) {
		buf := make([]byte, 0, segment+raw.Overhead())
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			for p := pt; len(p) > 0; p = p[min(len(p), segment):] {
				raw.Seal(buf[:0], nil, p[:min(len(p), segment)], nil)
			}
		}
	})
	sealed := rawSegments(raw, pt, segment)
	b.Run("Raw/Open", func(b *testing.B) {
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
	b.Run("Raw/SealFromReader", func(b *testing.B) {
		in := make([]byte, segment)
		buf := make([]byte, 0, segment+raw.Overhead())
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			r := bytes.NewReader(pt)
			for {
				n, err := io.ReadFull(r, in)
				if n > 0 {
					raw.Seal(buf[:0], nil, in[:n], nil)
				}
				if err != nil {
					break
				}
			}
		}
	})
	b.Run("Raw/OpenFromReader", func(b *testing.B) {
		all := bytes.Join(sealed, nil)
		in := make([]byte, segment+raw.Overhead())
		buf := make([]byte, 0, segment)
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			r := bytes.NewReader(all)
			for {
				n, err := io.ReadFull(r, in)
				if n > 0 {
					if _, err := raw.Open(buf[:0], nil, in[:n], nil); err != nil {
						b.Fatal(err)
					}
				}
				if err != nil {
					break
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
	b.Run("Encrypt/Write", func(b *testing.B) {
		encrypt(b, func() io.Reader { return bytes.NewReader(pt) })
	})
	// From a reader without WriteTo (a file, a network body), io.Copy
	// uses the writer's ReadFrom: one copy into its buffer.
	b.Run("Encrypt/ReadFrom", func(b *testing.B) {
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
	// io.Copy uses the reader's WriteTo, which takes the bytes.Reader's
	// slice and opens segments where they lie.
	b.Run("Decrypt/WriteTo", func(b *testing.B) {
		decrypt(b, func(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) })
	})
	// From a source without WriteTo (a file, a response body), WriteTo
	// reads into the reader's buffer: one copy.
	b.Run("Decrypt/WriteToFromReader", func(b *testing.B) {
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			r, err := s.DecryptStream(ctx, readerOnly{bytes.NewReader(ct)}, documentBinding)
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.Copy(io.Discard, r); err != nil || n != size {
				b.Fatal(n, err)
			}
		}
	})
	// Reads of a segment or more decrypt straight into the caller's
	// buffer, after one copy from the source into the reader's.
	b.Run("Decrypt/Read64KiB", func(b *testing.B) {
		buf := make([]byte, segment)
		decrypt(b, func(r io.Reader) (int64, error) { return io.CopyBuffer(writerOnly{io.Discard}, readerOnly{r}, buf) })
	})
	// io.Copy's default 32 KiB reads: the reader copies out of its
	// buffer.
	b.Run("Decrypt/Read32KiB", func(b *testing.B) {
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
