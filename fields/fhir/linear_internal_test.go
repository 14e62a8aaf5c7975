package fhir

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

// linearEncryptor is an Encryptor over a compact cipher, with profile p.
func linearEncryptor(t *testing.T, p *Profile) *Encryptor {
	t.Helper()
	data, err := local.Generate(local.Options{KeyID: "local:linear-test"})
	require.NoError(t, err)
	kek, err := local.New(local.Config{Data: data})
	require.NoError(t, err)
	kr, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore()})
	require.NoError(t, err)
	c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr, Encoding: envelope.Text})
	require.NoError(t, err)
	e, err := NewEncryptor(Config{Cipher: c, Scope: FixedScope("tenant:test"), Profile: p})
	require.NoError(t, err)
	return e
}

func list(n int, item func(i int) string) string {
	items := make([]string, n)
	for i := range items {
		items[i] = item(i)
	}
	return strings.Join(items, ",")
}

// TestLinearWork: the work of Encrypt grows linearly with the number of
// values in one object or array. It took time in the square of it (40,000
// given names with a _given array of nulls: 90 s): a scan of the object
// for each selected member's _name companion, and a check of the whole
// _given for each given name. It counts the members scanned and the
// shape checks made, for n and 4n values.
func TestLinearWork(t *testing.T) {
	ctx := context.Background()
	harbor := SafeHarbor()
	harbor.SafeHarbor.AsOf = "2026-06-01"
	for name, c := range map[string]struct {
		e   *Encryptor
		doc func(n int) string
	}{
		"given and _given": {linearEncryptor(t, USCore()), func(n int) string {
			return `{"resourceType":"Patient","id":"x","name":[{"given":[` + list(n, func(int) string { return `"a"` }) +
				`],"_given":[` + list(n, func(int) string { return "{}" }) + `]}]}`
		}},
		"members of one object": {linearEncryptor(t, harbor), func(n int) string {
			return `{"resourceType":"Basic","id":"x",` + list(n, func(i int) string { return fmt.Sprintf(`"d%d":"2020-01-02"`, i) }) + `}`
		}},
	} {
		t.Run(name, func(t *testing.T) {
			work := func(n int) int {
				w := c.e.getWork()
				defer c.e.putWork(w)
				_, err := w.encrypt(ctx, nil, []byte(c.doc(n)))
				require.NoError(t, err)
				return w.t.scans + w.checks
			}
			const n = 1000
			small, large := work(n), work(4*n)
			t.Logf("%d values: %d, %d values: %d", n, small, 4*n, large)
			assert.Less(t, large, 5*small, "work grows faster than the number of values")
		})
	}
}

// TestOutputGrowth: Encrypt grows its output geometrically. A Cipher may
// grow dst to the exact size it needs (envelope's do), which copied the
// whole output once per value: bytes allocated in the square of the
// number of values. It compares the bytes allocated for n and 4n values.
// exactCipher grows dst to the exact size each value needs, as a Cipher
// written without geometric growth would: the Encryptor must not copy its
// whole output once per value through it.
type exactCipher struct{ Cipher }

func (c exactCipher) AppendEncrypt(ctx context.Context, dst, plaintext []byte, b envelope.Binding) ([]byte, error) {
	ct, err := c.Cipher.AppendEncrypt(ctx, nil, plaintext, b)
	if err != nil {
		return dst, err
	}
	if cap(dst)-len(dst) < len(ct) {
		dst = append(make([]byte, 0, len(dst)+len(ct)), dst...)
	}
	return append(dst, ct...), nil
}

func TestOutputGrowth(t *testing.T) {
	t.Run("envelope", func(t *testing.T) { testOutputGrowth(t, linearEncryptor(t, USCore())) })
	t.Run("exact-growth cipher", func(t *testing.T) {
		e := linearEncryptor(t, USCore())
		e2, err := NewEncryptor(Config{Cipher: exactCipher{e.cipher}, Scope: FixedScope("tenant:test"), Profile: USCore()})
		require.NoError(t, err)
		testOutputGrowth(t, e2)
	})
}

func testOutputGrowth(t *testing.T, e *Encryptor) {
	ctx := context.Background()
	allocated := func(n int) uint64 {
		doc := []byte(`{"resourceType":"Patient","id":"x","name":[{"given":[` + list(n, func(int) string { return `"a"` }) + `]}]}`)
		_, err := e.Encrypt(ctx, doc) // warm the pools
		require.NoError(t, err)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = e.Encrypt(ctx, doc)
		require.NoError(t, err)
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	const n = 2000
	small, large := allocated(n), allocated(4*n)
	t.Logf("%d values: %d bytes allocated, %d: %d", n, small, 4*n, large)
	assert.Less(t, float64(large)/float64(small), 8.0, "bytes allocated grow faster than the number of values")
}
