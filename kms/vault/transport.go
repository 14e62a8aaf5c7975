package vault

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/internal/redact"
)

// maxResponseSize bounds the response bodies read from Vault. A batch of
// MaxRewrapBatchSize results is under 4 MB.
const maxResponseSize = 16 << 20

// A ServerError is an error response from Vault: its HTTP status and its
// messages, in which anything that looks like a ciphertext or base64 data
// is redacted.
type ServerError struct {
	// Path is the API path, without "/v1/", e.g. "transit/encrypt/phi".
	Path string
	// StatusCode is the HTTP status.
	StatusCode int
	// Messages are Vault's error messages, redacted.
	Messages []string
}

// Error returns "vault: <path>: HTTP <status>: <messages>".
func (e *ServerError) Error() string {
	msg := fmt.Sprintf("vault: %s: HTTP %d", e.Path, e.StatusCode)
	if len(e.Messages) > 0 {
		msg += ": " + strings.Join(e.Messages, "; ")
	}
	return msg
}

// errIgnoredParameter means Vault ignored a parameter of a request, so the
// request did not do what was asked (an associated_data unknown to an old
// server would leave the AAD unbound).
var errIgnoredParameter = errors.New("vault: server ignored a request parameter")

// envelope is the JSON of Vault's responses.
type envelope struct {
	Data     any      `json:"data"`
	Errors   []string `json:"errors"`
	Warnings []string `json:"warnings"`
}

// call sends a request to Vault and decodes the response's data into data.
// Errors are *kms.Error values of op. For status 400, data is decoded too,
// since batch endpoints answer 400 with per-item results when some item
// failed; the error is then a *kms.Error wrapping a *ServerError.
func (k *KEK) call(ctx context.Context, op, method, path string, body []byte, data any) error {
	var (
		resp *api.Response
		err  error
	)
	switch method {
	case http.MethodGet:
		resp, err = k.client.Logical().ReadRawWithContext(ctx, path)
	default:
		resp, err = k.client.Logical().WriteRawWithContext(ctx, path, body)
	}
	if resp == nil {
		if err == nil {
			err = errors.New("vault: no response")
		}
		return k.error(ctx, op, err)
	}
	raw, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize+1))
	resp.Body.Close()
	defer clear(raw)
	if readErr != nil {
		return k.error(ctx, op, readErr)
	}
	if len(raw) > maxResponseSize {
		return kms.NewError(ctx, op, k.id, kms.ErrUnavailable, errors.New("vault: response too large"))
	}
	env := envelope{Data: data}
	decodeErr := json.Unmarshal(raw, &env)
	if resp.StatusCode/100 != 2 {
		return k.error(ctx, op, &ServerError{Path: path, StatusCode: resp.StatusCode, Messages: redact.Messages(env.Errors)})
	}
	if decodeErr != nil {
		return kms.NewError(ctx, op, k.id, kms.ErrUnavailable, errors.New("vault: malformed response"))
	}
	for _, w := range env.Warnings {
		if strings.Contains(w, "unrecognized parameters") {
			return kms.NewError(ctx, op, k.id, kms.ErrInvalidInput, fmt.Errorf("%w: %s", errIgnoredParameter, redact.Message(w)))
		}
	}
	return nil
}

// error classifies err, a transport error, an *api.ResponseError or a
// *ServerError, into a *kms.Error of op. A nil ctx skips the context check.
func (k *KEK) error(ctx context.Context, op string, err error) error {
	var kerr *kms.Error
	if errors.As(err, &kerr) {
		return err
	}
	var ae *authError
	if errors.As(err, &ae) {
		return kms.NewError(ctx, op, k.id, kms.ErrPermissionDenied, err)
	}
	err = toServerError(err)
	var se *ServerError
	if errors.As(err, &se) {
		return kms.NewError(ctx, op, k.id, statusKind(op, se), se)
	}
	// Anything else failed in transport: connection refused or reset,
	// timeouts, TLS handshakes, DNS. The cause names no secret, but may
	// hold a URL, which names only the path.
	if (ctx == nil || ctx.Err() == nil) && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		// Config.Timeout ended the request, not the caller: keep the
		// message but not the context error, so that the error is
		// transient (kms.IsTransient).
		err = errors.New("vault: request timed out: " + err.Error())
	}
	return kms.NewError(ctx, op, k.id, kms.ErrUnavailable, err)
}

// toServerError converts an *api.ResponseError, whose message holds the
// server's URL and unredacted messages, into a *ServerError.
func toServerError(err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return &ServerError{Path: strings.TrimPrefix(apiPath(re.URL), "/v1/"), StatusCode: re.StatusCode, Messages: redact.Messages(re.Errors)}
	}
	return err
}

// apiPath returns the path of a URL string.
func apiPath(u string) string {
	if i := strings.Index(u, "/v1/"); i >= 0 {
		u = u[i:]
	}
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	return u
}

// statusKind maps an error response to a kms sentinel.
func statusKind(op string, e *ServerError) error {
	switch c := e.StatusCode; {
	case c == http.StatusUnauthorized || c == http.StatusForbidden:
		return kms.ErrPermissionDenied
	case c == http.StatusNotFound:
		return kms.ErrKeyNotFound
	case c == http.StatusBadRequest:
		return messageKind(op, strings.Join(e.Messages, "; "))
	case c == http.StatusTooManyRequests:
		// A rate limit quota: retried, not counted by a breaker.
		return kms.ErrThrottled
	default:
		// 5xx (503: sealed or standby), 412 (a
		// performance standby not yet caught up), and anything unexpected.
		return kms.ErrUnavailable
	}
}

// messageKind classifies a refusal from its message: Vault answers 400
// both for a missing key and for a ciphertext that does not decrypt.
func messageKind(op, msg string) error {
	switch {
	case strings.Contains(msg, "key not found"):
		return kms.ErrKeyNotFound
	case strings.Contains(msg, "disallowed by policy"):
		// "ciphertext or signature version is disallowed by policy (too
		// old)": below min_decryption_version.
		return kms.ErrKeyNotFound
	case op == "unwrap" || op == "rewrap":
		return kms.ErrUnwrapFailed
	default:
		return kms.ErrInvalidInput
	}
}

// errMalformed is the cause of a ciphertext that does not parse.
var errMalformed = fmt.Errorf("%w: not a canonical Vault transit ciphertext", kms.ErrUnwrapFailed)

// minCiphertextBytes is the smallest decoded ciphertext that can hold a data
// key: a 96-bit nonce, MinDataKeySize bytes and a 128-bit tag.
const minCiphertextBytes = 12 + kms.MinDataKeySize + 16

// parseCiphertext checks that ct is "vault:v<version>:<base64>" with a
// positive decimal version without leading zeros and canonical, padded
// standard base64 of a plausible size, and returns the version. Any other
// form fails with an error matching kms.ErrUnwrapFailed.
func parseCiphertext(ct []byte) (int, error) {
	rest, ok := bytes.CutPrefix(ct, []byte("vault:v"))
	if !ok {
		return 0, errMalformed
	}
	digits, b64, ok := bytes.Cut(rest, []byte(":"))
	if !ok || len(digits) == 0 || len(digits) > 9 || digits[0] == '0' {
		return 0, errMalformed
	}
	version := 0
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, errMalformed
		}
		version = version*10 + int(c-'0')
	}
	if n, ok := canonicalBase64Len(b64); !ok || n < minCiphertextBytes {
		return 0, errMalformed
	}
	return version, nil
}

// strictBase64 rejects non-zero padding bits, so that each ciphertext has
// one encoding.
var strictBase64 = base64.StdEncoding.Strict()

// canonicalBase64Len reports whether s is canonical padded standard base64,
// and its decoded length. Go's decoder skips CR and LF even when strict, so
// they are refused here.
func canonicalBase64Len(s []byte) (int, bool) {
	if len(s) == 0 || len(s)%4 != 0 || bytes.ContainsAny(s, "\r\n") {
		return 0, false
	}
	buf := make([]byte, strictBase64.DecodedLen(len(s)))
	n, err := strictBase64.Decode(buf, s)
	return n, err == nil
}

// KeyVersion returns the version of the transit key that wrapped wk, from
// the "vault:v<version>:" prefix of its ciphertext. It fails with an error
// matching kms.ErrInvalidInput if wk is not a Vault transit ciphertext.
func KeyVersion(wk kms.WrappedKey) (int, error) {
	v, err := parseCiphertext(wk.Ciphertext)
	if err != nil {
		return 0, fmt.Errorf("%w: not a Vault transit ciphertext", kms.ErrInvalidInput)
	}
	return v, nil
}
