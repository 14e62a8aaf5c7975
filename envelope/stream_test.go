package envelope_test

import (
	"bytes"
	"context"
	"crypto/fips140"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/internal/testsvc"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
)

// testSegment is the segment size of most stream tests: the smallest, so
// that streams of several segments stay small enough to attack byte by
// byte.
const testSegment = envelope.MinStreamSegmentSize

var documentBinding = envelope.Binding{
	Scope:    "tenant:st-mary",
	Table:    "document_reference",
	Column:   "content",
	RecordID: "3f1c9a8e-6b2d-4e57-9c0a-1d2e3f4a5b6c",
	Extra:    []envelope.Attr{{Key: "content-type", Value: "application/pdf"}},
}

// streamData returns n deterministic pseudo-random bytes.
func streamData(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{'p', 'h', 'i'}).Read(b)
	return b
}

// newStreamer returns a SelfContained over kek with the given segment size
// and suite (0: the defaults).
func newStreamer(t testing.TB, kek kms.KEK, segment int, suite envelope.Suite) *envelope.SelfContained {
	t.Helper()
	s, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, StreamSegmentSize: segment, Suite: suite})
	require.NoError(t, err)
	return s
}

// encryptAll encrypts pt as one stream, with a single Write.
func encryptAll(t testing.TB, s *envelope.SelfContained, pt []byte, b envelope.Binding) []byte {
	t.Helper()
	var ct bytes.Buffer
	w, err := s.EncryptStream(context.Background(), &ct, b)
	require.NoError(t, err)
	n, err := w.Write(pt)
	require.NoError(t, err)
	require.Equal(t, len(pt), n)
	require.NoError(t, w.Close())
	return ct.Bytes()
}

// streamSuites returns the suites to test streams with: XChaCha20-Poly1305
// only outside FIPS mode, where NewSelfContained refuses it (checked by
// TestStreamSuites).
func streamSuites() []envelope.Suite {
	if fips140.Enabled() {
		return []envelope.Suite{envelope.AES256GCM}
	}
	return []envelope.Suite{envelope.AES256GCM, envelope.XChaCha20Poly1305}
}

// overheadOf is the nonce and tag size of a segment.
func overheadOf(s envelope.Suite) int {
	if s == envelope.XChaCha20Poly1305 {
		return 24 + 16
	}
	return 12 + 16
}

// segments splits stream ct into its header and its sealed segments.
func segments(t testing.TB, ct []byte, segment int, suite envelope.Suite) (hdr []byte, segs [][]byte) {
	t.Helper()
	h := streamHeaderSize(t, ct)
	hdr, rest := ct[:h], ct[h:]
	full := segment + overheadOf(suite)
	for len(rest) > full {
		segs = append(segs, rest[:full])
		rest = rest[full:]
	}
	return hdr, append(segs, rest)
}

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// readerOnly and writerOnly hide io.Copy's fast paths (WriterTo,
// ReaderFrom).
type readerOnly struct{ io.Reader }

type writerOnly struct{ io.Writer }

// piecewise is a source that pushes its bytes in pieces of random sizes
// through WriteTo, as a bufio.Reader or a network body might.
type piecewise struct {
	data []byte
	rng  *rand.Rand
}

func (p *piecewise) Read(b []byte) (int, error) {
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.data)
	p.data = p.data[n:]
	return n, nil
}

func (p *piecewise) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for len(p.data) > 0 {
		n := min(len(p.data), 1+p.rng.IntN(3*testSegment))
		m, err := w.Write(p.data[:n])
		total += int64(m)
		p.data = p.data[m:]
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// decryptModes are the reader's ways of taking a stream: Read pulls it one
// segment at a time; WriteTo (through io.Copy) takes it from a source that
// pushes it whole (bytes.Reader), in pieces, or that can only be read.
// Each returns what the reader released, also on failure.
var decryptModes = map[string]func(ctx context.Context, s *envelope.SelfContained, ct []byte, b envelope.Binding) ([]byte, error){
	"Read": func(ctx context.Context, s *envelope.SelfContained, ct []byte, b envelope.Binding) ([]byte, error) {
		r, err := s.DecryptStream(ctx, bytes.NewReader(ct), b)
		if err != nil {
			return nil, err
		}
		return io.ReadAll(r)
	},
	"WriteTo": func(ctx context.Context, s *envelope.SelfContained, ct []byte, b envelope.Binding) ([]byte, error) {
		return copyFrom(ctx, s, bytes.NewReader(ct), b)
	},
	"WriteTo/pieces": func(ctx context.Context, s *envelope.SelfContained, ct []byte, b envelope.Binding) ([]byte, error) {
		return copyFrom(ctx, s, &piecewise{data: ct, rng: rand.New(rand.NewPCG(uint64(len(ct)), 7))}, b)
	},
	"WriteTo/read-only source": func(ctx context.Context, s *envelope.SelfContained, ct []byte, b envelope.Binding) ([]byte, error) {
		return copyFrom(ctx, s, readerOnly{bytes.NewReader(ct)}, b)
	},
}

// copyFrom decrypts src with io.Copy, which uses the reader's WriteTo.
func copyFrom(ctx context.Context, s *envelope.SelfContained, src io.Reader, b envelope.Binding) ([]byte, error) {
	r, err := s.DecryptStream(ctx, src, b)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	_, err = io.Copy(&out, r)
	return out.Bytes(), err
}

func TestStreamRoundTrip(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	for _, suite := range streamSuites() {
		for _, segment := range []int{testSegment, 1000, envelope.DefaultStreamSegmentSize} {
			s := newStreamer(t, kek, segment, suite)
			for _, n := range []int{0, 1, segment - 1, segment, segment + 1, 2 * segment, 2*segment + 1, 3 * segment, 3*segment + 1, 10*segment + 7} {
				t.Run(fmt.Sprintf("%v/segment=%d/n=%d", suite, segment, n), func(t *testing.T) {
					pt := streamData(n)
					ct := encryptAll(t, s, pt, documentBinding)
					info, err := envelope.Inspect(ct)
					require.NoError(t, err)
					assert.Equal(t, envelope.Info{Form: envelope.StreamForm, Suite: suite, KEKID: kek.KeyID(), PlaintextSize: -1, SegmentSize: segment}, info)
					// Every segment but the last is full; the last holds
					// 1..segment bytes, or none in an empty stream.
					hdr, segs := segments(t, ct, segment, suite)
					assert.Len(t, segs, max(1, (n+segment-1)/segment))
					assert.Equal(t, len(hdr)+n+len(segs)*overheadOf(suite), len(ct))
					if n >= 16 {
						assert.False(t, bytes.Contains(ct, pt[:16]), "stream contains plaintext")
					}
					for mode, decrypt := range decryptModes {
						got, err := decrypt(ctx, s, ct, documentBinding)
						require.NoError(t, err, mode)
						assert.True(t, bytes.Equal(pt, got), mode)
					}
				})
			}
		}
	}
}

// TestStreamAttacks runs STREAM's attacks against streams of four
// segments: truncation anywhere, dropped, reordered, duplicated and foreign
// segments, appended data, bit flips in every part and changed bindings.
// Each must fail, with ErrDecrypt once the header is intact; and whatever a
// failing reader returned before its error must be whole, authentic
// segments of the original.
func TestStreamAttacks(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	for _, suite := range streamSuites() {
		t.Run(suite.String(), func(t *testing.T) {
			s := newStreamer(t, kek, testSegment, suite)
			pt := streamData(3*testSegment + 100)
			ct := encryptAll(t, s, pt, documentBinding)
			hdr, segs := segments(t, ct, testSegment, suite)
			require.Len(t, segs, 4)
			// Another stream of the same data key and binding: same
			// wrapped key, another salt.
			other := encryptAll(t, s, pt, documentBinding)
			otherHdr, otherSegs := segments(t, other, testSegment, suite)
			require.Len(t, otherSegs, 4)
			require.Equal(t, hdr[:len(hdr)-32], otherHdr[:len(otherHdr)-32], "streams share the cached data key")
			require.NotEqual(t, hdr, otherHdr, "each stream has its own salt")

			// try decrypts a variant in every mode, checks the failure
			// and what was released before it.
			try := func(what string, variant []byte, b envelope.Binding, want error) {
				t.Helper()
				for mode, decrypt := range decryptModes {
					got, err := decrypt(ctx, s, variant, b)
					require.Error(t, err, "%s, %s: a modified stream decrypted", what, mode)
					if want != nil {
						require.ErrorIs(t, err, want, "%s, %s", what, mode)
					} else if k := classify(err); k == "" || k == "success" {
						t.Fatalf("%s, %s: untyped error %v", what, mode, err)
					}
					require.Zero(t, len(got)%testSegment, "%s, %s: released part of a segment", what, mode)
					require.True(t, bytes.Equal(pt[:len(got)], got), "%s, %s: released plaintext that is not the original's", what, mode)
				}
			}

			for n := 0; n < len(ct); n++ {
				want := envelope.ErrDecrypt
				if n < len(hdr) {
					want = nil // a damaged header: ErrNotEncrypted or a FormatError
				}
				try(fmt.Sprintf("truncated to %d", n), ct[:n], documentBinding, want)
			}
			var fe *envelope.FormatError
			_, err := s.DecryptStream(ctx, bytes.NewReader(ct[:len(hdr)-1]), documentBinding)
			assert.ErrorAs(t, err, &fe, "cut in the header")
			_, err = s.DecryptStream(ctx, bytes.NewReader(nil), documentBinding)
			assert.ErrorIs(t, err, envelope.ErrNotEncrypted, "empty input")

			attacks := map[string][]byte{
				"header only":              hdr,
				"final segment dropped":    join(hdr, segs[0], segs[1], segs[2]),
				"first segment dropped":    join(hdr, segs[1], segs[2], segs[3]),
				"middle segment dropped":   join(hdr, segs[0], segs[2], segs[3]),
				"segments 0 and 1 swapped": join(hdr, segs[1], segs[0], segs[2], segs[3]),
				"segments 1 and 2 swapped": join(hdr, segs[0], segs[2], segs[1], segs[3]),
				"final moved forward":      join(hdr, segs[0], segs[1], segs[3], segs[2]),
				"segment 1 duplicated":     join(hdr, segs[0], segs[1], segs[1], segs[2], segs[3]),
				"segment 0 repeated last":  join(hdr, segs[0], segs[1], segs[2], segs[0]),
				"final duplicated":         join(hdr, segs[0], segs[1], segs[2], segs[3], segs[3]),
				"byte appended":            join(ct, []byte{0}),
				"segment appended":         join(ct, segs[1]),
				"empty segment appended":   join(ct, make([]byte, overheadOf(suite))),
				"other stream's header":    join(otherHdr, segs[0], segs[1], segs[2], segs[3]),
				"other stream's final":     join(hdr, segs[0], segs[1], segs[2], otherSegs[3]),
				"other stream appended":    join(ct, otherSegs[0]),
			}
			for i := range segs {
				swapped := append([][]byte{hdr}, segs...)
				swapped[1+i] = otherSegs[i]
				attacks[fmt.Sprintf("segment %d from the other stream", i)] = join(swapped...)
			}
			for what, variant := range attacks {
				try(what, variant, documentBinding, envelope.ErrDecrypt)
			}

			// Every bit of the header, and of each segment's nonce,
			// ciphertext and tag.
			nonce := overheadOf(suite) - 16
			for i := range ct {
				part := "header"
				var want error
				if i >= len(hdr) {
					want = envelope.ErrDecrypt
					at := (i - len(hdr)) % (testSegment + overheadOf(suite))
					part = "ciphertext"
					switch {
					case at < nonce:
						part = "nonce"
					case i >= len(ct)-16 || at >= nonce+testSegment:
						part = "tag"
					}
				}
				for bit := range 8 {
					v := bytes.Clone(ct)
					v[i] ^= 1 << bit
					try(fmt.Sprintf("%s byte %d bit %d flipped", part, i, bit), v, documentBinding, want)
				}
			}

			for what, change := range map[string]func(*envelope.Binding){
				"scope":       func(b *envelope.Binding) { b.Scope = "tenant:other" },
				"table":       func(b *envelope.Binding) { b.Table = "patients" },
				"column":      func(b *envelope.Binding) { b.Column = "notes" },
				"record id":   func(b *envelope.Binding) { b.RecordID = "another-document" },
				"extra value": func(b *envelope.Binding) { b.Extra = []envelope.Attr{{Key: "content-type", Value: "image/png"}} },
				"extra gone":  func(b *envelope.Binding) { b.Extra = nil },
			} {
				b := documentBinding
				change(&b)
				try("binding "+what+" changed", ct, b, envelope.ErrDecrypt)
			}
		})
	}
}

// TestStreamChunking writes and reads streams in every pattern: one byte at
// a time, random sizes, through ReadFrom and WriteTo, and with small read
// buffers. All give the same plaintext, and the same layout.
func TestStreamChunking(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	s := newStreamer(t, kek, 1000, 0)
	pt := streamData(7*1000 + 123)
	rng := rand.New(rand.NewPCG(1, 2))
	writers := map[string]func(w io.Writer) error{
		"one write": func(w io.Writer) error { _, err := w.Write(pt); return err },
		"byte by byte": func(w io.Writer) error {
			for i := range pt {
				if _, err := w.Write(pt[i : i+1]); err != nil {
					return err
				}
			}
			return nil
		},
		"random sizes": func(w io.Writer) error {
			for p := pt; len(p) > 0; {
				n := min(len(p), rng.IntN(2500))
				if _, err := w.Write(p[:n]); err != nil {
					return err
				}
				p = p[n:]
			}
			return nil
		},
		"exact segments": func(w io.Writer) error {
			for p := pt; len(p) > 0; p = p[min(len(p), 1000):] {
				if _, err := w.Write(p[:min(len(p), 1000)]); err != nil {
					return err
				}
			}
			return nil
		},
		"ReadFrom": func(w io.Writer) error {
			n, err := w.(io.ReaderFrom).ReadFrom(bytes.NewReader(pt))
			assert.Equal(t, int64(len(pt)), n)
			return err
		},
		"ReadFrom one byte reads": func(w io.Writer) error {
			_, err := w.(io.ReaderFrom).ReadFrom(iotest.OneByteReader(bytes.NewReader(pt)))
			return err
		},
		"ReadFrom data with EOF": func(w io.Writer) error {
			_, err := w.(io.ReaderFrom).ReadFrom(iotest.DataErrReader(iotest.HalfReader(bytes.NewReader(pt))))
			return err
		},
		"Write then ReadFrom": func(w io.Writer) error {
			if _, err := w.Write(pt[:1000]); err != nil { // a full segment held back
				return err
			}
			_, err := w.(io.ReaderFrom).ReadFrom(bytes.NewReader(pt[1000:]))
			return err
		},
		"io.Copy": func(w io.Writer) error { _, err := io.Copy(w, bytes.NewReader(pt)); return err },
	}
	var reference []byte
	for name, write := range writers {
		var buf bytes.Buffer
		w, err := s.EncryptStream(ctx, &buf, documentBinding)
		require.NoError(t, err)
		require.NoError(t, write(w), name)
		require.NoError(t, w.Close(), name)
		got, err := decryptAll(ctx, s, buf.Bytes(), documentBinding)
		require.NoError(t, err, name)
		require.Equal(t, pt, got, name)
		if reference == nil {
			reference = buf.Bytes()
		}
		assert.Len(t, buf.Bytes(), len(reference), "%s: segmentation must not depend on write sizes", name)
	}

	ct := reference
	readers := map[string]func(r io.Reader) ([]byte, error){
		"ReadAll":        io.ReadAll,
		"one byte reads": func(r io.Reader) ([]byte, error) { return io.ReadAll(iotest.OneByteReader(r)) },
		"half reads":     func(r io.Reader) ([]byte, error) { return io.ReadAll(iotest.HalfReader(r)) },
		"WriteTo": func(r io.Reader) ([]byte, error) {
			var out bytes.Buffer
			_, err := r.(io.WriterTo).WriteTo(&out)
			return out.Bytes(), err
		},
		"7-byte buffer":        func(r io.Reader) ([]byte, error) { return readWith(r, 7) },
		"segment-1 buffer":     func(r io.Reader) ([]byte, error) { return readWith(r, 999) },
		"segment buffer":       func(r io.Reader) ([]byte, error) { return readWith(r, 1000) },
		"segment+1 buffer":     func(r io.Reader) ([]byte, error) { return readWith(r, 1001) },
		"large buffer":         func(r io.Reader) ([]byte, error) { return readWith(r, 1<<16) },
		"Read then WriteTo":    func(r io.Reader) ([]byte, error) { return readThenWriteTo(r, 10) },
		"Read 1500 WriteTo":    func(r io.Reader) ([]byte, error) { return readThenWriteTo(r, 1500) },
		"source one byte":      nil, // the stream arrives one byte at a time
		"source half reads":    nil,
		"source data with EOF": nil,
		"WriteTo one byte":     nil,
		"WriteTo pieces":       nil,
		"Read, WriteTo pieces": nil,
	}
	sources := map[string]func(io.Reader) io.Reader{
		"source one byte":      iotest.OneByteReader,
		"source half reads":    iotest.HalfReader,
		"source data with EOF": iotest.DataErrReader,
		"WriteTo one byte":     iotest.OneByteReader,
		"WriteTo pieces":       func(io.Reader) io.Reader { return &piecewise{data: ct, rng: rand.New(rand.NewPCG(3, 4))} },
		"Read, WriteTo pieces": func(io.Reader) io.Reader { return &piecewise{data: ct, rng: rand.New(rand.NewPCG(5, 6))} },
	}
	for name, read := range readers {
		var src io.Reader = bytes.NewReader(ct)
		if wrap := sources[name]; wrap != nil {
			src, read = wrap(src), io.ReadAll
			switch name {
			case "WriteTo one byte", "WriteTo pieces":
				read = func(r io.Reader) ([]byte, error) { return readThenWriteTo(r, 0) }
			case "Read, WriteTo pieces":
				read = func(r io.Reader) ([]byte, error) { return readThenWriteTo(r, 2100) }
			}
		}
		r, err := s.DecryptStream(ctx, src, documentBinding)
		require.NoError(t, err, name)
		got, err := read(r)
		require.NoError(t, err, name)
		require.Equal(t, pt, got, name)
	}

	r, err := s.DecryptStream(ctx, bytes.NewReader(ct), documentBinding)
	require.NoError(t, err)
	assert.NoError(t, iotest.TestReader(r, pt))
}

// readWith reads r to the end with reads of n bytes.
func readWith(r io.Reader, n int) ([]byte, error) {
	var out []byte
	buf := make([]byte, n)
	for {
		m, err := r.Read(buf)
		out = append(out, buf[:m]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// readThenWriteTo reads n bytes, then the rest with WriteTo.
func readThenWriteTo(r io.Reader, n int) ([]byte, error) {
	head := make([]byte, n)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.Write(head)
	_, err := r.(io.WriterTo).WriteTo(&out)
	return out.Bytes(), err
}

// cancelAfterWrite cancels a context on its first write.
type cancelAfterWrite struct{ cancel context.CancelFunc }

func (c cancelAfterWrite) Write(p []byte) (int, error) {
	c.cancel()
	return len(p), nil
}

// failingWriter fails every write after the first n bytes.
type failingWriter struct {
	n   int
	buf bytes.Buffer
	err error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.buf.Len()+len(p) > w.n {
		return 0, w.err
	}
	return w.buf.Write(p)
}

func TestStreamWriterErrors(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	s := newStreamer(t, kek, testSegment, 0)
	pt := streamData(5 * testSegment)

	// Nothing is final until Close.
	var buf bytes.Buffer
	w, err := s.EncryptStream(ctx, &buf, documentBinding)
	require.NoError(t, err)
	_, err = w.Write(pt)
	require.NoError(t, err)
	_, err = decryptAll(ctx, s, buf.Bytes(), documentBinding)
	assert.ErrorIs(t, err, envelope.ErrDecrypt, "an unclosed stream must not decrypt")
	require.NoError(t, w.Close())
	assert.NoError(t, w.Close(), "a second Close returns the first's result")
	n, err := w.Write([]byte("more"))
	assert.ErrorIs(t, err, envelope.ErrStreamClosed)
	assert.Zero(t, n)
	_, err = w.(io.ReaderFrom).ReadFrom(bytes.NewReader(pt))
	assert.ErrorIs(t, err, envelope.ErrStreamClosed)
	got, err := decryptAll(ctx, s, buf.Bytes(), documentBinding)
	require.NoError(t, err)
	assert.Equal(t, pt, got)

	// A failing destination: the error surfaces and sticks, and what was
	// written does not decrypt.
	boom := errors.New("disk full")
	fw := &failingWriter{n: 1000, err: boom}
	w, err = s.EncryptStream(ctx, fw, documentBinding)
	require.NoError(t, err)
	_, err = w.Write(pt)
	assert.ErrorIs(t, err, boom)
	_, err = w.Write([]byte("x"))
	assert.ErrorIs(t, err, boom, "errors are sticky")
	assert.ErrorIs(t, w.Close(), boom)
	_, err = decryptAll(ctx, s, fw.buf.Bytes(), documentBinding)
	assert.ErrorIs(t, err, envelope.ErrDecrypt)

	_, err = s.EncryptStream(ctx, &failingWriter{err: boom}, documentBinding)
	assert.ErrorIs(t, err, boom, "the header write fails")

	rerr := errors.New("source broke")
	w, err = s.EncryptStream(ctx, io.Discard, documentBinding)
	require.NoError(t, err)
	_, err = w.(io.ReaderFrom).ReadFrom(io.MultiReader(bytes.NewReader(pt[:300]), iotest.ErrReader(rerr)))
	assert.ErrorIs(t, err, rerr, "ReadFrom returns the source's error")

	// Cancelling the context stops the stream before the next segment,
	// and Close then writes no final segment.
	cctx, cancel := context.WithCancel(ctx)
	buf.Reset()
	w, err = s.EncryptStream(cctx, &buf, documentBinding)
	require.NoError(t, err)
	_, err = w.Write(pt[:2*testSegment])
	require.NoError(t, err)
	cancel()
	_, err = w.Write(pt[2*testSegment:])
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, w.Close(), context.Canceled)
	_, err = decryptAll(ctx, s, buf.Bytes(), documentBinding)
	assert.ErrorIs(t, err, envelope.ErrDecrypt)
	_, err = s.EncryptStream(cctx, &buf, documentBinding)
	assert.ErrorIs(t, err, context.Canceled)
	cctx, cancel = context.WithCancel(ctx)
	w, err = s.EncryptStream(cctx, &buf, documentBinding)
	require.NoError(t, err)
	cancel()
	assert.ErrorIs(t, w.Close(), context.Canceled, "an empty stream is sealed at Close too")

	_, err = s.EncryptStream(ctx, &buf, envelope.Binding{})
	assert.ErrorIs(t, err, envelope.ErrInvalidBinding)
	_, err = s.DecryptStream(ctx, bytes.NewReader(buf.Bytes()), envelope.Binding{})
	assert.ErrorIs(t, err, envelope.ErrInvalidBinding)
}

func TestStreamReaderErrors(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	s := newStreamer(t, kek, testSegment, 0)
	pt := streamData(4 * testSegment)
	ct := encryptAll(t, s, pt, documentBinding)

	for _, in := range []string{"", "999-12-3456", "%PDF-1.7", "\xf4\x01\x03"} {
		_, err := s.DecryptStream(ctx, bytes.NewReader([]byte(in)), documentBinding)
		assert.ErrorIs(t, err, envelope.ErrNotEncrypted, "%q", in)
	}

	// Values of the other forms are not streams, nor the reverse.
	value, err := s.Encrypt(ctx, []byte("x"), documentBinding)
	require.NoError(t, err)
	compact, err := envelope.NewCompact(envelope.CompactConfig{Keyring: newTestKeyring("stream", envelope.AES256GCM)})
	require.NoError(t, err)
	cvalue, err := compact.Encrypt(ctx, []byte("x"), documentBinding)
	require.NoError(t, err)
	for name, v := range map[string][]byte{"self-contained": value, "compact": cvalue} {
		_, err = s.DecryptStream(ctx, bytes.NewReader(v), documentBinding)
		var fe *envelope.FormatError
		assert.ErrorAs(t, err, &fe, name)
		assert.ErrorIs(t, err, envelope.ErrWrongForm, name)
	}
	_, err = s.Decrypt(ctx, ct, documentBinding)
	assert.ErrorIs(t, err, envelope.ErrWrongForm)
	_, err = compact.Decrypt(ctx, ct, documentBinding)
	assert.ErrorIs(t, err, envelope.ErrWrongForm)

	for i, v := range map[int]byte{1: 0x02, 2: 0x09, 3: 0x42} { // version, form, suite
		future := bytes.Clone(ct)
		future[i] = v
		_, err := s.DecryptStream(ctx, bytes.NewReader(future), documentBinding)
		assert.ErrorIs(t, err, envelope.ErrUnsupportedVersion, "byte %d", i)
	}

	// A read error from the source is the source's, not an
	// authentication failure, and sticks.
	boom := errors.New("network reset")
	r, err := s.DecryptStream(ctx, io.MultiReader(bytes.NewReader(ct[:len(ct)-300]), iotest.ErrReader(boom)), documentBinding)
	require.NoError(t, err)
	got, err := io.ReadAll(r)
	assert.ErrorIs(t, err, boom)
	assert.False(t, errors.Is(err, envelope.ErrDecrypt))
	assert.Equal(t, pt[:len(got)], got)
	_, err = r.Read(make([]byte, 10))
	assert.ErrorIs(t, err, boom)
	_, err = s.DecryptStream(ctx, io.MultiReader(bytes.NewReader(ct[:20]), iotest.ErrReader(boom)), documentBinding)
	assert.ErrorIs(t, err, boom, "a read error in the header")

	// The context is checked before each segment.
	cctx, cancel := context.WithCancel(ctx)
	r, err = s.DecryptStream(cctx, bytes.NewReader(ct), documentBinding)
	require.NoError(t, err)
	_, err = io.ReadFull(r, make([]byte, testSegment))
	require.NoError(t, err)
	cancel()
	_, err = io.ReadAll(r)
	assert.ErrorIs(t, err, context.Canceled)
	_, err = s.DecryptStream(cctx, bytes.NewReader(ct), documentBinding)
	assert.ErrorIs(t, err, context.Canceled)

	// WriteTo: an error of the destination, of the source or of the
	// context stops it and sticks.
	r, err = s.DecryptStream(ctx, bytes.NewReader(ct), documentBinding)
	require.NoError(t, err)
	fw := &failingWriter{n: 600, err: boom}
	n64, err := r.(io.WriterTo).WriteTo(fw)
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, int64(2*testSegment), n64, "two whole segments fit before the failure")
	_, err = r.Read(make([]byte, 10))
	assert.ErrorIs(t, err, boom)
	for name, src := range map[string]io.Reader{
		"pushing":   io.MultiReader(bytes.NewReader(ct[:len(ct)-300]), iotest.ErrReader(boom)),
		"read-only": readerOnly{io.MultiReader(bytes.NewReader(ct[:len(ct)-300]), iotest.ErrReader(boom))},
	} {
		got, err := copyFrom(ctx, s, src, documentBinding)
		assert.ErrorIs(t, err, boom, name)
		assert.False(t, errors.Is(err, envelope.ErrDecrypt), name)
		assert.True(t, bytes.Equal(pt[:len(got)], got), name)
	}
	for name, wrap := range map[string]func([]byte) io.Reader{
		"pushing":   func(b []byte) io.Reader { return bytes.NewReader(b) },
		"read-only": func(b []byte) io.Reader { return readerOnly{bytes.NewReader(b)} },
	} {
		cctx, cancel := context.WithCancel(ctx)
		r, err := s.DecryptStream(cctx, wrap(ct), documentBinding)
		require.NoError(t, err)
		_, err = r.(io.WriterTo).WriteTo(cancelAfterWrite{cancel})
		assert.ErrorIs(t, err, context.Canceled, name)
	}

	// After io.EOF the reader stays at io.EOF.
	r, err = s.DecryptStream(ctx, bytes.NewReader(ct), documentBinding)
	require.NoError(t, err)
	_, err = io.ReadAll(r)
	require.NoError(t, err)
	n, err := r.Read(make([]byte, 10))
	assert.Zero(t, n)
	assert.ErrorIs(t, err, io.EOF)
	n64, err = r.(io.WriterTo).WriteTo(io.Discard)
	assert.Zero(t, n64)
	assert.NoError(t, err)
	n, err = r.Read(nil)
	assert.Zero(t, n)
	assert.NoError(t, err)

	// The reader reads nothing past the stream's end: what follows in
	// src stays there.
	src := bytes.NewReader(join(ct, []byte("next record")))
	r, err = s.DecryptStream(ctx, io.LimitReader(src, int64(len(ct))), documentBinding)
	require.NoError(t, err)
	_, err = io.ReadAll(r)
	require.NoError(t, err)
	rest, _ := io.ReadAll(src)
	assert.Equal(t, "next record", string(rest))

	// Another KEK with the same key id fails authentication; a KEK with
	// another key id does not have the key.
	other, _ := newLocalKEK(t)
	_, err = decryptAll(ctx, newStreamer(t, other, 0, 0), ct, documentBinding)
	assert.ErrorIs(t, err, envelope.ErrDecrypt)
	_, err = decryptAll(ctx, newStreamer(t, kmstest.Instrument(renamedKEK{other}), 0, 0), ct, documentBinding)
	assert.ErrorIs(t, err, envelope.ErrKeyNotFound)
}

func TestStreamInspect(t *testing.T) {
	kek, _ := newLocalKEK(t)
	s := newStreamer(t, kek, 4096, 0)
	ct := encryptAll(t, s, streamData(10000), documentBinding)
	want := envelope.Info{Form: envelope.StreamForm, Suite: envelope.AES256GCM, KEKID: kek.KeyID(), PlaintextSize: -1, SegmentSize: 4096}
	h := streamHeaderSize(t, ct)
	for _, n := range []int{h, h + 1, min(len(ct), envelope.MaxStreamHeaderSize), len(ct)} {
		info, err := envelope.Inspect(ct[:n])
		require.NoError(t, err, "prefix %d", n)
		assert.Equal(t, want, info)
	}
	assert.Equal(t, "stream", want.Form.String())
	_, err := envelope.Inspect(ct[:h-1])
	var fe *envelope.FormatError
	assert.ErrorAs(t, err, &fe)
	armored := []byte(envelope.ArmorPrefix + base64.RawURLEncoding.EncodeToString(ct))
	_, err = envelope.Inspect(armored)
	assert.ErrorAs(t, err, &fe, "streams are never armored")
	_, err = s.Decrypt(context.Background(), armored, documentBinding)
	assert.ErrorIs(t, err, envelope.ErrWrongForm)
}

func TestStreamConfig(t *testing.T) {
	kek, _ := newLocalKEK(t)
	for _, n := range []int{-1, 1, envelope.MinStreamSegmentSize - 1, envelope.MaxStreamSegmentSize + 1} {
		_, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, StreamSegmentSize: n})
		assert.Error(t, err, "segment size %d", n)
	}
	for _, n := range []int{envelope.MinStreamSegmentSize, envelope.MaxStreamSegmentSize} {
		s := newStreamer(t, kek, n, 0)
		pt := streamData(n + 1)
		got, err := decryptAll(context.Background(), s, encryptAll(t, s, pt, documentBinding), documentBinding)
		require.NoError(t, err)
		assert.Equal(t, pt, got)
	}
}

func TestStreamSuites(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	aes := newStreamer(t, kek, 0, envelope.AES256GCM)
	_, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, Suite: envelope.XChaCha20Poly1305})
	if fips140.Enabled() {
		assert.ErrorIs(t, err, envelope.ErrNotApproved)
		// A stream of a refused suite is refused at its header.
		g := loadGoldenStream(t)
		for _, v := range g.Vectors {
			if v.Suite == envelope.XChaCha20Poly1305.String() {
				_, err := g.decrypter(t).DecryptStream(ctx, bytes.NewReader(v.ciphertext(t)), v.Binding.binding())
				assert.ErrorIs(t, err, envelope.ErrNotApproved, v.Name)
			}
		}
		return
	}
	require.NoError(t, err)
	x := newStreamer(t, kek, 0, envelope.XChaCha20Poly1305)
	pt := streamData(200_000)
	ct := encryptAll(t, x, pt, documentBinding)
	info, err := envelope.Inspect(ct)
	require.NoError(t, err)
	assert.Equal(t, envelope.XChaCha20Poly1305, info.Suite)
	got, err := decryptAll(ctx, aes, ct, documentBinding)
	require.NoError(t, err, "a stream names its suite: any SelfContained with the KEK reads it")
	assert.Equal(t, pt, got)
}

// TestStreamKMSCalls checks that streams share SelfContained's data keys
// and caches: KMS calls happen only when a stream starts, one wrap per new
// data key and one unwrap per cache miss.
func TestStreamKMSCalls(t *testing.T) {
	ctx := context.Background()
	base, _ := newLocalKEK(t)
	kek := kmstest.Instrument(base)
	s := newStreamer(t, kek, testSegment, 0)
	value, err := s.Encrypt(ctx, []byte("999-12-3456"), documentBinding)
	require.NoError(t, err)
	var streams [][]byte
	for i := range 20 {
		streams = append(streams, encryptAll(t, s, streamData(i*100), documentBinding))
	}
	assert.Equal(t, int64(1), kek.Wraps(), "values and streams of a scope share one data key")

	fresh := newStreamer(t, kek, 0, 0)
	for _, ct := range streams {
		_, err := decryptAll(ctx, fresh, ct, documentBinding)
		require.NoError(t, err)
	}
	_, err = fresh.Decrypt(ctx, value, documentBinding)
	require.NoError(t, err)
	assert.Equal(t, int64(1), kek.Unwraps(), "one unwrap for every stream and value of the data key")

	// With the KMS down, cached keys keep streaming; a new scope fails,
	// typed, when its stream starts.
	kek.SetDown(true)
	encryptAll(t, s, streamData(1000), documentBinding)
	_, err = decryptAll(ctx, fresh, streams[3], documentBinding)
	assert.NoError(t, err)
	other := documentBinding
	other.Scope = "tenant:new"
	_, err = s.EncryptStream(ctx, io.Discard, other)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	_, err = newStreamer(t, kek, 0, 0).DecryptStream(ctx, bytes.NewReader(streams[0]), documentBinding)
	assert.ErrorIs(t, err, kms.ErrUnavailable)
	assert.False(t, errors.Is(err, envelope.ErrDecrypt), "an outage is not an authentication failure")
	kek.SetDown(false)

	// Each stream counts against the data key's budget.
	budget := kmstest.Instrument(base)
	b, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: budget, DataKeyMaxMessages: 10})
	require.NoError(t, err)
	for range 25 {
		encryptAll(t, b, nil, documentBinding)
	}
	assert.Equal(t, int64(3), budget.Wraps(), "25 streams at 10 per data key need 3 keys")
}

func TestStreamConcurrentUse(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	s := newStreamer(t, kek, testSegment, 0)
	done := make(chan error)
	for g := range 8 {
		go func() {
			done <- func() error {
				b := documentBinding
				b.Scope = []string{"tenant:a", "tenant:b"}[g%2]
				for i := range 10 {
					pt := streamData(g*300 + i*50)
					pr, pw := io.Pipe()
					go func() {
						w, err := s.EncryptStream(ctx, pw, b)
						if err == nil {
							_, err = w.Write(pt)
						}
						if err == nil {
							err = w.Close()
						}
						pw.CloseWithError(err)
					}()
					r, err := s.DecryptStream(ctx, pr, b)
					if err != nil {
						return err
					}
					got, err := io.ReadAll(r)
					if err != nil {
						return err
					}
					if !bytes.Equal(pt, got) {
						return fmt.Errorf("goroutine %d stream %d: wrong plaintext", g, i)
					}
				}
				return nil
			}()
		}()
	}
	for range 8 {
		assert.NoError(t, <-done)
	}
}

// TestStreamInputsNotModified checks that Write leaves the caller's slice
// alone, and that a reader's output is the caller's.
func TestStreamInputsNotModified(t *testing.T) {
	kek, _ := newLocalKEK(t)
	s := newStreamer(t, kek, testSegment, 0)
	pt := streamData(3*testSegment + 5)
	keep := bytes.Clone(pt)
	ct := encryptAll(t, s, pt, documentBinding)
	assert.Equal(t, keep, pt)
	ctKeep := bytes.Clone(ct)
	got, err := decryptAll(context.Background(), s, ct, documentBinding)
	require.NoError(t, err)
	assert.Equal(t, ctKeep, ct)
	assert.Equal(t, pt, got)
	b := documentBinding
	b.Extra = []envelope.Attr{{Key: "z", Value: "1"}, {Key: "a", Value: "2"}}
	encryptAll(t, s, pt, b)
	assert.Equal(t, "z", b.Extra[0].Key, "extras were sorted in place")
}

// streamSHA256 streams n deterministic bytes through an encrypting writer,
// an io.Pipe and a decrypting reader, in bounded memory, and returns the
// SHA-256 of the plaintext in and out, and the peak live heap seen while
// streaming.
func streamSHA256(t testing.TB, s *envelope.SelfContained, n int64) (in, out [32]byte, peak uint64) {
	ctx := context.Background()
	pr, pw := io.Pipe()
	hin := sha256.New()
	go func() {
		w, err := s.EncryptStream(ctx, pw, documentBinding)
		if err == nil {
			// io.Copy uses the writer's ReadFrom: LimitReader has no
			// WriteTo.
			_, err = io.Copy(w, io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1}), n), hin))
		}
		if err == nil {
			err = w.Close()
		}
		pw.CloseWithError(err)
	}()
	r, err := s.DecryptStream(ctx, pr, documentBinding)
	require.NoError(t, err)
	hout := &heapSampler{Hash: sha256.New()}
	// io.Copy uses the reader's WriteTo.
	copied, err := io.Copy(hout, r)
	require.NoError(t, err)
	require.Equal(t, n, copied)
	copy(in[:], hin.Sum(nil))
	copy(out[:], hout.Sum(nil))
	return in, out, hout.peak
}

// TestStreamBoundedMemory streams 100 MiB (with PHICRYPT_FULL_TESTS=1;
// 16 MiB otherwise) and checks that memory does not grow with the stream:
// the bytes allocated while streaming it are those of streaming 1 MiB, and
// the live heap stays within a few MiB.
func TestStreamBoundedMemory(t *testing.T) {
	size := int64(16 << 20)
	if testsvc.Full() {
		size = 100 << 20
	}
	if testing.Short() {
		t.Skip("streams 16 MiB or more")
	}
	kek, _ := newLocalKEK(t)
	s := newStreamer(t, kek, 0, 0)
	streamSHA256(t, s, 1<<20) // warm up: data key, caches

	// The runtime counts small allocations when a span is handed to or
	// taken from a P, not one by one, so one reading can be off by a few
	// spans; the least of three readings is the stream's own cost.
	measure := func(n int64) (allocs, objects uint64, peak int64) {
		allocs, objects = math.MaxUint64, math.MaxUint64
		for range 3 {
			runtime.GC()
			before := readHeapMetrics()
			in, out, top := streamSHA256(t, s, n)
			after := readHeapMetrics()
			require.Equal(t, in, out, "round trip of %d bytes", n)
			allocs = min(allocs, after.allocBytes-before.allocBytes)
			objects = min(objects, after.allocObjects-before.allocObjects)
			peak = max(peak, int64(top)-int64(before.live))
		}
		return allocs, objects, peak
	}
	smallBytes, smallObjects, _ := measure(1 << 20)
	bigBytes, bigObjects, peak := measure(size)
	t.Logf("1 MiB: %d B in %d objects; %d MiB: %d B in %d objects; live heap peak +%d KiB", smallBytes, smallObjects, size>>20, bigBytes, bigObjects, peak>>10)
	assert.Less(t, bigBytes, uint64(1<<20), "bytes allocated while streaming %d MiB", size>>20)
	// A long stream spans garbage collections, which may empty the
	// stream buffer pool: one 128 KiB buffer allocated again is a
	// constant, not growth (per-segment allocations show in the object
	// count below).
	assert.Less(t, bigBytes, smallBytes+256<<10, "allocation grows with the stream")
	assert.Less(t, bigObjects, smallObjects+100, "allocations per segment (%d MiB is %d segments)", size>>20, size>>16)
	assert.Less(t, peak, int64(4<<20), "live heap while streaming")
}

type heapMetrics struct{ allocBytes, allocObjects, live uint64 }

func readHeapMetrics() heapMetrics {
	m := []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/heap/allocs:objects"},
		{Name: "/memory/classes/heap/objects:bytes"},
	}
	metrics.Read(m)
	return heapMetrics{m[0].Value.Uint64(), m[1].Value.Uint64(), m[2].Value.Uint64()}
}

// heapSampler is a hash that samples the heap every 4 MiB written to it.
type heapSampler struct {
	hash.Hash
	n, peak uint64
}

func (h *heapSampler) Write(p []byte) (int, error) {
	if h.n/(4<<20) != (h.n+uint64(len(p)))/(4<<20) {
		h.peak = max(h.peak, readHeapMetrics().live)
	}
	h.n += uint64(len(p))
	return h.Hash.Write(p)
}
