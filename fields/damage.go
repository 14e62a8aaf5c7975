package fields

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/phicrypt/phicrypt/envelope"
)

// ErrDamagedCiphertext means Open found a value that is not a ciphertext
// but is close to one (see Codec.Open for what "close" means): most likely
// a ciphertext damaged in storage or transit. It is never taken for legacy
// plaintext, in migration mode or not. The error also matches
// envelope.ErrDecrypt.
var ErrDamagedCiphertext = errors.New("fields: value looks like a damaged ciphertext")

var errDamaged = fmt.Errorf("%w: %w", ErrDamagedCiphertext, envelope.ErrDecrypt)

// maxArmorEdits and maxHeaderBitFlips say how close to a ciphertext a
// value must be to count as a damaged one.
const (
	maxArmorEdits     = 2
	maxHeaderBitFlips = 2
)

// nearCiphertext reports whether b, which has neither the binary magic nor
// the exact armor prefix, is close to a ciphertext:
//
//   - binary: its first 4 bytes are within maxHeaderBitFlips bit flips of
//     a valid header start (magic 0xF5, version 0x01, form 0x01-0x03,
//     suite 0x01-0x03);
//   - text: after removing leading white space, control characters,
//     byte order marks and quotes, some prefix of it is within
//     maxArmorEdits edits (insertions, deletions, substitutions or
//     transpositions of adjacent characters, ASCII case ignored) of
//     "phicrypt:";
//   - armor stripped: its first 8 characters, so trimmed, decode as
//     base64 (URL or standard alphabet) to bytes whose first 4 are close
//     to a header as above.
//
// A legacy plaintext that happens to be close is refused too: fail
// closed. Real values rarely are (a random 4-byte start is close to a
// header with probability about 1 in 900,000; a name or number starts
// within 2 edits of "phicrypt:" essentially never).
func nearCiphertext(b []byte) bool {
	if nearHeader(b) {
		return true
	}
	t := trimJunk(b)
	if armorDistance(t) <= maxArmorEdits {
		return true
	}
	if len(t) >= 8 {
		s := strings.NewReplacer("+", "-", "/", "_").Replace(string(t[:8]))
		if h, err := base64.RawURLEncoding.DecodeString(s); err == nil && nearHeader(h) {
			return true
		}
	}
	return false
}

// nearHeader reports whether b starts within maxHeaderBitFlips bit flips
// of a valid binary header start.
func nearHeader(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	for form := byte(1); form <= 3; form++ {
		for suite := byte(1); suite <= 3; suite++ {
			want := [4]byte{envelopeMagic, 0x01, form, suite}
			flips := 0
			for i := range want {
				flips += popcount(b[i] ^ want[i])
			}
			if flips <= maxHeaderBitFlips {
				return true
			}
		}
	}
	return false
}

func popcount(x byte) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// trimJunk removes leading white space, control and format characters
// (byte order marks, zero-width spaces) and quotes.
func trimJunk(b []byte) []byte {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if !(unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '"' || r == '\'' || r == '`') {
			break
		}
		b = b[n:]
	}
	return b
}

// armorDistance returns the least edit distance (optimal string alignment,
// ASCII case folded) between "phicrypt:" and a prefix of t.
func armorDistance(t []byte) int {
	const p = envelope.ArmorPrefix
	m := len(p)
	if len(t) > m+maxArmorEdits {
		t = t[:m+maxArmorEdits]
	}
	lower := func(c byte) byte {
		if 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	// d[i][j]: distance between p[:i] and t[:j].
	var d [len(envelope.ArmorPrefix) + 1][len(envelope.ArmorPrefix) + maxArmorEdits + 1]int
	for i := 0; i <= m; i++ {
		d[i][0] = i
	}
	for j := 0; j <= len(t); j++ {
		d[0][j] = j
	}
	for i := 1; i <= m; i++ {
		for j := 1; j <= len(t); j++ {
			cost := 1
			if p[i-1] == lower(t[j-1]) {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && p[i-1] == lower(t[j-2]) && p[i-2] == lower(t[j-1]) {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	best := m
	for j := 0; j <= len(t); j++ {
		best = min(best, d[m][j])
	}
	return best
}
