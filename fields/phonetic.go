package fields

import (
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// appendNYSIIS appends the NYSIIS code of s to dst: the New York State
// Identification and Intelligence System phonetic code (R. L. Taft, "Name
// Search Techniques", 1970), in the rules that Apache Commons Codec
// documents and tests (testdata/phonetic/SOURCES in testdata/SOURCES.md).
// Letters are decomposed (NFD) and stripped of their marks, so "Müller"
// codes like "Muller"; everything but the letters A to Z is dropped, so a
// value without such letters codes to nothing. strict keeps the first six
// characters of the code, as the original algorithm does.
func appendNYSIIS(dst, s []byte, strict bool) []byte {
	// Clean: upper-case ASCII letters only, accents removed.
	var w []byte
	for _, r := range norm.NFD.String(string(s)) {
		r = unicode.ToUpper(r)
		if 'A' <= r && r <= 'Z' {
			w = append(w, byte(r))
		}
	}
	if len(w) == 0 {
		return dst
	}
	// 1. The first letters: MAC → MCC, KN → NN, K → C, PH and PF → FF,
	// SCH → SSS.
	switch {
	case hasPrefix(w, "MAC"):
		w[1] = 'C'
	case hasPrefix(w, "KN"):
		w[0] = 'N'
	case hasPrefix(w, "K"):
		w[0] = 'C'
	case hasPrefix(w, "PH"), hasPrefix(w, "PF"):
		w[0], w[1] = 'F', 'F'
	case hasPrefix(w, "SCH"):
		w[1], w[2] = 'S', 'S'
	}
	// 2. The last letters: EE and IE → Y; DT, RT, RD, NT and ND → D.
	if n := len(w); n >= 2 {
		switch string(w[n-2:]) {
		case "EE", "IE":
			w = append(w[:n-2], 'Y')
		case "DT", "RT", "RD", "NT", "ND":
			w = append(w[:n-2], 'D')
		}
	}
	// 3. The key starts with the first letter; 4. the others are
	// transcoded in place, left to right, and each one that differs from
	// the (transcoded) letter before it is added to the key.
	start := len(dst)
	dst = append(dst, w[0])
	at := func(i int) byte {
		if i < len(w) {
			return w[i]
		}
		return ' '
	}
	for i := 1; i < len(w); i++ {
		prev, cur, next, after := w[i-1], w[i], at(i+1), at(i+2)
		switch {
		case cur == 'E' && next == 'V':
			w[i], w[i+1] = 'A', 'F'
		case isVowel(cur):
			w[i] = 'A'
		case cur == 'Q':
			w[i] = 'G'
		case cur == 'Z':
			w[i] = 'S'
		case cur == 'M':
			w[i] = 'N'
		case cur == 'K' && next == 'N':
			w[i], w[i+1] = 'N', 'N'
		case cur == 'K':
			w[i] = 'C'
		case cur == 'S' && next == 'C' && after == 'H':
			w[i], w[i+1], w[i+2] = 'S', 'S', 'S'
		case cur == 'P' && next == 'H':
			w[i], w[i+1] = 'F', 'F'
		case cur == 'H' && (!isVowel(prev) || !isVowel(next)):
			w[i] = prev
		case cur == 'W' && isVowel(prev):
			w[i] = prev
		}
		if w[i] != w[i-1] {
			dst = append(dst, w[i])
		}
	}
	// 5. A final S goes; 6. a final AY becomes Y; 7. a final A goes.
	key := dst[start:]
	if len(key) > 1 {
		if key[len(key)-1] == 'S' {
			key = key[:len(key)-1]
		}
		last := key[len(key)-1]
		if len(key) > 2 && key[len(key)-2] == 'A' && last == 'Y' {
			key = append(key[:len(key)-2], 'Y')
		}
		if last == 'A' {
			key = key[:len(key)-1]
		}
	}
	if strict && len(key) > 6 {
		key = key[:6]
	}
	return dst[:start+len(key)]
}

func hasPrefix(w []byte, p string) bool { return len(w) >= len(p) && string(w[:len(p)]) == p }

func isVowel(c byte) bool { return c == 'A' || c == 'E' || c == 'I' || c == 'O' || c == 'U' }
