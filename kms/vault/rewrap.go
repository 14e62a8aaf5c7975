package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/internal/redact"
)

// batchItem is one result of a batch endpoint.
type batchItem struct {
	Ciphertext string `json:"ciphertext"`
	Plaintext  []byte `json:"plaintext"`
	Error      string `json:"error"`
}

type batchResults struct {
	Results []batchItem `json:"batch_results"`
}

// Rewrap re-encrypts wrapped keys under the key's latest version, in
// requests of at most Config.RewrapBatchSize keys. Each result's Err
// classifies that key's failure like Unwrap (a key of another KEK, a
// malformed or tampered ciphertext, a wrong AAD, a version below
// min_decryption_version); the error is for the whole call (unavailable
// Vault, permission denied, cancelled context), and then no results are
// returned.
//
// With a derived key (BindContext) the data keys never leave Vault:
// transit/rewrap decrypts and re-encrypts them with their context. With
// BindAssociatedData, since Vault's rewrap endpoint ignores associated_data,
// Rewrap calls transit/decrypt then transit/encrypt with batch_input: the
// data keys pass through this process's memory and are cleared after.
func (k *KEK) Rewrap(ctx context.Context, wks []kms.WrappedKey, aads [][]byte) ([]kms.RewrapResult, error) {
	if err := k.begin(ctx, "rewrap"); err != nil {
		return nil, err
	}
	if len(wks) != len(aads) {
		return nil, kms.NewError(ctx, "rewrap", k.id, kms.ErrInvalidInput,
			fmt.Errorf("%w: %d wrapped keys but %d AADs", kms.ErrInvalidInput, len(wks), len(aads)))
	}
	res := make([]kms.RewrapResult, len(wks))
	pending := make([]int, 0, len(wks))
	for i, wk := range wks {
		if err := k.checkUnwrap(wk, aads[i]); err != nil {
			res[i].Err = kms.NewError(ctx, "rewrap", k.id, kindOf(err), err)
			continue
		}
		pending = append(pending, i)
	}
	for len(pending) > 0 {
		chunk := pending[:min(len(pending), k.batchSize)]
		pending = pending[len(chunk):]
		var err error
		if k.binding == BindContext {
			err = k.rewrapChunk(ctx, chunk, wks, aads, res)
		} else {
			err = k.reencryptChunk(ctx, chunk, wks, aads, res)
		}
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

// rewrapChunk rewraps the keys at indexes idx in one transit/rewrap call.
func (k *KEK) rewrapChunk(ctx context.Context, idx []int, wks []kms.WrappedKey, aads [][]byte, res []kms.RewrapResult) error {
	body := []byte(`{"batch_input":[`)
	for n, i := range idx {
		if n > 0 {
			body = append(body, ',')
		}
		body = k.appendDecryptItem(body, wks[i].Ciphertext, aads[i])
	}
	body = append(body, "]}"...)
	var out batchResults
	if err := k.call(ctx, "rewrap", http.MethodPut, k.path("rewrap"), body, &out); err != nil {
		return err
	}
	if len(out.Results) != len(idx) {
		return kms.NewError(ctx, "rewrap", k.id, kms.ErrUnavailable,
			fmt.Errorf("vault: %d results for %d items", len(out.Results), len(idx)))
	}
	for n, i := range idx {
		res[i] = k.itemResult(ctx, "rewrap", out.Results[n])
	}
	return nil
}

// reencryptChunk rewraps the keys at indexes idx with one transit/decrypt
// and one transit/encrypt call, for keys bound with associated_data.
func (k *KEK) reencryptChunk(ctx context.Context, idx []int, wks []kms.WrappedKey, aads [][]byte, res []kms.RewrapResult) error {
	body := []byte(`{"batch_input":[`)
	for n, i := range idx {
		if n > 0 {
			body = append(body, ',')
		}
		body = k.appendDecryptItem(body, wks[i].Ciphertext, aads[i])
	}
	body = append(body, "]}"...)
	var dec batchResults
	defer func() {
		for _, r := range dec.Results {
			clear(r.Plaintext)
		}
	}()
	if err := k.batchCall(ctx, k.path("decrypt"), body, &dec, len(idx)); err != nil {
		return err
	}

	enc := make([]int, 0, len(idx)) // positions in idx that decrypted
	body = []byte(`{"batch_input":[`)
	defer func() { clear(body) }()
	for n, i := range idx {
		r := dec.Results[n]
		if r.Error != "" {
			res[i] = k.itemResult(ctx, "rewrap", r)
			continue
		}
		if len(r.Plaintext) < kms.MinDataKeySize || len(r.Plaintext) > kms.MaxDataKeySize {
			res[i].Err = kms.NewError(ctx, "rewrap", k.id, kms.ErrUnwrapFailed, errors.New("vault: decrypted value is not a data key"))
			continue
		}
		if len(enc) > 0 {
			body = append(body, ',')
		}
		body = k.appendEncryptItem(body, r.Plaintext, aads[i])
		enc = append(enc, n)
	}
	body = append(body, "]}"...)
	if len(enc) == 0 {
		return nil
	}
	var out batchResults
	if err := k.batchCall(ctx, k.path("encrypt"), body, &out, len(enc)); err != nil {
		return err
	}
	for m, n := range enc {
		i := idx[n]
		res[i] = k.itemResult(ctx, "wrap", out.Results[m])
	}
	return nil
}

// batchCall calls a batch endpoint that answers 400 when some item failed,
// and accepts that answer when it holds one result per item.
func (k *KEK) batchCall(ctx context.Context, path string, body []byte, out *batchResults, n int) error {
	err := k.call(ctx, "rewrap", http.MethodPut, path, body, out)
	var se *ServerError
	if err != nil && !(errors.As(err, &se) && se.StatusCode == http.StatusBadRequest && len(out.Results) == n) {
		return err
	}
	if len(out.Results) != n {
		return kms.NewError(ctx, "rewrap", k.id, kms.ErrUnavailable, fmt.Errorf("vault: %d results for %d items", len(out.Results), n))
	}
	return nil
}

// itemResult converts one batch result into a RewrapResult.
func (k *KEK) itemResult(ctx context.Context, op string, r batchItem) kms.RewrapResult {
	if r.Error != "" {
		cause := errors.New("vault: " + redact.Message(r.Error))
		return kms.RewrapResult{Err: kms.NewError(ctx, "rewrap", k.id, messageKind(op, r.Error), cause)}
	}
	ct := []byte(r.Ciphertext)
	if _, err := parseCiphertext(ct); err != nil {
		return kms.RewrapResult{Err: kms.NewError(ctx, "rewrap", k.id, kms.ErrUnavailable, errors.New("vault: malformed ciphertext in response"))}
	}
	return kms.RewrapResult{Key: kms.WrappedKey{KeyID: k.id, Ciphertext: ct}}
}

// GenerateDataKey has Vault generate a random data key of size bytes (16,
// 32 or 64) and wrap it under the key's latest version, bound to aad, in
// one call (transit/datakey/plaintext). It returns the data key, which the
// caller should clear when done, and its wrapped form. Vault sends the data
// key back base64-encoded in the response; the bytes are decoded into a new
// slice and the response buffer is cleared.
//
// It needs a derived key (BindContext): transit/datakey cannot bind
// associated_data, so with BindAssociatedData it fails with
// kms.ErrInvalidInput.
func (k *KEK) GenerateDataKey(ctx context.Context, size int, aad []byte) ([]byte, kms.WrappedKey, error) {
	const op = "generate"
	if err := k.begin(ctx, op); err != nil {
		return nil, kms.WrappedKey{}, err
	}
	if size != 16 && size != 32 && size != 64 {
		return nil, kms.WrappedKey{}, kms.NewError(ctx, op, k.id, kms.ErrInvalidInput,
			fmt.Errorf("%w: data key size %d, want 16, 32 or 64 bytes", kms.ErrInvalidInput, size))
	}
	if len(aad) > kms.MaxAADSize {
		return nil, kms.WrappedKey{}, kms.NewError(ctx, op, k.id, kms.ErrInvalidInput,
			fmt.Errorf("%w: associated data is %d bytes, limit %d", kms.ErrInvalidInput, len(aad), kms.MaxAADSize))
	}
	if k.binding != BindContext {
		return nil, kms.WrappedKey{}, kms.NewError(ctx, op, k.id, kms.ErrInvalidInput,
			errors.New("vault: transit/datakey cannot bind associated data to a key that is not derived"))
	}
	body := fmt.Appendf(nil, `{"bits":%d,`, size*8)
	body = k.appendAAD(body, aad)
	body = append(body, '}')
	var out struct {
		Ciphertext string `json:"ciphertext"`
		Plaintext  []byte `json:"plaintext"`
	}
	if err := k.call(ctx, op, http.MethodPut, k.mount+"/datakey/plaintext/"+k.key, body, &out); err != nil {
		clear(out.Plaintext)
		return nil, kms.WrappedKey{}, err
	}
	ct := []byte(out.Ciphertext)
	if _, err := parseCiphertext(ct); err != nil || len(out.Plaintext) != size {
		clear(out.Plaintext)
		return nil, kms.WrappedKey{}, kms.NewError(ctx, op, k.id, kms.ErrUnavailable, errors.New("vault: malformed data key response"))
	}
	return out.Plaintext, kms.WrappedKey{KeyID: k.id, Ciphertext: ct}, nil
}
