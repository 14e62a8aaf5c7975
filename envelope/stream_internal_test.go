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
