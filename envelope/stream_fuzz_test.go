package envelope_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
)

// FuzzDecryptStream feeds arbitrary bytes to DecryptStream under the
// bindings of the stream golden vectors, reading them in pieces whose size
// the fuzzer also picks. The reader must never panic, must fail with a
// typed error, and may reach io.EOF only on an input that is byte for byte
// a golden stream, returning its plaintext: no other input authenticates.
// Whatever it returns before an error must be a prefix of a golden
// stream's plaintext.
func FuzzDecryptStream(f *testing.F) {
	g := loadGoldenStream(f)
	s := g.decrypter(f)
	type target struct {
		b         envelope.Binding
		valid     []byte
		plaintext []byte
	}
	var targets []target
	for _, v := range g.Vectors {
		targets = append(targets, target{b: v.Binding.binding(), valid: v.ciphertext(f), plaintext: v.plaintext(f)})
	}
	seeds := 0
	for i, tg := range targets {
		f.Add(tg.valid, uint8(i), uint16(0))
		f.Add(tg.valid, uint8(i), uint16(7))
		seeds += 2
	}
	require.Positive(f, seeds, "fuzz corpus has no seeds")
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte, which uint8, chunk uint16) {
		tg := targets[int(which)%len(targets)]
		var src io.Reader = bytes.NewReader(data)
		if chunk%3 == 1 {
			src = iotest.HalfReader(src)
		}
		var got []byte
		r, err := s.DecryptStream(ctx, src, tg.b)
		if err == nil {
			if chunk == 0 {
				got, err = io.ReadAll(r)
			} else {
				got, err = readWith(r, int(chunk))
			}
		}
		_, _ = envelope.Inspect(data) // must not panic either
		if err == nil {
			for _, other := range targets {
				if bytes.Equal(other.valid, data) {
					if !bytes.Equal(got, other.plaintext) {
						t.Fatalf("golden stream decrypted to the wrong plaintext")
					}
					return
				}
			}
			t.Fatalf("an input that is not a golden stream decrypted (%d bytes)", len(data))
		}
		if classify(err) == "" {
			t.Fatalf("untyped error: %v", err)
		}
		for _, other := range targets {
			if len(got) <= len(other.plaintext) && bytes.Equal(got, other.plaintext[:len(got)]) {
				return
			}
		}
		t.Fatalf("a failing stream released %d bytes that no golden stream holds", len(got))
	})
}
