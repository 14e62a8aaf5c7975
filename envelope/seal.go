package envelope

import (
	"crypto/cipher"
	"slices"

	"github.com/phicrypt/phicrypt/internal/alias"
	"github.com/phicrypt/phicrypt/internal/format"
)

// maxOverhead is the largest difference between a binary ciphertext and its
// plaintext: the largest self-contained header plus the largest nonce and
// tag.
var maxOverhead = format.SelfContainedHeaderSize(format.MaxKEKIDSize, format.MaxWrappedSize) + 24 + 16

// appendSeal appends hdr || a.Seal(plaintext) in encoding enc to dst, with
// the AAD hdr || binding. The AAD (and, for Text, the binary form) are built
// in dst's spare capacity, past the output: if dst has room, and that room
// does not overlap plaintext, sealing makes no allocation; otherwise it
// makes one.
func appendSeal(dst []byte, a cipher.AEAD, enc Encoding, hdr, plaintext []byte, b *Binding, extra []Attr, bindingSize int) []byte {
	binLen := len(hdr) + a.Overhead() + len(plaintext)
	outLen, binAt := binLen, 0
	if enc == Text {
		outLen = format.ArmoredLen(binLen)
		binAt = outLen
	}
	aadAt := binAt + binLen
	need := aadAt + len(hdr) + bindingSize
	base := len(dst)
	if cap(dst)-base < need || alias.AnyOverlap(dst[base:cap(dst)], plaintext) {
		dst = regrow(dst, need)
	}
	buf := dst[base : base+need]
	aad := b.appendAAD(append(buf[aadAt:aadAt], hdr...), extra)
	bin := a.Seal(append(buf[binAt:binAt], hdr...), nil, plaintext, aad)
	if enc == Text {
		format.AppendArmor(buf[:0], bin)
	}
	return dst[:base+outLen]
}

// grow returns dst with room for need more bytes past its length, in a new
// array if dst lacks the room or its spare capacity overlaps in.
func grow(dst []byte, need int, in []byte) []byte {
	if cap(dst)-len(dst) < need || alias.AnyOverlap(dst[len(dst):cap(dst)], in) {
		return regrow(dst, need)
	}
	return dst
}

// regrow returns dst's bytes in a new array with room for need more, grown
// as append grows: a caller appending value after value to one buffer
// copies it O(log n) times, not once per value.
func regrow(dst []byte, need int) []byte {
	return slices.Grow(dst[:len(dst):len(dst)], need)
}

// opening is a ciphertext whose header has been parsed, and the buffer its
// plaintext will be appended to.
type opening struct {
	h   format.Header
	bin []byte // the binary form
	dst []byte
	// armored is set when bin was decoded into dst's spare capacity, past
	// the room for the plaintext and the AAD.
	armored bool
}

// newOpening decodes ciphertext (binary or armored), parses its header and
// checks that its plaintext would be at most max bytes, before any
// allocation for an oversized input. bindingSize is the size of the
// Binding's encoding; dst is where the plaintext will be appended.
func newOpening(dst, ciphertext []byte, bindingSize, max int) (opening, error) {
	o := opening{bin: ciphertext, dst: dst}
	if format.IsArmored(ciphertext) {
		n := format.DecodedLen(len(ciphertext))
		if n < 0 {
			return o, &FormatError{Field: "armor", Offset: -1, Reason: "impossible length"}
		}
		if n > max+maxOverhead {
			return o, ErrTooLarge
		}
		// The plaintext and the AAD (header and binding) together take at
		// most n+bindingSize bytes: they go before the decoded input.
		o.dst = grow(dst, n+bindingSize+n, ciphertext)
		at := len(o.dst) + n + bindingSize
		bin, err := format.Dearmor(o.dst[at:at+n], ciphertext)
		if err != nil {
			return o, err
		}
		o.bin, o.armored = bin, true
	}
	h, err := format.Parse(o.bin)
	if err != nil {
		return o, err
	}
	o.h = h
	nonce, tag, _ := h.Suite.Params()
	if len(o.bin)-h.Size-nonce-tag > max {
		return o, ErrTooLarge
	}
	return o, nil
}

// open authenticates and decrypts the body with a, binding b, whose
// encoding is bindingSize bytes, and appends the plaintext to o.dst. On
// failure it returns nil.
func (o *opening) open(a cipher.AEAD, b *Binding, extra []Attr, bindingSize int) ([]byte, error) {
	return openBody(o.dst, a, o.bin, o.h.Size, b, extra, bindingSize, o.armored)
}

// openBody authenticates and decrypts the body of the binary ciphertext
// bin, whose header is its first hdrSize bytes, with a, binding b (whose
// encoding is bindingSize bytes), and appends the plaintext to dst. The
// AAD is built in dst's spare capacity past the plaintext, which must
// have room for it when roomy is set (an armored input decoded there);
// otherwise dst grows when it lacks the room or its spare capacity
// overlaps bin. On failure it returns nil.
func openBody(dst []byte, a cipher.AEAD, bin []byte, hdrSize int, b *Binding, extra []Attr, bindingSize int, roomy bool) ([]byte, error) {
	body := bin[hdrSize:]
	n := len(body) - a.Overhead()
	if n < 0 {
		return nil, ErrDecrypt
	}
	need := n + hdrSize + bindingSize
	if !roomy {
		dst = grow(dst, need, bin)
	}
	base := len(dst)
	buf := dst[base : base+need]
	aad := b.appendAAD(append(buf[n:n], bin[:hdrSize]...), extra)
	if _, err := a.Open(buf[:0], nil, body, aad); err != nil {
		return nil, ErrDecrypt
	}
	return dst[:base+n], nil
}
