package fields_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
)

// FuzzScan feeds arbitrary column contents to the scanner and Open: never a
// panic, only typed errors, and success only for the genuine ciphertext.
func FuzzScan(f *testing.F) {
	ctx := context.Background()
	c := newCodec(f, fields.Config{})
	genuine := &tiny{ID: "r1", TenantID: "tenant:f", SSN: fields.New("999-12-3456")}
	require.NoError(f, c.Seal(ctx, genuine))
	v, err := genuine.SSN.Value()
	require.NoError(f, err)
	seeds := []string{v.(string), "999-12-3456", "", "phicrypt:", "phicrypt:AAAA", "\xf5\x01\x01\x01\x00\x00\x00\x01"}
	for _, s := range seeds {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	require.Positive(f, len(seeds))
	f.Fuzz(func(t *testing.T, in []byte, asString bool) {
		r := &tiny{ID: "r1", TenantID: "tenant:f"}
		var src any = in
		if asString {
			src = string(in)
		}
		if err := r.SSN.Scan(src); err != nil {
			t.Fatalf("Scan failed: %v", err)
		}
		err := c.Open(ctx, r)
		if err == nil {
			if string(in) != v.(string) {
				t.Fatalf("a value that is not the genuine ciphertext opened")
			}
			if r.SSN.Get() != "999-12-3456" {
				t.Fatalf("wrong plaintext")
			}
			return
		}
		var fe *envelope.FormatError
		switch {
		case errors.Is(err, envelope.ErrDecrypt), errors.Is(err, envelope.ErrNotEncrypted),
			errors.As(err, &fe), errors.Is(err, envelope.ErrKeyNotFound), errors.Is(err, fields.ErrTypeMismatch),
			errors.Is(err, envelope.ErrTooLarge):
		default:
			t.Fatalf("untyped error: %v", err)
		}
		if _, verr := r.SSN.Value(); verr == nil && !errors.Is(err, fields.ErrTypeMismatch) {
			// A value that failed to open may still be written back as
			// it was read, but never as plaintext.
			got, _ := r.SSN.Value()
			if s, ok := got.(string); ok && s != "" && s[0] != 'p' {
				t.Fatalf("a non-ciphertext value would be written back")
			}
		}
	})
}
