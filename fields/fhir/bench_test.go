package fhir

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"runtime"
	"strconv"
	"testing"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

// The NDJSON benchmarks run on the 1,144 bulk Patients (3.8 MB) and report
// MB/s of input. The baseline parses and re-writes each line with
// encoding/json, without encryption (json-decode-encode), sequentially
// and through the same parallel pipeline as EncryptNDJSON. Compare them
// in one run:
//
//	go test -run '^$' -bench NDJSON -benchmem ./fields/fhir

func benchEncryptors(b *testing.B) (compact, self, indexed *Encryptor) {
	b.Helper()
	data, err := local.Generate(local.Options{KeyID: "local:bench"})
	must(b, err)
	kek, err := local.New(local.Config{Data: data})
	must(b, err)
	kr, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore()})
	must(b, err)
	codec, err := fields.NewCodec(fields.Config{Keyring: kr})
	must(b, err)
	c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr, Encoding: envelope.Text})
	must(b, err)
	sc, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, Encoding: envelope.Text})
	must(b, err)
	scope := FixedScope("tenant:bench")
	compact, err = NewEncryptor(Config{Cipher: c, Scope: scope})
	must(b, err)
	self, err = NewEncryptor(Config{Cipher: sc, Scope: scope})
	must(b, err)
	indexed, err = NewEncryptor(Config{Cipher: c, Scope: scope, Codec: codec, IndexScope: scope,
		Indexes: []Index{SSNIndex(16), MRNIndex(16)}})
	must(b, err)
	return compact, self, indexed
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// jsonRewrite is the baseline's work per line: decode into Go values,
// encode again.
func jsonRewrite(_ context.Context, dst, line []byte, _ *Report) ([]byte, error) {
	var v any
	if err := json.Unmarshal(line, &v); err != nil {
		return dst, err
	}
	out, err := json.Marshal(v)
	return append(dst, out...), err
}

func BenchmarkNDJSON(b *testing.B) {
	ctx := context.Background()
	in, err := os.ReadFile("../../testdata/fhir-synthea/bulk-1000/Patient.000.ndjson")
	must(b, err)
	compact, self, indexed := benchEncryptors(b)
	var enc bytes.Buffer
	_, err = compact.EncryptNDJSON(ctx, &enc, bytes.NewReader(in), NDJSONOptions{})
	must(b, err)
	encrypted := enc.Bytes()
	procs := runtime.GOMAXPROCS(0)

	run := func(name string, src []byte, f func(io.Writer, io.Reader) error) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(in))) // the plaintext file's size, for every case
			for b.Loop() {
				must(b, f(io.Discard, bytes.NewReader(src)))
			}
		})
	}
	run("json-decode-encode/sequential", in, func(w io.Writer, r io.Reader) error {
		for _, line := range bytes.Split(in, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			out, err := jsonRewrite(ctx, nil, line, nil)
			if err != nil {
				return err
			}
			w.Write(out)
		}
		return nil
	})
	for _, workers := range []int{1, procs} {
		opt := NDJSONOptions{Workers: workers}
		suffix := "/workers=" + strconv.Itoa(workers)
		run("json-decode-encode"+suffix, in, func(w io.Writer, r io.Reader) error {
			_, err := compact.ndjson(ctx, w, r, opt, jsonRewrite)
			return err
		})
		run("encrypt-compact"+suffix, in, func(w io.Writer, r io.Reader) error {
			_, err := compact.EncryptNDJSON(ctx, w, r, opt)
			return err
		})
		run("decrypt-compact"+suffix, encrypted, func(w io.Writer, r io.Reader) error {
			_, err := compact.DecryptNDJSON(ctx, w, r, opt)
			return err
		})
	}
	opt := NDJSONOptions{Workers: procs}
	run("encrypt-compact-indexes/workers="+strconv.Itoa(procs), in, func(w io.Writer, r io.Reader) error {
		_, err := indexed.EncryptNDJSON(ctx, w, r, opt)
		return err
	})
	run("encrypt-self-contained/workers="+strconv.Itoa(procs), in, func(w io.Writer, r io.Reader) error {
		_, err := self.EncryptNDJSON(ctx, w, r, opt)
		return err
	})
}

// BenchmarkPatient encrypts and decrypts one Synthea Patient (3.3 KB, 38
// values) into a reused buffer.
func BenchmarkPatient(b *testing.B) {
	ctx := context.Background()
	in, err := os.ReadFile("../../testdata/fhir-synthea/bulk-1000/Patient.000.ndjson")
	must(b, err)
	doc := in[:bytes.IndexByte(in, '\n')]
	compact, _, _ := benchEncryptors(b)
	enc, err := compact.Encrypt(ctx, doc)
	must(b, err)
	var buf []byte
	b.Run("encrypt", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		b.ReportAllocs()
		for b.Loop() {
			buf, err = compact.AppendEncrypt(ctx, buf[:0], doc)
			must(b, err)
		}
	})
	b.Run("decrypt", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		b.ReportAllocs()
		for b.Loop() {
			buf, err = compact.AppendDecrypt(ctx, buf[:0], enc)
			must(b, err)
		}
	})
	b.Run("json-decode-encode", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		b.ReportAllocs()
		for b.Loop() {
			buf, err = jsonRewrite(ctx, buf[:0], doc, nil)
			must(b, err)
		}
	})
}
