package envelope

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/phicrypt/phicrypt/internal/aead"
	"github.com/phicrypt/phicrypt/internal/format"
	"github.com/phicrypt/phicrypt/internal/kdf"
)

// Stream limits.
const (
	// DefaultStreamSegmentSize is the default plaintext size of a segment,
	// 64 KiB.
	DefaultStreamSegmentSize = 64 << 10
	// MinStreamSegmentSize and MaxStreamSegmentSize bound the segment
	// size, 256 bytes to 1 MiB. A reader holds about one segment of
	// ciphertext and one of plaintext, allocated as the bytes arrive (a
	// 4 KiB buffer first, doubled as it fills), so the header's claim
	// alone never makes DecryptStream allocate a segment.
	MinStreamSegmentSize = format.MinSegmentSize
	MaxStreamSegmentSize = format.MaxSegmentSize
	// MaxStreamSegments is the most segments a stream holds: 2^32, the
	// limit for random 96-bit nonces under one key (NIST SP 800-38D,
	// section 8.3). With 64 KiB segments a stream holds up to 256 TiB.
	MaxStreamSegments = 1 << 32
	// MaxStreamHeaderSize is the largest stream header, 4,684 bytes: the
	// first MaxStreamHeaderSize bytes of a stream always hold its header.
	MaxStreamHeaderSize = format.MaxStreamHeaderSize
)

// ErrStreamClosed means a stream writer was written to after Close.
var ErrStreamClosed = errors.New("envelope: write to a closed stream")

// EncryptStream returns a writer that encrypts what is written to it and
// writes the stream to dst, bound to b. It writes the stream's header to dst
// before it returns, then one segment each time StreamSegmentSize bytes
// have been written and more follow. Close writes the final segment, and
// nothing written is a valid stream until then: a stream abandoned, or cut
// by an error or by ctx, fails to decrypt. Close does not close dst.
//
// The stream takes the scope's data key as Encrypt does (a KMS call only
// when the scope has no usable data key; each stream counts as one value
// against DataKeyMaxMessages) and encrypts under a key of its own, derived
// from the data key and a random salt. ctx is checked before each segment
// is sealed: once it is done, Write and Close fail with its error.
// MaxPlaintextSize and Encoding do not apply: a stream is binary, and holds
// at most MaxStreamSegments segments (Write fails with ErrTooLarge beyond).
//
// The writer buffers at most one segment of plaintext and one of
// ciphertext. Close, or a failure, clears the plaintext it buffered and
// returns both buffers to a pool for the SelfContained's next stream; the
// writer keeps no reference to them. It is not safe for concurrent use. A
// Write of more than a segment seals from the caller's slice without
// copying, and the writer implements io.ReaderFrom, so io.Copy from a
// source without WriteTo (a file, a request body) reads straight into its
// buffer.
func (s *SelfContained) EncryptStream(ctx context.Context, dst io.Writer, b Binding) (io.WriteCloser, error) {
	extra, bindingSize, err := b.check()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var salt [format.SaltSize]byte
	rand.Read(salt[:]) // never fails (crypto/rand)
	k, a, err := s.sealingStreamKey(ctx, b.Scope, salt[:])
	if err != nil {
		return nil, err
	}
	hdr, err := format.AppendStreamHeader(nil, format.Suite(s.suite), k.wrapped.KeyID, k.wrapped.Ciphertext, k.commitment, uint32(s.segmentSize), salt[:])
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	if _, err := dst.Write(hdr); err != nil {
		return nil, fmt.Errorf("envelope: write stream header: %w", err)
	}
	w := &streamWriter{
		ctx:   ctx,
		dst:   dst,
		aead:  a,
		suite: s.suite,
		aad:   streamAAD(hdr, &b, extra, bindingSize),
		seg:   s.segmentSize,
		pool:  s.writerBufs,
	}
	w.buf = w.getBuf()
	return w, nil
}

// streamBuf is a stream writer's buffers in one array: a segment and one
// byte of plaintext, then a sealed segment. SelfContained pools them:
// setting up 128 KiB per stream cost a 1 MiB stream a fifth of its
// throughput.
type streamBuf struct{ b []byte }

// getBuf takes a buffer from the pool, or makes one, and points pbuf and
// cbuf into it. A pooled buffer holds no plaintext: release clears it.
func (w *streamWriter) getBuf() *streamBuf {
	need := 2*w.seg + 1 + w.aead.Overhead()
	buf, _ := w.pool.Get().(*streamBuf)
	if buf == nil || len(buf.b) != need {
		buf = &streamBuf{b: make([]byte, need)}
	}
	w.pbuf = buf.b[: w.seg+1 : w.seg+1]
	w.cbuf = buf.b[w.seg+1 : w.seg+1]
	return buf
}

// release clears the plaintext the writer buffered and returns its
// buffers to the pool. The writer holds none afterwards: it is done, and
// its sticky error keeps Write and ReadFrom from touching a buffer that
// another stream now uses.
func (w *streamWriter) release() {
	if w.buf == nil {
		return
	}
	clear(w.pbuf[:w.dirty])
	w.pool.Put(w.buf)
	w.buf, w.pbuf, w.cbuf, w.n, w.dirty = nil, nil, nil, 0, 0
}

// DecryptStream reads a stream's header from src, unwraps its data key
// (unless cached) and returns a reader of its plaintext, bound to b.
//
// The reader authenticates each segment before it returns any of its
// plaintext, and fails with ErrDecrypt on any damage: a modified, missing,
// reordered, duplicated or foreign segment, a stream cut short or without
// its final segment, or bytes after the final segment. It returns io.EOF
// only after the final segment has been authenticated and the input has
// ended.
//
// Plaintext returned before an error is authentic but may be incomplete:
// until Read returns io.EOF, an attacker may have cut the stream. A caller
// that acts on the content (stores it, shows it, parses it) must wait for
// io.EOF, for example by decrypting to a temporary file that it deletes on
// error.
//
// DecryptStream fails with ErrNotEncrypted if src is not encrypted, with a
// *FormatError for a malformed header (wrapping ErrWrongForm for a value of
// another form, ErrUnsupportedVersion for a newer format), and with
// ErrDecrypt or ErrKeyNotFound as Decrypt does. The stream must be all that
// is left of src: the reader reads src to its end, which is where the final
// segment ends (wrap src in an io.LimitReader or io.SectionReader to read a
// stream from a larger input). Errors from src are returned wrapped. ctx is
// checked before each segment is opened.
//
// The reader holds about one segment of ciphertext and one of plaintext,
// whatever the stream's length. The segment size in the header is
// authenticated only with the first segment, so the reader's buffers grow
// with the bytes that actually arrive: a forged header that claims 1 MiB
// segments in front of a short body costs a few KiB, not 2 MiB. It is not safe for concurrent use. A Read
// into a buffer of at least a segment decrypts straight into it. The reader
// implements io.WriterTo: io.Copy from it decrypts a source that holds the
// stream in memory (a bytes.Reader) where the bytes lie, without copying
// them.
func (s *SelfContained) DecryptStream(ctx context.Context, src io.Reader, b Binding) (io.Reader, error) {
	extra, bindingSize, err := b.check()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, hdr, err := format.ReadHeader(src)
	if errors.Is(err, format.ErrArmored) {
		return nil, errWrongForm()
	}
	if err != nil {
		var fe *FormatError
		if errors.As(err, &fe) || errors.Is(err, ErrNotEncrypted) {
			return nil, err
		}
		return nil, fmt.Errorf("envelope: read stream header: %w", err)
	}
	if h.Form != format.FormStream {
		return nil, errWrongForm()
	}
	a, err := s.openingStreamKey(ctx, &h, b.Scope)
	if err != nil {
		return nil, err
	}
	segment := int(h.SegmentSize)
	// The segment size is authenticated only with the first segment:
	// the buffers start small and grow as the bytes arrive.
	return &streamReader{
		ctx:     ctx,
		src:     src,
		aead:    a,
		suite:   Suite(h.Suite),
		segment: segment,
		sealed:  segment + a.Overhead(),
		aad:     streamAAD(hdr, &b, extra, bindingSize),
		cbuf:    make([]byte, min(streamInitialBuffer, segment+a.Overhead()+1)),
	}, nil
}

// streamInitialBuffer is the size of a stream reader's first ciphertext
// buffer. It doubles as the bytes arrive, up to a full segment and one
// byte, so that a forged header claiming a large segment in front of a
// short body costs little memory.
const streamInitialBuffer = 4 << 10

// sealingStreamKey returns the scope's data key and the AEAD of a new
// stream with salt. Should the cache evict (and zero) the data key between
// its lookup and the derivation, the stream gets a data key of its own,
// which no cache keeps.
func (s *SelfContained) sealingStreamKey(ctx context.Context, scope string, salt []byte) (*sealingKey, cipher.AEAD, error) {
	k, fresh, err := s.sealingKey(ctx, scope)
	if err != nil {
		return nil, nil, err
	}
	a, ok, err := k.dek.deriveStream(s.suite, salt)
	if fresh {
		s.doneSealing(scope, k)
	}
	if ok || err != nil {
		return k, a, err
	}
	if k, err = s.newSealingKey(ctx, scope); err != nil {
		return nil, nil, err
	}
	defer k.dek.wipe()
	a, _, err = k.dek.deriveStream(s.suite, salt)
	return k, a, err
}

// openingStreamKey returns the AEAD of the stream with header h. Should
// the cache evict (and zero) the data key between its lookup and the
// derivation, the key is unwrapped again for this stream alone.
func (s *SelfContained) openingStreamKey(ctx context.Context, h *format.Header, scope string) (cipher.AEAD, error) {
	k, fresh, err := s.openingKey(ctx, h, scope)
	if err != nil {
		return nil, err
	}
	a, ok, err := k.dek.deriveStream(Suite(h.Suite), h.Salt)
	if fresh {
		s.doneOpening(h, scope, k)
	}
	if ok || err != nil {
		return a, err
	}
	if k, err = s.load(ctx, h, scope); err != nil {
		return nil, err
	}
	defer k.dek.wipe()
	if !k.commits(h) {
		return nil, ErrDecrypt
	}
	a, _, err = k.dek.deriveStream(Suite(h.Suite), h.Salt)
	return a, err
}

// deriveStreamAEAD derives the AEAD of one stream: HKDF-SHA-256 of the data
// key with the stream's salt and the label LabelStreamKey || suite.
func deriveStreamAEAD(suite Suite, dek, salt []byte) (cipher.AEAD, error) {
	n := aead.KeySize(format.Suite(suite))
	if n == 0 {
		return nil, fmt.Errorf("%w: %v", aead.ErrUnknownSuite, suite)
	}
	key, err := kdf.KeySalt(dek, salt, kdf.LabelStreamKey+string([]byte{byte(suite)}), n)
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	defer clear(key)
	a, err := aead.New(format.Suite(suite), key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", err, suite)
	}
	return a, nil
}

// streamAAD returns the associated data of a stream's segments: the header,
// the Binding's encoding, and room for the segment index (uint64) and the
// final flag (one byte), which setSegment fills in.
func streamAAD(hdr []byte, b *Binding, extra []Attr, bindingSize int) []byte {
	aad := make([]byte, 0, len(hdr)+bindingSize+9)
	aad = b.appendAAD(append(aad, hdr...), extra)
	return append(aad, make([]byte, 9)...)
}

// setSegment writes index and the final flag at the end of aad.
func setSegment(aad []byte, index uint64, final bool) {
	binary.BigEndian.PutUint64(aad[len(aad)-9:], index)
	aad[len(aad)-1] = 0
	if final {
		aad[len(aad)-1] = 1
	}
}

// streamWriter encrypts a stream. A full segment is sealed only once more
// data arrives, so that Close always has a final segment to seal: the final
// segment holds 1 to StreamSegmentSize bytes, or 0 for an empty stream.
type streamWriter struct {
	ctx   context.Context
	dst   io.Writer
	aead  cipher.AEAD
	suite Suite
	aad   []byte
	seg   int // plaintext bytes of a full segment
	// pbuf[:n] is plaintext waiting to be sealed. It has one byte more
	// than a segment, for ReadFrom to learn whether more data follows a
	// full segment. pbuf[:dirty] may hold plaintext: release clears it.
	pbuf  []byte
	n     int
	dirty int
	cbuf  []byte // the sealed segment
	// buf holds pbuf and cbuf, from pool; nil once released.
	buf   *streamBuf
	pool  *sync.Pool
	index uint64 // of the next segment
	err   error  // sticky; ErrStreamClosed after a successful Close
	// closed is set by Close, whose result closeErr is.
	closed   bool
	closeErr error
}

var (
	_ io.WriteCloser = (*streamWriter)(nil)
	_ io.ReaderFrom  = (*streamWriter)(nil)
)

func (w *streamWriter) segment() int { return w.seg }

// Write encrypts p. It returns len(p) unless sealing or writing a segment
// fails; after a failure every call returns the same error.
func (w *streamWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	seg, total := w.segment(), 0
	for len(p) > 0 {
		if w.n == seg {
			// A full segment, and more data: it is not the last.
			if err := w.fail(w.seal(w.pbuf[:seg], false)); err != nil {
				return total, err
			}
			w.n = 0
		}
		if w.n == 0 && len(p) > seg {
			// Seal straight from p: more data follows in p.
			if err := w.fail(w.seal(p[:seg], false)); err != nil {
				return total, err
			}
			p, total = p[seg:], total+seg
			continue
		}
		c := copy(w.pbuf[w.n:seg], p)
		w.n += c
		w.dirty = max(w.dirty, w.n)
		p, total = p[c:], total+c
	}
	return total, nil
}

// ReadFrom encrypts what it reads from r until io.EOF, reading into the
// writer's buffer. It does not close the stream: call Close.
func (w *streamWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	seg := w.segment()
	// The reader may use all of the buffer it is given as scratch space.
	w.dirty = len(w.pbuf)
	var total int64
	for {
		m, rerr := r.Read(w.pbuf[w.n:])
		w.n += m
		total += int64(m)
		if w.n == len(w.pbuf) {
			// A full segment and one byte more: the segment is not the
			// last. The extra byte starts the next one.
			if err := w.fail(w.seal(w.pbuf[:seg], false)); err != nil {
				return total, err
			}
			w.pbuf[0], w.n = w.pbuf[seg], 1
		}
		switch {
		case rerr == io.EOF:
			return total, nil
		case rerr != nil:
			return total, rerr
		}
	}
}

// Close seals and writes the final segment. It does not close the
// underlying writer. Calling Close again returns the first call's result.
func (w *streamWriter) Close() error {
	if w.closed {
		return w.closeErr
	}
	w.closed = true
	if w.err == nil {
		w.err = w.seal(w.pbuf[:w.n], true)
	}
	w.closeErr = w.err
	if w.err == nil {
		w.err = ErrStreamClosed
	}
	w.release()
	return w.closeErr
}

// fail makes err, if any, sticky, and releases the buffers.
func (w *streamWriter) fail(err error) error {
	if err != nil {
		w.err = err
		w.release()
	}
	return err
}

// seal seals one segment and writes it to dst.
func (w *streamWriter) seal(plaintext []byte, final bool) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	// The final segment may take the last index; a segment that is not
	// final must leave it room.
	if w.index >= MaxStreamSegments || !final && w.index == MaxStreamSegments-1 {
		return ErrTooLarge
	}
	setSegment(w.aad, w.index, final)
	ct := w.aead.Seal(w.cbuf[:0], nil, plaintext, w.aad)
	w.index++
	if _, err := w.dst.Write(ct); err != nil {
		return fmt.Errorf("envelope: write stream: %w", err)
	}
	return nil
}

// String describes the writer without its contents.
func (w *streamWriter) String() string {
	return fmt.Sprintf("envelope.streamWriter{Suite: %v, SegmentSize: %d, Segments: %d}", w.suite, w.segment(), w.index)
}

// GoString is String.
func (w *streamWriter) GoString() string { return w.String() }

// Format prints String for every verb, so no verb reaches the buffered
// plaintext or the key state.
func (w *streamWriter) Format(f fmt.State, verb rune) { fmt.Fprint(f, w.String()) }

// LogValue logs the suite, segment size and segments written.
func (w *streamWriter) LogValue() slog.Value {
	return slog.GroupValue(slog.String("suite", w.suite.String()), slog.Int("segment_size", w.segment()), slog.Uint64("segments", w.index))
}

// streamReader decrypts a stream. A segment is final exactly when the input
// ends with it, so a segment is opened only once the reader holds one byte
// past it (not final) or has met the end of the input (final).
//
// Its buffers grow as bytes arrive: cbuf doubles (grow) whenever it is
// full and shorter than a sealed segment and one byte, and pbuf is
// allocated for a segment's plaintext only once that segment's bytes are
// all there.
//
// Read pulls one segment at a time from src (next). WriteTo lets src push
// its bytes instead, through a segmentWriter, so that a source that holds
// the stream in memory (a bytes.Reader) is decrypted without a copy.
type streamReader struct {
	ctx     context.Context
	src     io.Reader
	aead    cipher.AEAD
	suite   Suite
	segment int // plaintext bytes of a full segment
	sealed  int // bytes of a full sealed segment
	aad     []byte
	// cbuf[:have] is the start of the next segment: cbuf grows to hold a
	// full sealed segment and one byte more.
	cbuf  []byte
	have  int
	pbuf  []byte // plaintext of a segment, allocated by plainBuf
	pt    []byte // plaintext not yet returned, in pbuf
	index uint64 // of the next segment
	err   error  // sticky; io.EOF after the final segment
}

var (
	_ io.Reader   = (*streamReader)(nil)
	_ io.WriterTo = (*streamReader)(nil)
)

// sealedSize is the size of a full sealed segment.
func (r *streamReader) sealedSize() int { return r.sealed }

// grow doubles cbuf, up to a full sealed segment and one byte, when it is
// full of bytes that have arrived. It reports whether cbuf grew.
func (r *streamReader) grow() bool {
	full := r.sealed + 1
	if r.have < len(r.cbuf) || len(r.cbuf) >= full {
		return false
	}
	c := make([]byte, min(2*len(r.cbuf), full))
	copy(c, r.cbuf[:r.have])
	r.cbuf = c
	return true
}

// plainBuf returns pbuf, empty, with room for n bytes of plaintext.
func (r *streamReader) plainBuf(n int) []byte {
	if cap(r.pbuf) < n {
		r.pbuf = make([]byte, max(n, cap(r.pbuf)))
	}
	return r.pbuf[:0]
}

// Read returns authenticated plaintext. See DecryptStream.
func (r *streamReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(r.pt) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if len(p) >= r.segment {
			// Open straight into p.
			pt, err := r.next(p[:0])
			return len(pt), err
		}
		pt, err := r.next(nil)
		if err != nil {
			return 0, err
		}
		r.pt = pt
	}
	n := copy(p, r.pt)
	r.pt = r.pt[n:]
	return n, nil
}

// next reads the next segment, with one byte more, and opens it into dst,
// which must have room for a segment's plaintext, or into pbuf if dst is
// nil.
func (r *streamReader) next(dst []byte) ([]byte, error) {
	if err := r.ctx.Err(); err != nil {
		return nil, r.fail(err)
	}
	var err error
	for {
		var n int
		n, err = io.ReadFull(r.src, r.cbuf[r.have:])
		r.have += n
		if err != nil || !r.grow() {
			break
		}
	}
	switch {
	case err == nil:
		pt, err := r.open(dst, r.cbuf[:r.sealedSize()], false)
		r.cbuf[0], r.have = r.cbuf[r.sealedSize()], 1
		return pt, err
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return r.open(dst, r.cbuf[:r.have], true)
	default:
		return nil, r.fail(fmt.Errorf("envelope: read stream: %w", err))
	}
}

// open authenticates and decrypts seg as the next segment, final or not,
// into dst, or into pbuf if dst is nil. After the final segment, r.err is
// io.EOF. Failures are sticky.
func (r *streamReader) open(dst, seg []byte, final bool) ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	if err := r.ctx.Err(); err != nil {
		return nil, r.fail(err)
	}
	// A segment has at least a nonce and a tag; only an empty stream has
	// an empty final segment; no stream has more than MaxStreamSegments.
	overhead := r.aead.Overhead()
	if len(seg) < overhead || final && len(seg) == overhead && r.index > 0 || r.index >= MaxStreamSegments {
		return nil, r.fail(ErrDecrypt)
	}
	if dst == nil {
		dst = r.plainBuf(len(seg) - overhead)
	}
	setSegment(r.aad, r.index, final)
	pt, err := r.aead.Open(dst, nil, seg, r.aad)
	if err != nil {
		return nil, r.fail(ErrDecrypt)
	}
	r.index++
	if final {
		r.err = io.EOF
	}
	return pt, nil
}

// WriteTo writes the stream's plaintext to w, one authenticated segment at
// a time, until the end of the stream or the first error, which is then
// sticky (an error from w included). It takes the stream from src through
// io.Copy: a source with WriteTo (bytes.Reader) hands over its bytes and
// full segments are opened where they lie; any other is read into the
// reader's buffer.
func (r *streamReader) WriteTo(w io.Writer) (int64, error) {
	sw := &segmentWriter{r: r, w: w}
	if len(r.pt) > 0 {
		if err := sw.write(r.pt); err != nil {
			return sw.n, err
		}
		r.pt = nil
	}
	if r.err == nil {
		_, err := io.Copy(sw, r.src)
		switch {
		case r.err != nil: // set by sw
		case err != nil:
			r.fail(fmt.Errorf("envelope: read stream: %w", err))
		default:
			// The input has ended: what is left is the final segment.
			pt, err := r.open(nil, r.cbuf[:r.have], true)
			if err == nil {
				sw.write(pt)
			}
		}
	}
	if r.err == io.EOF {
		return sw.n, nil
	}
	return sw.n, r.err
}

// segmentWriter takes a stream's bytes from src on behalf of
// streamReader.WriteTo, opens each segment once a byte past it has arrived
// and writes its plaintext to w. Its Write opens full segments in place in
// the caller's slice; its ReadFrom reads into the reader's buffer.
type segmentWriter struct {
	r *streamReader
	w io.Writer
	n int64 // plaintext bytes written to w
}

// Write takes the next bytes of the stream.
func (sw *segmentWriter) Write(p []byte) (int, error) {
	r, size, n := sw.r, sw.r.sealedSize(), len(p)
	for len(p) > 0 {
		if r.err != nil {
			return n - len(p), r.err
		}
		if r.have == 0 && len(p) > size {
			// A full segment followed by more: open it where it lies.
			if err := sw.open(p[:size], false); err != nil {
				return n - len(p), err
			}
			p = p[size:]
			continue
		}
		c := copy(r.cbuf[r.have:min(size, len(r.cbuf))], p)
		r.have += c
		p = p[c:]
		if r.have < size {
			r.grow()
			continue
		}
		if len(p) > 0 {
			if err := sw.open(r.cbuf[:size], false); err != nil {
				return n - len(p), err
			}
			r.have = 0
		}
	}
	return n, nil
}

// ReadFrom reads the rest of the stream from src into the reader's buffer.
func (sw *segmentWriter) ReadFrom(src io.Reader) (int64, error) {
	r, size := sw.r, sw.r.sealedSize()
	var total int64
	for {
		if err := r.ctx.Err(); err != nil {
			return total, r.fail(err)
		}
		m, err := src.Read(r.cbuf[r.have:])
		r.have += m
		total += int64(m)
		if r.grow() {
			// Not a full segment yet: there is room for more now.
		} else if r.have == len(r.cbuf) {
			if err := sw.open(r.cbuf[:size], false); err != nil {
				return total, err
			}
			r.cbuf[0], r.have = r.cbuf[size], 1
		}
		switch {
		case err == io.EOF:
			return total, nil
		case err != nil:
			return total, err
		}
	}
}

// open opens one segment and writes its plaintext.
func (sw *segmentWriter) open(seg []byte, final bool) error {
	pt, err := sw.r.open(nil, seg, final)
	if err != nil {
		return err
	}
	return sw.write(pt)
}

// write writes plaintext to w; a failure is sticky.
func (sw *segmentWriter) write(pt []byte) error {
	m, err := sw.w.Write(pt)
	sw.n += int64(m)
	if err == nil && m < len(pt) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return sw.r.fail(err)
	}
	return nil
}

// fail makes err sticky and drops the plaintext not yet returned.
func (r *streamReader) fail(err error) error {
	r.err = err
	r.pt = nil
	clear(r.pbuf)
	return err
}

// String describes the reader without its contents.
func (r *streamReader) String() string {
	return fmt.Sprintf("envelope.streamReader{Suite: %v, SegmentSize: %d, Segments: %d}", r.suite, r.segment, r.index)
}

// GoString is String.
func (r *streamReader) GoString() string { return r.String() }

// Format prints String for every verb, so no verb reaches the plaintext or
// the key state.
func (r *streamReader) Format(f fmt.State, verb rune) { fmt.Fprint(f, r.String()) }

// LogValue logs the suite, segment size and segments read.
func (r *streamReader) LogValue() slog.Value {
	return slog.GroupValue(slog.String("suite", r.suite.String()), slog.Int("segment_size", r.segment), slog.Uint64("segments", r.index))
}
