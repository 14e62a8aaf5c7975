package fields_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/internal/benchcmp"
)

// record10 is a patient record with ten encrypted fields, the unit of the
// design's performance targets.
type record10 struct {
	ID                              string        `phi:"id,table=patients"`
	Tenant                          string        `phi:"scope"`
	SSN, MRN, First, Last, Birth    fields.String `phi:"encrypt"`
	Street, City, Zip, Phone, Email fields.String `phi:"encrypt"`
}

var values10 = [10]string{"999-12-3456", "MRN-00042", "Lemuel304", "MacGyver246", "1972-03-14",
	"182 Stanton Neck Unit 15", "Boston", "02118", "555-012-3456", "lemuel304@example.org"}

func newRecord10() *record10 {
	v := values10
	return &record10{ID: "a52eed3a-6dd1-7729-b65c-1b5d73e7bbe0", Tenant: "tenant:st-mary",
		SSN: fields.New(v[0]), MRN: fields.New(v[1]), First: fields.New(v[2]), Last: fields.New(v[3]), Birth: fields.New(v[4]),
		Street: fields.New(v[5]), City: fields.New(v[6]), Zip: fields.New(v[7]), Phone: fields.New(v[8]), Email: fields.New(v[9])}
}

func (r *record10) all() []*fields.String {
	return []*fields.String{&r.SSN, &r.MRN, &r.First, &r.Last, &r.Birth, &r.Street, &r.City, &r.Zip, &r.Phone, &r.Email}
}

// BenchmarkRecord10 seals and opens a ten-field record through the tag
// API, against the same work written by hand with raw AES-256-GCM (the
// same AAD: scope, table, column, record id; a fresh slice per field). The
// comparison with go-kms-wrapping's structwrapping is in the bench module
// (../bench), so that this module does not require go-kms-wrapping. The
// vs-* sub-benchmarks interleave two of them and report their ratio
// (ours/base), which holds on a shared machine where separate runs do not.
func BenchmarkRecord10(b *testing.B) {
	ctx := context.Background()
	c := newCodec(b, fields.Config{Binary: true})
	rec := newRecord10()
	require.NoError(b, c.Seal(ctx, rec))
	seal := func() {
		for _, f := range rec.all() {
			f.Set(f.Get())
		}
		if err := c.Seal(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
	sealed := make([]any, 10)
	for i, f := range rec.all() {
		sealed[i], _ = f.Value()
	}
	// open starts from a record as Scan left it (a struct copy: copies
	// of an Encrypted are independent), as the raw loop starts from
	// ciphertexts in memory; scanOpen also scans, which copies each
	// ciphertext out of the driver's buffer.
	r := &record10{ID: rec.ID, Tenant: rec.Tenant}
	for i, f := range r.all() {
		f.Scan(sealed[i])
	}
	scanned := *r
	open := func() {
		*r = scanned
		if err := c.Open(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	scanOpen := func() {
		for i, f := range r.all() {
			f.Scan(sealed[i])
		}
		if err := c.Open(ctx, r); err != nil {
			b.Fatal(err)
		}
	}

	blk, _ := aes.NewCipher(make([]byte, 32))
	gcm, _ := cipher.NewGCMWithRandomNonce(blk)
	columns := [10]string{"ssn", "mrn", "first", "last", "birth", "street", "city", "zip", "phone", "email"}
	// The raw loop binds the same context as Codec does, unambiguously:
	// each string length-prefixed (without prefixes, "ab"+"c" and
	// "a"+"bc" would bind alike). Codec's AAD also starts with the
	// 8-byte header that names the key version.
	aad := func(dst []byte, col string) []byte {
		for _, s := range [...]string{"tenant:st-mary", "patients", col, rec.ID} {
			dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
			dst = append(dst, s...)
		}
		return dst
	}
	var raw [10][]byte
	var ad [128]byte
	rawSeal := func() {
		for i, v := range values10 {
			raw[i] = gcm.Seal(nil, nil, []byte(v), aad(ad[:0], columns[i]))
		}
	}
	rawSeal()
	rawOpen := func() {
		for i := range raw {
			if _, err := gcm.Open(nil, nil, raw[i], aad(ad[:0], columns[i])); err != nil {
				b.Fatal(err)
			}
		}
	}

	for _, bm := range []struct {
		name string
		f    func()
	}{{"phicrypt/Seal", seal}, {"phicrypt/Open", open}, {"phicrypt/ScanOpen", scanOpen}, {"raw/Seal", rawSeal}, {"raw/Open", rawOpen}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bm.f()
			}
		})
	}
	b.Run("vs-raw/Seal", func(b *testing.B) { benchcmp.Pair(b, 0, seal, rawSeal) })
	b.Run("vs-raw/Open", func(b *testing.B) { benchcmp.Pair(b, 0, open, rawOpen) })
}

// BenchmarkBlindIndex computes one SSN blind index (digits normalizer, 16
// bits) with a cached index key, against a naive HMAC-SHA-256.
func BenchmarkBlindIndex(b *testing.B) {
	ctx := context.Background()
	c := newCodec(b, fields.Config{})
	template := &tiny{TenantID: "tenant:st-mary", SSN: fields.New("999-12-3456")}
	_, err := c.IndexValue(ctx, template, "SSNIndex")
	require.NoError(b, err)
	b.Run("phicrypt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.IndexValue(ctx, template, "SSNIndex"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("naive-hmac", func(b *testing.B) {
		b.ReportAllocs()
		key := make([]byte, 32)
		for b.Loop() {
			naiveIndex(key, "999-12-3456")
		}
	})
}

// BenchmarkIndexTerms computes the search terms of one SSN with cached
// index keys: what every blind-index search costs before it reaches the
// database. A warm search makes no key store call (see keys.IndexKeys).
func BenchmarkIndexTerms(b *testing.B) {
	ctx := context.Background()
	c := newCodec(b, fields.Config{})
	template := &tiny{TenantID: "tenant:st-mary", SSN: fields.New("999-12-3456")}
	_, err := c.IndexTerms(ctx, template, "SSNIndex")
	require.NoError(b, err)
	terms := func() {
		if _, err := c.IndexTerms(ctx, template, "SSNIndex"); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("phicrypt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			terms()
		}
	})
	key := make([]byte, 32)
	b.Run("vs-naive-hmac", func(b *testing.B) {
		benchcmp.Pair(b, 0, terms, func() { naiveIndex(key, "999-12-3456") })
	})
}
