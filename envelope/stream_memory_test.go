package envelope_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
)

// bytesPerRun returns the bytes that f allocates, on average over runs.
func bytesPerRun(runs int, f func()) uint64 {
	f() // warm up
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < runs; i++ {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

// onlyReader hides a reader's WriteTo, so that WriteTo takes the reader's
// ReadFrom path.
type onlyReader struct{ io.Reader }

// TestStreamMemoryBeforeAuthentication forges a stream header that claims
// the largest segment size (1 MiB) in front of a short body: until a
// segment authenticates, the reader must allocate in proportion to the
// bytes that arrived, not to the claim. Each of the reader's paths is
// measured; before the fix each allocated about 2 MiB.
func TestStreamMemoryBeforeAuthentication(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	s := newStreamer(t, kek, envelope.MinStreamSegmentSize, 0)
	ct := encryptAll(t, s, streamData(3*envelope.MinStreamSegmentSize), patientBinding)
	got, err := decryptAll(ctx, s, ct, patientBinding) // caches the data key
	require.NoError(t, err)
	require.Len(t, got, 3*envelope.MinStreamSegmentSize)

	hdrSize := streamHeaderSize(t, ct)
	hdr := bytes.Clone(ct[:hdrSize])
	binary.BigEndian.PutUint32(hdr[hdrSize-32-4:], envelope.MaxStreamSegmentSize)
	big := make([]byte, envelope.MaxStreamSegmentSize) // a caller's large buffer, outside the measure

	paths := map[string]func(r io.Reader, src []byte) error{
		"Read small": func(r io.Reader, _ []byte) error {
			var p [512]byte
			for {
				if _, err := r.Read(p[:]); err != nil {
					return err
				}
			}
		},
		"Read large": func(r io.Reader, _ []byte) error {
			for {
				if _, err := r.Read(big); err != nil {
					return err
				}
			}
		},
		"WriteTo": func(r io.Reader, _ []byte) error {
			_, err := r.(io.WriterTo).WriteTo(io.Discard)
			return err
		},
	}
	const bound = 64 << 10
	for _, body := range []int{0, 100, 8 << 10} {
		forged := append(bytes.Clone(hdr), streamData(body)...)
		for name, read := range paths {
			for _, src := range []string{"bytes.Reader", "reader"} {
				var err error
				n := bytesPerRun(20, func() {
					var in io.Reader = bytes.NewReader(forged)
					if src == "reader" {
						in = onlyReader{in}
					}
					r, derr := s.DecryptStream(ctx, in, patientBinding)
					require.NoError(t, derr)
					err = read(r, forged)
				})
				assert.ErrorIs(t, err, envelope.ErrDecrypt, "%s from a %s, body %d", name, src, body)
				assert.Less(t, n, uint64(bound), "%s from a %s, body %d: %d bytes allocated", name, src, body, n)
				t.Logf("%s from a %s, body %d: %d bytes", name, src, body, n)
			}
		}
	}

	// A longer body makes the reader grow, in proportion to what arrived:
	// the ciphertext buffer doubles (at most 2x the body, 4x in all its
	// sizes) and the plaintext buffer takes the segment that arrived.
	const body = 100 << 10
	forged := append(bytes.Clone(hdr), streamData(body)...)
	n := bytesPerRun(5, func() {
		r, err := s.DecryptStream(ctx, bytes.NewReader(forged), patientBinding)
		require.NoError(t, err)
		_, err = r.(io.WriterTo).WriteTo(io.Discard)
		require.ErrorIs(t, err, envelope.ErrDecrypt)
	})
	assert.Less(t, n, uint64(5*body+bound), "%d bytes allocated for a %d-byte body", n, body)
}
