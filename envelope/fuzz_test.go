package envelope_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
)

// FuzzDecrypt feeds arbitrary bytes to both forms' Decrypt under the
// bindings of the golden vectors. Decrypt must never panic, must fail with a
// typed error, and may succeed only on an input that is byte for byte a
// golden ciphertext (in either encoding; several vectors share a key and
// binding), returning its plaintext: no other input authenticates
// (non-malleability).
func FuzzDecrypt(f *testing.F) {
	g := loadGolden(f)
	type target struct {
		d         aeadUnderTest
		b         envelope.Binding
		valid     [][]byte
		plaintext []byte
	}
	var targets []target
	all := goldenCiphertexts(f, g)
	for i, v := range g.Vectors {
		d, err := g.decrypter(f, v)
		require.NoError(f, err)
		pt, err := hex.DecodeString(v.Plaintext)
		require.NoError(f, err)
		targets = append(targets, target{d: d, b: v.Binding.binding(), valid: all[2*i : 2*i+2], plaintext: pt})
	}
	seeds := 0
	for i := range targets {
		for _, ct := range targets[i].valid {
			f.Add(ct, uint8(i))
			seeds++
		}
	}
	require.Positive(f, seeds, "fuzz corpus has no seeds")
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		tg := targets[int(which)%len(targets)]
		got, err := tg.d.Decrypt(ctx, data, tg.b)
		if err == nil {
			for _, other := range targets {
				for _, ct := range other.valid {
					if bytes.Equal(ct, data) {
						if !bytes.Equal(got, other.plaintext) {
							t.Fatalf("golden ciphertext decrypted to the wrong plaintext")
						}
						return
					}
				}
			}
			t.Fatalf("an input that is not a golden ciphertext decrypted (%d bytes)", len(data))
		}
		if classify(err) == "" {
			t.Fatalf("untyped error: %v", err)
		}
		if got != nil {
			t.Fatalf("failed decrypt returned data")
		}
		_, _ = envelope.Inspect(data) // must not panic either
	})
}

// FuzzRoundTrip encrypts arbitrary plaintexts under arbitrary bindings in
// both forms: each must decrypt to itself, and not under another record id.
func FuzzRoundTrip(f *testing.F) {
	kek, _ := newLocalKEK(f)
	fs := forms(f, kek)
	f.Add([]byte("999-12-3456"), "tenant:a", "rec-1")
	f.Add([]byte{}, "s", "")
	f.Add(bytes.Repeat([]byte{0}, 300), "tenant:\x00b", "r\xff")
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, pt []byte, scope, record string) {
		b := envelope.Binding{Scope: scope, Table: "patients", Column: "notes", RecordID: record}
		for name, fm := range fs {
			ct, err := fm.Encrypt(ctx, pt, b)
			if scope == "" || len(scope) > envelope.MaxScopeSize || len(record) > envelope.MaxBindingField {
				require.ErrorIs(t, err, envelope.ErrInvalidBinding, name)
				continue
			}
			require.NoError(t, err, name)
			got, err := fm.Decrypt(ctx, ct, b)
			require.NoError(t, err, name)
			require.Equal(t, pt, got, name)
			moved := b
			moved.RecordID += "'"
			_, err = fm.Decrypt(ctx, ct, moved)
			require.ErrorIs(t, err, envelope.ErrDecrypt, name)
		}
	})
}
