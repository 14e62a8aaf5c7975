package envelope_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/kms/local"
)

// A large attachment is encrypted and decrypted as a stream, in bounded
// memory. Nothing is final until Close, and a stream cut short fails.
func ExampleSelfContained_EncryptStream() {
	ctx := context.Background()
	keyFile, err := local.Generate(local.Options{KeyID: "local:example"})
	if err != nil {
		log.Fatal(err)
	}
	kek, err := local.New(local.Config{Data: keyFile})
	if err != nil {
		log.Fatal(err)
	}
	sc, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek})
	if err != nil {
		log.Fatal(err)
	}
	b := envelope.Binding{Scope: "tenant:st-mary", Table: "document_reference", Column: "content", RecordID: "doc-17"}

	// A scanned document of 200,000 bytes; any io.Reader, such as an
	// *os.File, will do. The stream goes to any io.Writer.
	scan := strings.NewReader(strings.Repeat("%PDF-1.7 scanned discharge summary ", 5715)[:200_000])
	var stored bytes.Buffer
	w, err := sc.EncryptStream(ctx, &stored, b)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := io.Copy(w, scan); err != nil {
		log.Fatal(err)
	}
	if err := w.Close(); err != nil { // writes the final segment
		log.Fatal(err)
	}
	info, err := envelope.Inspect(stored.Bytes())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.Form, info.SegmentSize)

	r, err := sc.DecryptStream(ctx, bytes.NewReader(stored.Bytes()), b)
	if err != nil {
		log.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r) // only io.EOF means the whole stream was read
	fmt.Println(n, err)

	// The same stream without its last byte: the reader released three
	// authentic segments before it failed, which the caller must discard.
	r, err = sc.DecryptStream(ctx, bytes.NewReader(stored.Bytes()[:stored.Len()-1]), b)
	if err != nil {
		log.Fatal(err)
	}
	n, err = io.Copy(io.Discard, r)
	fmt.Println(n, errors.Is(err, envelope.ErrDecrypt))
	// Output:
	// stream 65536
	// 200000 <nil>
	// 196608 true
}
