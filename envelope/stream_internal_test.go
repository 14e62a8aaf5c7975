package envelope

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/kms/local"
)

// TestStreamSegmentLimit checks the 2^32 segment limit at its edge, which
// no test could reach by writing: the writer refuses a segment that would
// leave no index for the final one, the last index holds a final segment
// that the reader accepts there, and the reader refuses any index beyond.
func TestStreamSegmentLimit(t *testing.T) {
	ctx := context.Background()
	data, err := local.Generate(local.Options{KeyID: "local:limit"})
	require.NoError(t, err)
	kek, err := local.New(local.Config{Data: data})
	require.NoError(t, err)
	s, err := NewSelfContained(SelfContainedConfig{KEK: kek, StreamSegmentSize: MinStreamSegmentSize})
	require.NoError(t, err)
	b := Binding{Scope: "tenant:a"}
	seg := make([]byte, MinStreamSegmentSize)

	// The writer at the last index: a full segment followed by more is
	// refused; a final one is sealed.
	var buf bytes.Buffer
	wc, err := s.EncryptStream(ctx, &buf, b)
	require.NoError(t, err)
	w := wc.(*streamWriter)
	w.index = MaxStreamSegments - 1
	_, err = w.Write(append(seg, 1))
	assert.ErrorIs(t, err, ErrTooLarge)
	assert.ErrorIs(t, w.Close(), ErrTooLarge)

	buf.Reset()
	wc, err = s.EncryptStream(ctx, &buf, b)
	require.NoError(t, err)
	w = wc.(*streamWriter)
	w.index = MaxStreamSegments - 1
	_, err = w.Write(seg)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	ct := buf.Bytes()

	// The reader finds that final segment at the last index, and nowhere
	// else.
	open := func(index uint64) ([]byte, error) {
		rd, err := s.DecryptStream(ctx, bytes.NewReader(ct), b)
		require.NoError(t, err)
		rd.(*streamReader).index = index
		return io.ReadAll(rd)
	}
	got, err := open(MaxStreamSegments - 1)
	require.NoError(t, err)
	assert.Equal(t, seg, got)
	_, err = open(0)
	assert.ErrorIs(t, err, ErrDecrypt)
	_, err = open(MaxStreamSegments)
	assert.ErrorIs(t, err, ErrDecrypt)
}

// failingWriter fails every Write after the first n.
type failingWriter struct{ n int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, io.ErrClosedPipe
	}
	f.n--
	return len(p), nil
}

// TestStreamWriterBuffersPooled: a stream writer's buffers go back to its
// SelfContained's pool when it closes or fails, cleared of the plaintext
// it buffered, whether it was written to or read into; the writer keeps
// no reference to them, and the next stream reuses them and still
// decrypts.
func TestStreamWriterBuffersPooled(t *testing.T) {
	ctx := context.Background()
	data, err := local.Generate(local.Options{KeyID: "local:pool"})
	require.NoError(t, err)
	kek, err := local.New(local.Config{Data: data})
	require.NoError(t, err)
	s, err := NewSelfContained(SelfContainedConfig{KEK: kek, StreamSegmentSize: MinStreamSegmentSize})
	require.NoError(t, err)
	b := Binding{Scope: "tenant:a"}
	secret := bytes.Repeat([]byte("999-12-3456 "), 3*MinStreamSegmentSize/12)
	zero := make([]byte, MinStreamSegmentSize+1)

	for name, write := range map[string]func(w io.Writer) error{
		"Write":    func(w io.Writer) error { _, err := w.Write(secret); return err },
		"ReadFrom": func(w io.Writer) error { _, err := w.(io.ReaderFrom).ReadFrom(bytes.NewReader(secret)); return err },
	} {
		t.Run(name, func(t *testing.T) {
			var ct bytes.Buffer
			wc, err := s.EncryptStream(ctx, &ct, b)
			require.NoError(t, err)
			w := wc.(*streamWriter)
			require.NoError(t, write(w))
			buf := w.buf
			require.NotNil(t, buf)
			require.NotEqual(t, zero, buf.b[:len(zero)], "plaintext buffered before Close")
			require.NoError(t, w.Close())
			assert.Equal(t, zero, buf.b[:len(zero)], "plaintext cleared")
			assert.Nil(t, w.buf)
			assert.Nil(t, w.pbuf)
			assert.Nil(t, w.cbuf)
			_, err = w.Write([]byte("more"))
			assert.ErrorIs(t, err, ErrStreamClosed)

			// The next stream reuses the buffer (unless the pool dropped
			// it, as it may) and both streams decrypt.
			var ct2 bytes.Buffer
			wc2, err := s.EncryptStream(ctx, &ct2, b)
			require.NoError(t, err)
			require.NoError(t, write(wc2))
			require.NoError(t, wc2.Close())
			for _, c := range [][]byte{ct.Bytes(), ct2.Bytes()} {
				r, err := s.DecryptStream(ctx, bytes.NewReader(c), b)
				require.NoError(t, err)
				got, err := io.ReadAll(r)
				require.NoError(t, err)
				assert.Equal(t, secret, got)
			}
		})
	}

	// A writer whose destination fails releases its buffers at once,
	// cleared.
	wc, err := s.EncryptStream(ctx, &failingWriter{n: 1}, b) // the header
	require.NoError(t, err)
	w := wc.(*streamWriter)
	buf := w.buf
	_, err = w.Write(secret[:MinStreamSegmentSize])
	require.NoError(t, err, "a full segment is held until more follows")
	_, err = w.Write(secret[:7])
	assert.ErrorIs(t, err, io.ErrClosedPipe)
	assert.Nil(t, w.buf)
	assert.Equal(t, zero, buf.b[:len(zero)])
	assert.ErrorIs(t, w.Close(), io.ErrClosedPipe)
}
