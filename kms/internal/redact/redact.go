// Package redact cleans messages that KMS servers return before backends
// put them in errors: a server may echo part of a request, and errors must
// never carry key material, AAD or ciphertexts.
package redact

import (
	"regexp"
	"strings"
)

// MaxMessage bounds the length of a message that Message returns.
const MaxMessage = 256

// patterns match what could be key material or a ciphertext: Vault
// ciphertexts, and runs of base64 or hex long enough to hold a 128-bit
// key (16 base64 or 32 hex characters).
var patterns = []*regexp.Regexp{
	regexp.MustCompile(`vault:v[0-9]+:[A-Za-z0-9+/=]*`),
	regexp.MustCompile(`[A-Za-z0-9+/_-]{16,}={0,2}`),
}

// Message replaces anything in msg that looks like key material or a
// ciphertext with "[redacted]", folds whitespace, and truncates the result
// to MaxMessage bytes. Identifiers of 16 characters or more without a
// separator (long key names, UUIDs without dashes) are redacted too: a
// message loses a little detail rather than risk a secret.
func Message(msg string) string {
	for _, re := range patterns {
		msg = re.ReplaceAllString(msg, "[redacted]")
	}
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > MaxMessage {
		// Cut on a rune boundary.
		cut := MaxMessage
		for cut > 0 && msg[cut]&0xC0 == 0x80 {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return msg
}

// Messages applies Message to each of msgs and drops empty results.
func Messages(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		if m = Message(m); m != "" {
			out = append(out, m)
		}
	}
	return out
}
