package envelope_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/internal/format"
	"github.com/phicrypt/phicrypt/internal/kdf"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/local"
)

// TestLeakCanaryStream extends TestLeakCanary to streams: the writer and
// reader, caught holding plaintext, and every error of their failure paths
// must print neither the plaintext, nor the KEK, the data key, its AEAD
// key or the stream's key, nor the stream's bytes.
func TestLeakCanaryStream(t *testing.T) {
	ctx := context.Background()
	kekFile, err := local.Generate(local.Options{KeyID: "local:canary"})
	require.NoError(t, err)
	var f struct{ Keys []struct{ Secret []byte } }
	require.NoError(t, json.Unmarshal(kekFile, &f))
	kek, err := local.New(local.Config{Data: kekFile})
	require.NoError(t, err)
	s := newStreamer(t, kek, testSegment, 0)

	pt := bytes.Repeat([]byte(canary+" "), 20) // several segments
	ct := encryptAll(t, s, pt, patientBinding)

	// Recover the data key and the stream key from the stream, as an
	// attacker with the KEK would, to look for them.
	h, err := format.ParseHeader(ct)
	require.NoError(t, err)
	wrapAAD := format.AppendString([]byte{format.Magic, format.Version1, byte(format.FormSelfContained), byte(h.Suite)}, patientBinding.Scope)
	dek, err := kek.Unwrap(ctx, kms.WrappedKey{KeyID: string(h.KEKID), Ciphertext: h.Wrapped}, wrapAAD)
	require.NoError(t, err)
	aeadKey, err := kdf.Key(dek, kdf.LabelAEAD+"\x01", 32)
	require.NoError(t, err)
	streamKey, err := kdf.KeySalt(dek, h.Salt, kdf.LabelStreamKey+"\x01", 32)
	require.NoError(t, err)
	secrets := [][]byte{[]byte(canary), f.Keys[0].Secret, dek, aeadKey, streamKey}

	// A writer holding buffered plaintext, and one that has sealed some.
	w, err := s.EncryptStream(ctx, io.Discard, patientBinding)
	require.NoError(t, err)
	_, err = w.Write([]byte(canary))
	require.NoError(t, err)
	w2, err := s.EncryptStream(ctx, io.Discard, patientBinding)
	require.NoError(t, err)
	_, err = w2.Write(pt)
	require.NoError(t, err)
	// A reader holding plaintext it has not returned yet.
	r, err := s.DecryptStream(ctx, bytes.NewReader(ct), patientBinding)
	require.NoError(t, err)
	_, err = io.ReadFull(r, make([]byte, 3))
	require.NoError(t, err)
	info, err := envelope.Inspect(ct)
	require.NoError(t, err)
	objects := []any{w, w2, r, s, *s, info}

	// Errors from every failure path.
	moved := patientBinding
	moved.RecordID = "other"
	damaged := bytes.Clone(ct)
	damaged[len(damaged)/2] ^= 1
	for _, c := range []struct {
		ct []byte
		b  envelope.Binding
	}{{ct, moved}, {damaged, patientBinding}, {ct[:len(ct)-5], patientBinding}, {ct[:40], patientBinding}, {pt, patientBinding}} {
		_, err := decryptAll(ctx, s, c.ct, c.b)
		require.Error(t, err)
		objects = append(objects, err)
	}
	fw := &failingWriter{n: 300, err: errors.New("disk full")}
	w3, err := s.EncryptStream(ctx, fw, patientBinding)
	require.NoError(t, err)
	_, e1 := w3.Write(pt)
	e2 := w3.Close()
	w4, err := s.EncryptStream(ctx, io.Discard, patientBinding)
	require.NoError(t, err)
	_, err = w4.Write(pt)
	require.NoError(t, err)
	require.NoError(t, w4.Close())
	_, e3 := w4.Write(pt)
	cctx, cancel := context.WithCancel(ctx)
	w5, err := s.EncryptStream(cctx, io.Discard, patientBinding)
	require.NoError(t, err)
	cancel()
	_, e4 := w5.Write(pt)
	_, e5 := s.DecryptStream(ctx, bytes.NewReader(pt), patientBinding)
	objects = append(objects, e1, e2, e3, e4, e5)

	for i, obj := range objects {
		for _, rendering := range renderings(obj) {
			for _, secret := range secrets {
				for _, enc := range encodings(secret) {
					require.NotContains(t, rendering, enc, "object %d (%T) leaks a secret", i, obj)
				}
			}
			assert.NotContains(t, rendering, hex.EncodeToString(ct[len(ct)-16:]), "object %d (%T) shows the stream", i, obj)
		}
	}
	assert.Equal(t, "envelope.streamWriter{Suite: AES-256-GCM, SegmentSize: 256, Segments: 0}", fmtString(w))
	assert.Equal(t, "envelope.streamReader{Suite: AES-256-GCM, SegmentSize: 256, Segments: 1}", fmtString(r))
}

func fmtString(v any) string { return renderings(v)[0] }
