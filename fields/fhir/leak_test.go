package fhir_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields/fhir"
)

// TestLeakCanary provokes every kind of error with a document full of
// canary PHI, and prints the errors and the package's values every way a
// program might log them: neither the PHI, nor a ciphertext, nor an index
// value may show.
func TestLeakCanary(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	e := v.compact
	const ssn, family, birth = "999-77-1234", "Canaryfamily", "1911-11-11"
	doc := []byte(`{"resourceType":"Patient","id":"p1","identifier":[{"type":{"coding":[{"code":"SS"}]},"value":"` + ssn +
		`"}],"name":[{"family":"` + family + `"}],"birthDate":"` + birth + `"}`)
	enc, err := e.Encrypt(ctx, doc)
	require.NoError(t, err)
	idx, err := fhir.ReadIndexes(enc)
	require.NoError(t, err)
	require.NotEmpty(t, idx)
	spans := ciphertexts(enc)
	require.NotEmpty(t, spans)
	ct := string(enc[spans[0][0]+1 : spans[0][1]-1])
	extValue := string(enc[bytes.Index(enc, []byte(`"valueBase64Binary":"`))+len(`"valueBase64Binary":"`):])
	extValue = extValue[:strings.IndexByte(extValue, '"')]

	var errs []error
	add := func(err error) {
		require.Error(t, err)
		errs = append(errs, err)
	}
	_, err = e.Encrypt(ctx, append(append([]byte(nil), doc[:len(doc)-1]...), `,"x":`...)) // syntax error right after the PHI
	add(err)
	_, err = e.Encrypt(ctx, bytes.Replace(doc, []byte(`"id":"p1",`), nil, 1)) // no id
	add(err)
	_, err = e.Encrypt(ctx, enc) // already encrypted
	add(err)
	_, err = e.Decrypt(ctx, bytes.Replace(enc, []byte(`"id":"p1"`), []byte(`"id":"p2"`), 1)) // moved
	add(err)
	_, err = e.Decrypt(ctx, replaceSpan(enc, spans[1], []byte(`"`+family+`"`))) // plaintext swapped in
	add(err)
	_, err = e.Decrypt(ctx, replaceSpan(enc, spans[0], []byte(`"phicrypt:`+ct[len("phicrypt:"):len(ct)-3]+`"`))) // truncated
	add(err)
	_, err = e.EncryptNDJSON(ctx, &bytes.Buffer{}, strings.NewReader(string(doc)+"\n"+string(doc[:60])+"\n"), fhir.NDJSONOptions{})
	add(err)
	_, err = e.EncryptNDJSON(ctx, &bytes.Buffer{}, strings.NewReader(string(doc)), fhir.NDJSONOptions{MaxLineSize: 10})
	add(err)
	_, err = e.Encrypt(ctx, []byte(`{"resourceType":"Patient","id":"p1","name":"`+family+`"}`)) // odd shape
	add(err)
	_, err = e.Encrypt(ctx, []byte(`{"resourceType":"`+strings.ToLower(family)+`","id":"p1"}`)) // invalid resourceType
	add(err)
	_, err = e.Encrypt(ctx, []byte(`{"resourceType":"Basic","id":"p1","code":{"text":"`+family+`"}}`)) // unknown type
	add(err)
	var rejected []error
	var rep fhir.Report
	_, err = e.DecryptNDJSON(ctx, &bytes.Buffer{}, strings.NewReader(string(enc)+"\n"+string(doc)+"\n"), fhir.NDJSONOptions{
		Report: &rep, Reject: func(le *fhir.LineError, _ []byte) error { rejected = append(rejected, le); return nil }})
	add(err)
	require.Len(t, rejected, 1)
	errs = append(errs, rejected...)
	_, err = fhir.ParsePath("identifier.where(value = '" + ssn) // a path is configuration: it may quote itself, not data
	require.Error(t, err)

	// The year alone would match hex pointers in %v output; year and month
	// cannot.
	secrets := []string{ssn, family, birth, birth[:7], ct[len(envelope.ArmorPrefix):], extValue}
	objects := []any{e, fhir.Progress{Lines: 1}, idx[0], idx, fhir.Resource{Type: "Patient", ID: "p1"}, rep}
	for _, err := range errs {
		objects = append(objects, err)
	}
	for i, obj := range objects {
		var out []string
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			out = append(out, fmt.Sprintf(verb, obj))
		}
		var buf bytes.Buffer
		// Without the time, whose digits could hold a canary by chance.
		noTime := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}
		slog.New(slog.NewJSONHandler(&buf, noTime)).Info("m", "v", obj)
		slog.New(slog.NewTextHandler(&buf, noTime)).Info("m", "v", obj)
		out = append(out, buf.String())
		if j, err := json.Marshal(obj); err == nil {
			out = append(out, string(j))
		}
		for _, s := range out {
			for _, secret := range secrets {
				assert.NotContains(t, s, secret, "object %d (%T)", i, obj)
			}
		}
	}
}
