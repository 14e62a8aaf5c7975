package envelope_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
)

// FuzzDecryptStream feeds arbitrary bytes to DecryptStream under the
// bindings of the stream golden vectors, through Read with buffers of a
// size the fuzzer picks, or through WriteTo from a source that pushes the
// whole input, pieces of it, or can only be read. The reader must never panic, must fail with a
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
		for mode := range uint16(5) {
			f.Add(tg.valid, uint8(i), 7<<3|mode)
			seeds++
		}
	}
	require.Positive(f, seeds, "fuzz corpus has no seeds")
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte, which uint8, chunk uint16) {
		tg := targets[int(which)%len(targets)]
		var (
			got []byte
			err error
		)
		switch size := int(chunk >> 3); chunk & 7 {
		case 0: // Read
			var r io.Reader
			if r, err = s.DecryptStream(ctx, bytes.NewReader(data), tg.b); err == nil {
				got, err = readWith(r, max(size, 1))
			}
		case 1: // Read, from a source returning half of each read
			var r io.Reader
			if r, err = s.DecryptStream(ctx, iotest.HalfReader(bytes.NewReader(data)), tg.b); err == nil {
				got, err = io.ReadAll(r)
			}
		case 2:
			got, err = copyFrom(ctx, s, bytes.NewReader(data), tg.b)
		case 3:
			got, err = copyFrom(ctx, s, &piecewise{data: data, rng: rand.New(rand.NewPCG(uint64(size), 0))}, tg.b)
		default:
			got, err = copyFrom(ctx, s, readerOnly{bytes.NewReader(data)}, tg.b)
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
