package fields_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
)

// pair is a record with two encrypted fields, so that a test can tell
// which record and field an error comes from.
type pair struct {
	ID       string        `phi:"id,table=pairs"`
	TenantID string        `phi:"scope"`
	A        fields.String `phi:"encrypt"`
	B        fields.String `phi:"encrypt"`
}

// scannedPairs returns n records as Scan leaves them: sealed, then their
// ciphertexts read back.
func scannedPairs(t *testing.T, c *fields.Codec, n int) []*pair {
	t.Helper()
	ctx := context.Background()
	sealed := make([]*pair, n)
	for i := range sealed {
		sealed[i] = &pair{ID: fmt.Sprint(i), TenantID: "tenant:spread", A: fields.New(fmt.Sprint("a", i)), B: fields.New(fmt.Sprint("b", i))}
	}
	require.NoError(t, c.Seal(ctx, sealed))
	out := make([]*pair, n)
	for i, p := range sealed {
		out[i] = &pair{ID: p.ID, TenantID: p.TenantID}
		a, _ := p.A.Value()
		b, _ := p.B.Value()
		require.NoError(t, out[i].A.Scan(a))
		require.NoError(t, out[i].B.Scan(b))
	}
	return out
}

// TestOpenSpreadBatch: a large batch, which Open spreads over goroutines,
// opens every record as a serial run does.
func TestOpenSpreadBatch(t *testing.T) {
	c := newCodec(t, fields.Config{})
	ps := scannedPairs(t, c, 3000)
	require.NoError(t, c.Open(context.Background(), ps))
	for i, p := range ps {
		require.Equal(t, fmt.Sprint("a", i), p.A.Get())
		require.Equal(t, fmt.Sprint("b", i), p.B.Get())
	}
}

// TestOpenSpreadFirstError: with two failing records in a spread batch,
// Open returns the first one's error, as a serial run would, even when a
// later chunk fails sooner, and every record before it is opened.
func TestOpenSpreadFirstError(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	for range 20 {
		ps := scannedPairs(t, c, 2048)
		// Record 255 ends the first chunk, 256 starts the second: the
		// second chunk's goroutine fails first.
		ps[255].ID = "moved" // its values were bound to id 255
		ps[256].TenantID = "tenant:other"
		requireFailedAt255(t, c.Open(ctx, ps), ps)
	}
}

// requireFailedAt255 checks that err is the failure of record 255's
// first field, and that every record before it was opened.
func requireFailedAt255(t *testing.T, err error, ps []*pair) {
	t.Helper()
	require.ErrorIs(t, err, envelope.ErrDecrypt)
	var fe *fields.FieldError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, "A", fe.Field)
	for i := range 255 {
		require.True(t, ps[i].A.Opened() && ps[i].B.Opened(), "record %d", i)
	}
	assert.False(t, ps[255].A.Opened())
}

// TestOpenSpreadCanceled: a canceled context stops a spread batch.
func TestOpenSpreadCanceled(t *testing.T) {
	c := newCodec(t, fields.Config{})
	ps := scannedPairs(t, c, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, c.Open(ctx, ps), context.Canceled)
	assert.False(t, ps[len(ps)-1].A.Opened())
}

// TestScanBytesCopies: ScanBytes keeps a copy of the driver's memory,
// which the driver reuses for the next row, and takes nil as NULL.
func TestScanBytesCopies(t *testing.T) {
	c := newCodec(t, fields.Config{Binary: true})
	ps := scannedPairs(t, c, 2)
	row := make([]byte, 0, 256)
	var got pair
	got.ID, got.TenantID = ps[0].ID, ps[0].TenantID
	a, _ := ps[0].A.Value()
	row = append(row[:0], a.([]byte)...)
	require.NoError(t, got.A.ScanBytes(row))
	b, _ := ps[1].A.Value() // the next row, in the same driver buffer
	copy(row[:cap(row)], b.([]byte))
	require.NoError(t, got.B.ScanBytes(nil))
	require.NoError(t, c.Open(context.Background(), &got))
	assert.Equal(t, "a0", got.A.Get())
	assert.True(t, got.B.IsNull())
}

// TestScanRefusesValuesOver4GiB: a ciphertext's length is kept in 32 bits,
// so Scan refuses a longer value with envelope.ErrTooLarge, as bytes, as
// text and through ScanBytes, and leaves the field empty, instead of
// keeping a truncated length. The 4 GiB buffer is never written, so the
// operating system does not back it with memory.
func TestScanRefusesValuesOver4GiB(t *testing.T) {
	if strconv.IntSize < 64 {
		t.Skip("a 4 GiB slice needs a 64-bit platform")
	}
	one := 1
	huge := make([]byte, one<<32)
	for name, scan := range map[string]func(*fields.Encrypted[string]) error{
		"bytes":     func(e *fields.Encrypted[string]) error { return e.Scan(huge) },
		"text":      func(e *fields.Encrypted[string]) error { return e.Scan(unsafe.String(&huge[0], len(huge))) },
		"ScanBytes": func(e *fields.Encrypted[string]) error { return e.ScanBytes(huge) },
	} {
		t.Run(name, func(t *testing.T) {
			e := fields.New("kept until the scan")
			err := scan(&e)
			require.ErrorIs(t, err, envelope.ErrTooLarge)
			assert.Contains(t, err.Error(), "4294967296 bytes")
			v, verr := e.Value()
			assert.NoError(t, verr)
			assert.Nil(t, v, "the field is empty")
			assert.True(t, e.IsNull())
		})
	}
}
