package fhir

import (
	"context"
	"os"
	"testing"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

// BenchmarkProfiles encrypts and decrypts one Synthea Bundle (a patient's
// whole record, 638 KB) with the US Core and the Safe Harbor profiles,
// and compares them with a parse and rewrite by encoding/json. Compare
// them in one run:
//
//	go test -run '^$' -bench Profiles -benchmem ./fields/fhir
func BenchmarkProfiles(b *testing.B) {
	ctx := context.Background()
	doc, err := os.ReadFile("../../testdata/fhir-synthea/bundles/packt1k_Lemuel304_MacGyver246_e3a0ccfb.json")
	must(b, err)
	data, err := local.Generate(local.Options{KeyID: "local:bench"})
	must(b, err)
	kek, err := local.New(local.Config{Data: data})
	must(b, err)
	kr, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore()})
	must(b, err)
	c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr, Encoding: envelope.Text})
	must(b, err)
	harbor := SafeHarbor()
	harbor.SafeHarbor.AsOf = "2026-06-01"
	var buf []byte
	for _, p := range []*Profile{USCore(), harbor} {
		e, err := NewEncryptor(Config{Cipher: c, Scope: PatientScope("tenant:bench"), Profile: p})
		must(b, err)
		enc, err := e.Encrypt(ctx, doc)
		must(b, err)
		b.Run(p.Name+"/encrypt", func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				buf, err = e.AppendEncrypt(ctx, buf[:0], doc)
				must(b, err)
			}
		})
		b.Run(p.Name+"/decrypt", func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				buf, err = e.AppendDecrypt(ctx, buf[:0], enc)
				must(b, err)
			}
		})
	}
	b.Run("json-decode-encode", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		b.ReportAllocs()
		for b.Loop() {
			buf, err = jsonRewrite(ctx, buf[:0], doc, nil)
			must(b, err)
		}
	})
}
