package fields_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"strings"
)

// naiveIndex is a blind index as commonly hand-written: normalize with
// strings functions, hmac.New per call.
func naiveIndex(key []byte, ssn string) []byte {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, ssn)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(digits))
	return m.Sum(nil)[:2]
}
