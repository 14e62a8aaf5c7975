package envelope

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"io"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/format"
	"github.com/phicrypt/phicrypt/internal/kdf"
	"github.com/phicrypt/phicrypt/kms/local"
)

// The tests in this file guard the key commitment of the self-contained
// form. The commitment is part of the header, and the header is part of the
// AEAD's associated data, so an attacker who only flips bits cannot get
// past the AEAD anyway: these tests play an attacker who knows the data
// keys (a malicious sender, or an insider with access to the KEK) and
// seals valid AEAD ciphertexts under headers that lie about the key. Only
// the constant-time comparison in openingKey stops them, and it must do so
// before the AEAD sees the body.

// countingAEAD counts Open calls of the AEAD it wraps.
type countingAEAD struct {
	cipher.AEAD
	opens atomic.Int64
}

func (c *countingAEAD) Open(dst, nonce, ciphertext, aad []byte) ([]byte, error) {
	c.opens.Add(1)
	return c.AEAD.Open(dst, nonce, ciphertext, aad)
}

// knownKey is a data key that the test knows, wrapped by the test's KEK
// for the self-contained form of one scope.
type knownKey struct {
	dek, wrapped, commitment []byte
	aesKey                   []byte // the AES-256-GCM key derived from dek
}

func newKnownKey(t *testing.T, kek *local.KEK, scope string) knownKey {
	t.Helper()
	dek := make([]byte, DEKSize)
	rand.Read(dek)
	wk, err := kek.Wrap(context.Background(), dek, wrapAAD(format.AES256GCM, scope))
	require.NoError(t, err)
	commitment, err := kdf.Key(dek, kdf.LabelCommitment, format.CommitmentSize)
	require.NoError(t, err)
	aesKey, err := kdf.Key(dek, kdf.LabelAEAD+string([]byte{byte(AES256GCM)}), 32)
	require.NoError(t, err)
	return knownKey{dek: dek, wrapped: wk.Ciphertext, commitment: commitment, aesKey: aesKey}
}

// header returns a self-contained header carrying k's wrapped key and the
// given commitment, which need not be k's.
func (k knownKey) header(t *testing.T, kekID string, commitment []byte) []byte {
	t.Helper()
	h, err := format.AppendSelfContainedHeader(nil, format.AES256GCM, kekID, k.wrapped, commitment)
	require.NoError(t, err)
	return h
}

// aad is the AEAD's associated data of a value with header hdr bound to b.
func aad(t *testing.T, hdr []byte, b Binding) []byte {
	t.Helper()
	extra, _, err := b.check()
	require.NoError(t, err)
	return b.appendAAD(append([]byte(nil), hdr...), extra)
}

// commitmentFixture is a SelfContained whose opening cache holds the
// unwrapped keys of k1 and k2 with counting AEADs, so that a test sees
// whether Decrypt reached AEAD-Open.
type commitmentFixture struct {
	s        *SelfContained
	kek      *local.KEK
	k1, k2   knownKey
	c1, c2   *countingAEAD
	b        Binding
	keyID    string
	openings func() int64
}

func newCommitmentFixture(t *testing.T) *commitmentFixture {
	t.Helper()
	ctx := context.Background()
	data, err := local.Generate(local.Options{KeyID: "local:commitment"})
	require.NoError(t, err)
	kek, err := local.New(local.Config{Data: data})
	require.NoError(t, err)
	s, err := NewSelfContained(SelfContainedConfig{KEK: kek})
	require.NoError(t, err)
	f := &commitmentFixture{s: s, kek: kek, b: Binding{Scope: "tenant:st-mary", Table: "documents", Column: "body", RecordID: "r-1"}, keyID: kek.KeyID()}
	f.k1, f.k2 = newKnownKey(t, kek, f.b.Scope), newKnownKey(t, kek, f.b.Scope)
	// Unwrap both keys through Decrypt's own path (honest headers), then
	// count what reaches their AEADs.
	for _, k := range []knownKey{f.k1, f.k2} {
		h, err := format.ParseHeader(k.header(t, f.keyID, k.commitment))
		require.NoError(t, err)
		_, _, err = s.openingKey(ctx, &h, f.b.Scope)
		require.NoError(t, err)
	}
	install := func(k knownKey) *countingAEAD {
		h, err := format.ParseHeader(k.header(t, f.keyID, k.commitment))
		require.NoError(t, err)
		ok, hit := s.opening.Lookup(string(appendOpeningCacheKey(nil, &h, f.b.Scope)))
		require.True(t, hit, "the unwrapped key is cached")
		c := &countingAEAD{AEAD: ok.aead}
		ok.aead = c
		return c
	}
	f.c1, f.c2 = install(f.k1), install(f.k2)
	f.openings = func() int64 { return f.c1.opens.Load() + f.c2.opens.Load() }
	return f
}

// TestCommitmentMismatchWithValidTag seals a value under k1 with a header
// that carries k1's wrapped key but another commitment, so that the AEAD
// tag is valid for that header: only the commitment check refuses it, and
// before AEAD-Open. Remove the comparison in openingKey and this test
// fails.
func TestCommitmentMismatchWithValidTag(t *testing.T) {
	ctx := context.Background()
	f := newCommitmentFixture(t)

	// The honest value opens, through the counting AEAD.
	hdr := f.k1.header(t, f.keyID, f.k1.commitment)
	a, err := deriveAEAD(AES256GCM, f.k1.dek)
	require.NoError(t, err)
	ct := a.Seal(append([]byte(nil), hdr...), nil, []byte("honest"), aad(t, hdr, f.b))
	pt, err := f.s.Decrypt(ctx, ct, f.b)
	require.NoError(t, err)
	assert.Equal(t, "honest", string(pt))
	require.EqualValues(t, 1, f.openings())

	for name, commitment := range map[string][]byte{
		"random":       randomBytes(format.CommitmentSize),
		"other key's":  f.k2.commitment,
		"one bit off":  flipBit(f.k1.commitment, 0),
		"last bit off": flipBit(f.k1.commitment, 8*format.CommitmentSize-1),
	} {
		t.Run(name, func(t *testing.T) {
			before := f.openings()
			forged := f.k1.header(t, f.keyID, commitment)
			ct := a.Seal(append([]byte(nil), forged...), nil, []byte("forged"), aad(t, forged, f.b))
			// The tag is valid: k1's AEAD opens the body for this header.
			_, err := a.Open(nil, nil, ct[len(forged):], aad(t, forged, f.b))
			require.NoError(t, err)

			_, err = f.s.Decrypt(ctx, ct, f.b)
			assert.ErrorIs(t, err, ErrDecrypt)
			assert.Equal(t, before, f.openings(), "refused before AEAD-Open")

			// A SelfContained with a cold cache unwraps, then refuses.
			cold, err := NewSelfContained(SelfContainedConfig{KEK: f.kek})
			require.NoError(t, err)
			_, err = cold.Decrypt(ctx, ct, f.b)
			assert.ErrorIs(t, err, ErrDecrypt)
		})
	}
}

// TestCommitmentTwoKeyGCMCollision forges one body (nonce, ciphertext, tag)
// that AES-GCM authenticates under two known keys: under k1 with the
// honest header of k1, and under k2 with a header that carries k2's
// wrapped key but k1's commitment. This is the partitioning-oracle
// construction of Len, Grubbs and Ristenpart (USENIX Security 2021) for
// two keys: GHASH is linear in the ciphertext blocks, so one free block
// solves the tag equation over GF(2^128). The first value decrypts, as
// it must; the second carries a commitment that k2 does not match and is
// refused before AEAD-Open, though k2's AEAD would accept it.
func TestCommitmentTwoKeyGCMCollision(t *testing.T) {
	ctx := context.Background()
	f := newCommitmentFixture(t)

	hdr1 := f.k1.header(t, f.keyID, f.k1.commitment)
	hdr2 := f.k2.header(t, f.keyID, f.k1.commitment) // k2's key, k1's commitment
	aad1, aad2 := aad(t, hdr1, f.b), aad(t, hdr2, f.b)
	body := gcmCollision(t, f.k1.aesKey, f.k2.aesKey, aad1, aad2)

	// Both AEADs accept the body (checked with the suite's own AEAD).
	a1, err := deriveAEAD(AES256GCM, f.k1.dek)
	require.NoError(t, err)
	a2, err := deriveAEAD(AES256GCM, f.k2.dek)
	require.NoError(t, err)
	p1, err := a1.Open(nil, nil, body, aad1)
	require.NoError(t, err, "k1 opens the collision")
	p2, err := a2.Open(nil, nil, body, aad2)
	require.NoError(t, err, "k2 opens the collision")
	require.NotEqual(t, p1, p2)

	// Under the honest header, the body is k1's value.
	pt, err := f.s.Decrypt(ctx, append(append([]byte(nil), hdr1...), body...), f.b)
	require.NoError(t, err)
	assert.Equal(t, p1, pt)
	require.EqualValues(t, 1, f.c1.opens.Load())

	// Under k2's wrapped key with k1's commitment, it is refused before
	// k2's AEAD is asked.
	_, err = f.s.Decrypt(ctx, append(append([]byte(nil), hdr2...), body...), f.b)
	assert.ErrorIs(t, err, ErrDecrypt)
	assert.EqualValues(t, 0, f.c2.opens.Load(), "refused before AEAD-Open")

	// The same from a cold cache, and armored.
	cold, err := NewSelfContained(SelfContainedConfig{KEK: f.kek})
	require.NoError(t, err)
	forged := append(append([]byte(nil), hdr2...), body...)
	_, err = cold.Decrypt(ctx, forged, f.b)
	assert.ErrorIs(t, err, ErrDecrypt)
	_, err = cold.Decrypt(ctx, format.AppendArmor(nil, forged), f.b)
	assert.ErrorIs(t, err, ErrDecrypt)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func flipBit(b []byte, bit int) []byte {
	c := append([]byte(nil), b...)
	c[bit/8] ^= 0x80 >> (bit % 8)
	return c
}

// gcmCollision returns nonce || ciphertext || tag, two blocks of
// ciphertext, that AES-GCM authenticates under key1 with aad1 and under
// key2 with aad2. With H_i = E_i(0^128) and J0 = nonce || 0^31 || 1, the
// tag under key i is GHASH_{H_i}(aad_i, C) xor E_i(J0); the last
// ciphertext block C_1 enters GHASH as C_1 * H_i^2, so
//
//	C_1 = (G_1 xor E_1(J0) xor G_2 xor E_2(J0)) / (H_1^2 xor H_2^2)
//
// where G_i is GHASH with C_1 set to zero, makes the tags equal.
func gcmCollision(t *testing.T, key1, key2, aad1, aad2 []byte) []byte {
	t.Helper()
	b1, err := aes.NewCipher(key1)
	require.NoError(t, err)
	b2, err := aes.NewCipher(key2)
	require.NoError(t, err)
	nonce := randomBytes(12)
	var j0 [16]byte
	copy(j0[:], nonce)
	j0[15] = 1
	hashKey := func(b cipher.Block) gf128 {
		var z [16]byte
		b.Encrypt(z[:], z[:])
		return gfLoad(z[:])
	}
	mask := func(b cipher.Block) gf128 {
		var e [16]byte
		b.Encrypt(e[:], j0[:])
		return gfLoad(e[:])
	}
	h1, h2 := hashKey(b1), hashKey(b2)
	ct := randomBytes(32)
	clear(ct[16:])
	g1, g2 := ghash(h1, aad1, ct), ghash(h2, aad2, ct)
	rhs := g1.xor(mask(b1)).xor(g2).xor(mask(b2))
	den := h1.mul(h1).xor(h2.mul(h2))
	require.False(t, den == gf128{}, "H_1^2 = H_2^2 only for equal keys")
	c1 := rhs.mul(den.inv())
	c1.store(ct[16:])
	tag := ghash(h1, aad1, ct).xor(mask(b1))
	require.Equal(t, tag, ghash(h2, aad2, ct).xor(mask(b2)))
	out := append(append([]byte(nil), nonce...), ct...)
	var tb [16]byte
	tag.store(tb[:])
	return append(out, tb[:]...)
}

// gf128 is an element of GCM's GF(2^128), in GCM's bit order: hi holds
// bytes 0..7 big-endian, and bit 0 of the field (the coefficient of x^0)
// is the most significant bit of hi.
type gf128 struct{ hi, lo uint64 }

func gfLoad(b []byte) gf128 {
	return gf128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:16])}
}

func (x gf128) store(b []byte) {
	binary.BigEndian.PutUint64(b[:8], x.hi)
	binary.BigEndian.PutUint64(b[8:16], x.lo)
}

func (x gf128) xor(y gf128) gf128 { return gf128{x.hi ^ y.hi, x.lo ^ y.lo} }

// mul is NIST SP 800-38D's Algorithm 1.
func (x gf128) mul(y gf128) gf128 {
	var z gf128
	v := y
	for i := 0; i < 128; i++ {
		var bit uint64
		if i < 64 {
			bit = x.hi >> (63 - i) & 1
		} else {
			bit = x.lo >> (127 - i) & 1
		}
		if bit == 1 {
			z = z.xor(v)
		}
		carry := v.lo & 1
		v.lo = v.lo>>1 | v.hi<<63
		v.hi >>= 1
		if carry == 1 {
			v.hi ^= 0xe1 << 56
		}
	}
	return z
}

// inv is x^(2^128-2), the inverse of a non-zero x.
func (x gf128) inv() gf128 {
	one := gf128{hi: 1 << 63}
	r, p := one, x
	// 2^128-2 has every bit set but bit 0.
	for i := 1; i < 128; i++ {
		p = p.mul(p) // x^(2^i)
		r = r.mul(p)
	}
	return r
}

// ghash is GHASH_H(aad, ct) as GCM computes it: aad and ct each padded to
// whole blocks, then their lengths in bits.
func ghash(h gf128, aad, ct []byte) gf128 {
	var y gf128
	absorb := func(b []byte) {
		for len(b) > 0 {
			var blk [16]byte
			n := copy(blk[:], b)
			b = b[n:]
			y = y.xor(gfLoad(blk[:])).mul(h)
		}
	}
	absorb(aad)
	absorb(ct)
	var l [16]byte
	binary.BigEndian.PutUint64(l[:8], uint64(len(aad))*8)
	binary.BigEndian.PutUint64(l[8:], uint64(len(ct))*8)
	return y.xor(gfLoad(l[:])).mul(h)
}

// TestCommitmentMismatchStream is TestCommitmentMismatchWithValidTag for
// the stream form, which shares openingKey: a stream header with k1's
// wrapped key and another commitment, and a final segment sealed under
// k1's stream key for that header, is refused by DecryptStream.
func TestCommitmentMismatchStream(t *testing.T) {
	ctx := context.Background()
	f := newCommitmentFixture(t)
	salt := randomBytes(format.SaltSize)
	stream := func(commitment []byte) []byte {
		hdr, err := format.AppendStreamHeader(nil, format.AES256GCM, f.keyID, f.k1.wrapped, commitment, MinStreamSegmentSize, salt)
		require.NoError(t, err)
		a, err := deriveStreamAEAD(AES256GCM, f.k1.dek, salt)
		require.NoError(t, err)
		extra, size, err := f.b.check()
		require.NoError(t, err)
		segAAD := streamAAD(hdr, &f.b, extra, size)
		setSegment(segAAD, 0, true)
		return a.Seal(hdr, nil, []byte("scan"), segAAD)
	}
	read := func(s *SelfContained, ct []byte) ([]byte, error) {
		r, err := s.DecryptStream(ctx, bytes.NewReader(ct), f.b)
		if err != nil {
			return nil, err
		}
		return io.ReadAll(r)
	}
	pt, err := read(f.s, stream(f.k1.commitment))
	require.NoError(t, err)
	assert.Equal(t, "scan", string(pt))

	forged := stream(f.k2.commitment)
	_, err = read(f.s, forged)
	assert.ErrorIs(t, err, ErrDecrypt)
	cold, err := NewSelfContained(SelfContainedConfig{KEK: f.kek})
	require.NoError(t, err)
	_, err = read(cold, forged)
	assert.ErrorIs(t, err, ErrDecrypt)
}
