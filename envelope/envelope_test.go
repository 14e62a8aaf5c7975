package envelope_test

import (
	"bytes"
	"context"
	"crypto/fips140"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
)

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	for name, f := range forms(t, kek) {
		for _, n := range []int{0, 1, 64, 4096, 1 << 20} {
			pt := bytes.Repeat([]byte("Lemuel304 MacGyver246 999-12-3456 "), n/34+1)[:n]
			ct, err := f.Encrypt(ctx, pt, patientBinding)
			require.NoError(t, err, "%s %d", name, n)
			if strings.HasSuffix(name, "text") {
				assert.True(t, strings.HasPrefix(string(ct), envelope.ArmorPrefix), name)
			} else {
				assert.Equal(t, byte(0xF5), ct[0], name)
			}
			if n >= 8 {
				assert.False(t, bytes.Contains(ct, pt[:8]), "%s: ciphertext contains plaintext", name)
			}
			got, err := f.Decrypt(ctx, ct, patientBinding)
			require.NoError(t, err, "%s %d", name, n)
			assert.Equal(t, pt, got, "%s %d", name, n)
			assert.NotNil(t, got)
		}
	}
}

func TestEncryptIsRandomized(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	for name, f := range forms(t, kek) {
		a, err := f.Encrypt(ctx, []byte("same"), patientBinding)
		require.NoError(t, err)
		b, err := f.Encrypt(ctx, []byte("same"), patientBinding)
		require.NoError(t, err)
		assert.NotEqual(t, a, b, name)
	}
}

func TestDecryptAcceptsBothEncodings(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	kr := newTestKeyring("encodings", envelope.AES256GCM)
	bin, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr})
	require.NoError(t, err)
	txt, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr, Encoding: envelope.Text})
	require.NoError(t, err)
	ct, err := txt.Encrypt(ctx, []byte("MRN 0042"), patientBinding)
	require.NoError(t, err)
	got, err := bin.Decrypt(ctx, ct, patientBinding)
	require.NoError(t, err)
	assert.Equal(t, "MRN 0042", string(got))

	sb, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek})
	require.NoError(t, err)
	st, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, Encoding: envelope.Text})
	require.NoError(t, err)
	ct, err = sb.Encrypt(ctx, []byte("MRN 0042"), patientBinding)
	require.NoError(t, err)
	got, err = st.Decrypt(ctx, ct, patientBinding)
	require.NoError(t, err)
	assert.Equal(t, "MRN 0042", string(got))
}

func TestSuites(t *testing.T) {
	ctx := context.Background()
	for _, s := range []envelope.Suite{envelope.AES256GCM, envelope.XChaCha20Poly1305, envelope.AESSIV} {
		t.Run(s.String(), func(t *testing.T) {
			if fips140.Enabled() && s != envelope.AES256GCM {
				_, err := envelope.NewDEK(s, 1, make([]byte, envelope.DEKSize))
				require.ErrorIs(t, err, envelope.ErrNotApproved)
				return
			}
			c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: newTestKeyring("suites", s)})
			require.NoError(t, err)
			ct, err := c.Encrypt(ctx, []byte("value"), patientBinding)
			require.NoError(t, err)
			info, err := envelope.Inspect(ct)
			require.NoError(t, err)
			assert.Equal(t, s, info.Suite)
			got, err := c.Decrypt(ctx, ct, patientBinding)
			require.NoError(t, err)
			assert.Equal(t, "value", string(got))
			again, err := c.Encrypt(ctx, []byte("value"), patientBinding)
			require.NoError(t, err)
			if s == envelope.AESSIV {
				assert.Equal(t, ct, again, "AES-SIV is deterministic")
				other := patientBinding
				other.RecordID = "another"
				third, err := c.Encrypt(ctx, []byte("value"), other)
				require.NoError(t, err)
				assert.NotEqual(t, ct, third, "the binding is part of the deterministic input")
			} else {
				assert.NotEqual(t, ct, again)
			}
		})
	}
}

func TestSelfContainedSuites(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	_, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, Suite: envelope.AESSIV})
	assert.Error(t, err, "deterministic suite is refused in the self-contained form")
	_, err = envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, Suite: envelope.XChaCha20Poly1305})
	if fips140.Enabled() {
		assert.ErrorIs(t, err, envelope.ErrNotApproved)
		return
	}
	require.NoError(t, err)
	s, _ := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, Suite: envelope.XChaCha20Poly1305})
	ct, err := s.Encrypt(ctx, []byte("value"), patientBinding)
	require.NoError(t, err)
	got, err := s.Decrypt(ctx, ct, patientBinding)
	require.NoError(t, err)
	assert.Equal(t, "value", string(got))
}

func TestBindingMismatch(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	b := patientBinding
	b.Extra = []envelope.Attr{{Key: "fhir-path", Value: "Patient.identifier"}, {Key: "a", Value: "1"}}
	changes := map[string]func(*envelope.Binding){
		"record id":    func(b *envelope.Binding) { b.RecordID = "another-patient" },
		"column":       func(b *envelope.Binding) { b.Column = "mrn" },
		"table":        func(b *envelope.Binding) { b.Table = "staff" },
		"scope":        func(b *envelope.Binding) { b.Scope = "tenant:other" },
		"empty record": func(b *envelope.Binding) { b.RecordID = "" },
		"extra value": func(b *envelope.Binding) {
			b.Extra = []envelope.Attr{{Key: "fhir-path", Value: "Patient.name"}, {Key: "a", Value: "1"}}
		},
		"extra gone":  func(b *envelope.Binding) { b.Extra = b.Extra[:1] },
		"extra added": func(b *envelope.Binding) { b.Extra = append(b.Extra[:2:2], envelope.Attr{Key: "z", Value: ""}) },
		// Field boundaries are length-prefixed: moving bytes between
		// adjacent fields is a different binding.
		"shifted": func(b *envelope.Binding) { b.Table, b.Column = b.Table+b.Column[:1], b.Column[1:] },
	}
	for name, f := range forms(t, kek) {
		ct, err := f.Encrypt(ctx, []byte("999-12-3456"), b)
		require.NoError(t, err)
		// Extras are order independent.
		reordered := b
		reordered.Extra = []envelope.Attr{b.Extra[1], b.Extra[0]}
		got, err := f.Decrypt(ctx, ct, reordered)
		require.NoError(t, err, name)
		assert.Equal(t, "999-12-3456", string(got))
		for what, change := range changes {
			other := b
			other.Extra = append([]envelope.Attr(nil), b.Extra...)
			change(&other)
			got, err := f.Decrypt(ctx, ct, other)
			assert.ErrorIs(t, err, envelope.ErrDecrypt, "%s: %s", name, what)
			assert.Nil(t, got)
		}
	}
}

func TestSwappedValues(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	alice, bob := patientBinding, patientBinding
	alice.RecordID, bob.RecordID = "alice", "bob"
	for name, f := range forms(t, kek) {
		a, err := f.Encrypt(ctx, []byte("999-11-1111"), alice)
		require.NoError(t, err)
		b, err := f.Encrypt(ctx, []byte("999-22-2222"), bob)
		require.NoError(t, err)
		_, err = f.Decrypt(ctx, a, bob)
		assert.ErrorIs(t, err, envelope.ErrDecrypt, name)
		_, err = f.Decrypt(ctx, b, alice)
		assert.ErrorIs(t, err, envelope.ErrDecrypt, name)
	}
}

func TestInvalidBinding(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	long := strings.Repeat("x", envelope.MaxBindingField+1)
	bad := map[string]envelope.Binding{
		"no scope":        {Table: "t"},
		"long scope":      {Scope: strings.Repeat("s", envelope.MaxScopeSize+1)},
		"long record":     {Scope: "s", RecordID: long},
		"empty extra key": {Scope: "s", Extra: []envelope.Attr{{Key: "", Value: "v"}}},
		"long extra":      {Scope: "s", Extra: []envelope.Attr{{Key: "k", Value: long}}},
		"duplicate extra": {Scope: "s", Extra: []envelope.Attr{{Key: "k", Value: "1"}, {Key: "k", Value: "2"}}},
		"too many extras": {Scope: "s", Extra: make([]envelope.Attr, envelope.MaxExtras+1)},
	}
	for name, f := range forms(t, kek) {
		for what, b := range bad {
			_, err := f.Encrypt(ctx, []byte("x"), b)
			assert.ErrorIs(t, err, envelope.ErrInvalidBinding, "%s: %s", name, what)
			_, err = f.Decrypt(ctx, []byte("phicrypt:AAAA"), b)
			assert.ErrorIs(t, err, envelope.ErrInvalidBinding, "%s: %s", name, what)
		}
	}
}

func TestNotEncrypted(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	for name, f := range forms(t, kek) {
		for _, in := range []string{"", "999-12-3456", "Lemuel304", "phicrypt", "PHICRYPT:AAAA", "{\"a\":1}", "\xf4\x01"} {
			_, err := f.Decrypt(ctx, []byte(in), patientBinding)
			assert.ErrorIs(t, err, envelope.ErrNotEncrypted, "%s: %q", name, in)
		}
		_, err := envelope.Inspect([]byte("999-12-3456"))
		assert.ErrorIs(t, err, envelope.ErrNotEncrypted)
	}
}

func TestWrongForm(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	f := forms(t, kek)
	c, err := f["compact/binary"].Encrypt(ctx, []byte("x"), patientBinding)
	require.NoError(t, err)
	s, err := f["self-contained/binary"].Encrypt(ctx, []byte("x"), patientBinding)
	require.NoError(t, err)
	_, err = f["self-contained/binary"].Decrypt(ctx, c, patientBinding)
	assert.ErrorIs(t, err, envelope.ErrWrongForm)
	_, err = f["compact/binary"].Decrypt(ctx, s, patientBinding)
	assert.ErrorIs(t, err, envelope.ErrWrongForm)
}

func TestUnsupportedVersion(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	for name, f := range forms(t, kek) {
		if strings.HasSuffix(name, "text") {
			continue
		}
		ct, err := f.Encrypt(ctx, []byte("x"), patientBinding)
		require.NoError(t, err)
		for i, v := range map[int]byte{1: 0x02, 2: 0x09, 3: 0x42} { // version, form, suite
			future := bytes.Clone(ct)
			future[i] = v
			_, err := f.Decrypt(ctx, future, patientBinding)
			assert.ErrorIs(t, err, envelope.ErrUnsupportedVersion, "%s byte %d", name, i)
			var fe *envelope.FormatError
			assert.ErrorAs(t, err, &fe)
			_, err = envelope.Inspect(future)
			assert.ErrorIs(t, err, envelope.ErrUnsupportedVersion)
		}
	}
}

func TestTooLarge(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	kr := newTestKeyring("large", envelope.AES256GCM)
	small, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr, MaxPlaintextSize: 100})
	require.NoError(t, err)
	big, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr, MaxPlaintextSize: 1000, Encoding: envelope.Text})
	require.NoError(t, err)
	_, err = small.Encrypt(ctx, make([]byte, 101), patientBinding)
	assert.ErrorIs(t, err, envelope.ErrTooLarge)
	before := kr.lookups.Load()
	ct, err := big.Encrypt(ctx, make([]byte, 101), patientBinding)
	require.NoError(t, err)
	_, err = small.Decrypt(ctx, ct, patientBinding)
	assert.ErrorIs(t, err, envelope.ErrTooLarge)
	assert.Equal(t, before+1, kr.lookups.Load(), "ErrTooLarge must come before any key lookup")
	_, err = small.Decrypt(ctx, []byte(envelope.ArmorPrefix+strings.Repeat("A", 1<<20)), patientBinding)
	assert.ErrorIs(t, err, envelope.ErrTooLarge)

	sc, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, MaxPlaintextSize: 100})
	require.NoError(t, err)
	_, err = sc.Encrypt(ctx, make([]byte, 101), patientBinding)
	assert.ErrorIs(t, err, envelope.ErrTooLarge)

	for _, n := range []int{-1, envelope.MaxPlaintextSizeLimit + 1} {
		_, err = envelope.NewCompact(envelope.CompactConfig{Keyring: kr, MaxPlaintextSize: n})
		assert.Error(t, err)
		_, err = envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, MaxPlaintextSize: n})
		assert.Error(t, err)
	}
}

func TestConfigErrors(t *testing.T) {
	kek, _ := newLocalKEK(t)
	_, err := envelope.NewCompact(envelope.CompactConfig{})
	assert.Error(t, err)
	_, err = envelope.NewCompact(envelope.CompactConfig{Keyring: newTestKeyring("x", envelope.AES256GCM), Encoding: 7})
	assert.Error(t, err)
	_, err = envelope.NewSelfContained(envelope.SelfContainedConfig{})
	assert.Error(t, err)
	_, err = envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, DataKeyMaxMessages: envelope.MaxDataKeyMessages + 1})
	assert.Error(t, err)
	_, err = envelope.NewDEK(envelope.AES256GCM, 0, make([]byte, 32))
	assert.Error(t, err)
	_, err = envelope.NewDEK(envelope.AES256GCM, 1, make([]byte, 16))
	assert.Error(t, err)
	_, err = envelope.NewDEK(envelope.Suite(99), 1, make([]byte, 32))
	assert.Error(t, err)
}

func TestKeyNotFound(t *testing.T) {
	ctx := context.Background()
	kr := newTestKeyring("nf", envelope.AES256GCM)
	kr.active = 3
	c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr})
	require.NoError(t, err)
	ct, err := c.Encrypt(ctx, []byte("x"), patientBinding)
	require.NoError(t, err)
	kr.maxVersion = 2 // version 3 retired
	_, err = c.Decrypt(ctx, ct, patientBinding)
	assert.ErrorIs(t, err, envelope.ErrKeyNotFound)

	kek, _ := newLocalKEK(t)
	other, _ := newLocalKEK(t)
	s, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek})
	require.NoError(t, err)
	ct, err = s.Encrypt(ctx, []byte("x"), patientBinding)
	require.NoError(t, err)
	// Same key id, another key: authentication fails.
	o, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: other})
	require.NoError(t, err)
	_, err = o.Decrypt(ctx, ct, patientBinding)
	assert.ErrorIs(t, err, envelope.ErrDecrypt)
	// A KEK with another key id: not found.
	renamed := kmstest.Instrument(renamedKEK{other})
	o, err = envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: renamed})
	require.NoError(t, err)
	_, err = o.Decrypt(ctx, ct, patientBinding)
	assert.ErrorIs(t, err, envelope.ErrKeyNotFound)
	assert.ErrorIs(t, err, kms.ErrKeyNotFound)
}

// renamedKEK claims another key id.
type renamedKEK struct{ kms.KEK }

func (r renamedKEK) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	if err := kms.CheckUnwrap("local:renamed", wk, aad); err != nil {
		return nil, kms.NewError(ctx, "unwrap", "local:renamed", kms.ErrKeyNotFound, err)
	}
	return r.KEK.Unwrap(ctx, wk, aad)
}

func TestSelfContainedCaching(t *testing.T) {
	ctx := context.Background()
	base, _ := newLocalKEK(t)
	kek := kmstest.Instrument(base)
	s, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek})
	require.NoError(t, err)
	var cts [][]byte
	for i := 0; i < 1000; i++ {
		ct, err := s.Encrypt(ctx, []byte("value"), patientBinding)
		require.NoError(t, err)
		cts = append(cts, ct)
	}
	assert.Equal(t, int64(1), kek.Wraps(), "a batch of one scope makes one KMS call")
	other := patientBinding
	other.Scope = "tenant:other"
	_, err = s.Encrypt(ctx, []byte("value"), other)
	require.NoError(t, err)
	assert.Equal(t, int64(2), kek.Wraps(), "each scope has its own data key")

	for _, ct := range cts {
		_, err := s.Decrypt(ctx, ct, patientBinding)
		require.NoError(t, err)
	}
	assert.Equal(t, int64(1), kek.Unwraps(), "decrypt caches the unwrapped key")

	// A second instance (another process) unwraps once too.
	s2, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek})
	require.NoError(t, err)
	for _, ct := range cts {
		_, err := s2.Decrypt(ctx, ct, patientBinding)
		require.NoError(t, err)
	}
	assert.Equal(t, int64(2), kek.Unwraps())
}

func TestSelfContainedDataKeyBudget(t *testing.T) {
	ctx := context.Background()
	base, _ := newLocalKEK(t)
	kek := kmstest.Instrument(base)
	s, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, DataKeyMaxMessages: 10})
	require.NoError(t, err)
	seen := map[string]int{}
	for i := 0; i < 35; i++ {
		ct, err := s.Encrypt(ctx, []byte("v"), patientBinding)
		require.NoError(t, err)
		// The wrapped key sits in the header, before the commitment.
		info, err := envelope.Inspect(ct)
		require.NoError(t, err)
		require.Equal(t, envelope.SelfContainedForm, info.Form)
		seen[string(ct[:len(ct)-12-16-1])]++
	}
	assert.Equal(t, int64(4), kek.Wraps(), "35 values at 10 per data key need 4 keys")
	assert.Len(t, seen, 4)
	for _, n := range seen {
		assert.LessOrEqual(t, n, 10)
	}
}

func TestSelfContainedDataKeyAge(t *testing.T) {
	ctx := context.Background()
	base, _ := newLocalKEK(t)
	kek := kmstest.Instrument(base)
	s, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, DataKeyMaxAge: 50 * time.Millisecond})
	require.NoError(t, err)
	_, err = s.Encrypt(ctx, []byte("v"), patientBinding)
	require.NoError(t, err)
	time.Sleep(500 * time.Millisecond) // expiry runs on a timer: leave it room on a loaded machine
	_, err = s.Encrypt(ctx, []byte("v"), patientBinding)
	require.NoError(t, err)
	assert.Equal(t, int64(2), kek.Wraps(), "an expired data key is replaced")

	perValue, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, DataKeyMaxAge: -1, CacheMaxAge: -1})
	require.NoError(t, err)
	before := kek.Calls()
	for i := 0; i < 3; i++ {
		ct, err := perValue.Encrypt(ctx, []byte("v"), patientBinding)
		require.NoError(t, err)
		_, err = perValue.Decrypt(ctx, ct, patientBinding)
		require.NoError(t, err)
	}
	assert.Equal(t, before+6, kek.Calls(), "caching disabled: one KMS call per value")
}

func TestSelfContainedConcurrentMissesShareOneCall(t *testing.T) {
	ctx := context.Background()
	base, _ := newLocalKEK(t)
	kek := kmstest.Instrument(base)
	kek.SetDelay(20 * time.Millisecond)
	s, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek})
	require.NoError(t, err)
	ct, err := s.Encrypt(ctx, []byte("v"), patientBinding)
	require.NoError(t, err)
	fresh, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := fresh.Decrypt(ctx, ct, patientBinding)
			assert.NoError(t, err)
		}()
		go func() {
			defer wg.Done()
			_, err := fresh.Encrypt(ctx, []byte("v"), patientBinding)
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(1), kek.Unwraps(), "200 concurrent decrypt misses, one unwrap")
	assert.Equal(t, int64(2), kek.Wraps(), "one wrap for s, one for 200 concurrent encrypt misses")
}

func TestSelfContainedKMSDown(t *testing.T) {
	ctx := context.Background()
	base, _ := newLocalKEK(t)
	kek := kmstest.Instrument(base)
	s, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek})
	require.NoError(t, err)
	ct, err := s.Encrypt(ctx, []byte("v"), patientBinding)
	require.NoError(t, err)
	_, err = s.Decrypt(ctx, ct, patientBinding)
	require.NoError(t, err)

	kek.SetDown(true)
	_, err = s.Encrypt(ctx, []byte("v"), patientBinding)
	assert.NoError(t, err, "a cached data key keeps encrypting")
	_, err = s.Decrypt(ctx, ct, patientBinding)
	assert.NoError(t, err, "a cached unwrapped key keeps decrypting")

	other := patientBinding
	other.Scope = "tenant:new"
	_, err = s.Encrypt(ctx, []byte("v"), other)
	assert.ErrorIs(t, err, kms.ErrUnavailable, "no cached key: the outage surfaces, typed")
	assert.False(t, errors.Is(err, envelope.ErrDecrypt))
	s2, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek})
	require.NoError(t, err)
	_, err = s2.Decrypt(ctx, ct, patientBinding)
	assert.ErrorIs(t, err, kms.ErrUnavailable, "an outage is not an authentication failure")
	assert.False(t, errors.Is(err, envelope.ErrDecrypt))

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	kek.SetDown(false)
	_, err = s2.Decrypt(cctx, ct, patientBinding)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestInspect(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	kr := newTestKeyring("inspect", envelope.AES256GCM)
	kr.active = 2
	c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: kr, Encoding: envelope.Text})
	require.NoError(t, err)
	ct, err := c.Encrypt(ctx, []byte("hello"), patientBinding)
	require.NoError(t, err)
	info, err := envelope.Inspect(ct)
	require.NoError(t, err)
	assert.Equal(t, envelope.Info{Form: envelope.CompactForm, Suite: envelope.AES256GCM, Encoding: envelope.Text, KeyVersion: 2, PlaintextSize: 5}, info)

	s, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek})
	require.NoError(t, err)
	ct, err = s.Encrypt(ctx, []byte("hello!"), patientBinding)
	require.NoError(t, err)
	info, err = envelope.Inspect(ct)
	require.NoError(t, err)
	assert.Equal(t, envelope.Info{Form: envelope.SelfContainedForm, Suite: envelope.AES256GCM, Encoding: envelope.Binary, KEKID: kek.KeyID(), PlaintextSize: 6}, info)
	assert.Equal(t, "self-contained", info.Form.String())
}

func TestInputsNotModified(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	for name, f := range forms(t, kek) {
		pt := []byte("Lemuel304")
		b := patientBinding
		b.Extra = []envelope.Attr{{Key: "z", Value: "1"}, {Key: "a", Value: "2"}}
		ptCopy := bytes.Clone(pt)
		ct, err := f.Encrypt(ctx, pt, b)
		require.NoError(t, err)
		assert.Equal(t, ptCopy, pt, name)
		assert.Equal(t, "z", b.Extra[0].Key, "%s: extras were sorted in place", name)
		ctCopy := bytes.Clone(ct)
		got, err := f.Decrypt(ctx, ct, b)
		require.NoError(t, err)
		assert.Equal(t, ctCopy, ct, name)
		clear(got)
		again, err := f.Decrypt(ctx, ct, b)
		require.NoError(t, err)
		assert.Equal(t, ptCopy, again, "%s: results must not share memory", name)
	}
}

func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	for name, f := range forms(t, kek) {
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				b := patientBinding
				b.Scope = []string{"tenant:a", "tenant:b"}[g%2]
				for i := 0; i < 50; i++ {
					pt := []byte{byte(g), byte(i)}
					ct, err := f.Encrypt(ctx, pt, b)
					if !assert.NoError(t, err, name) {
						return
					}
					got, err := f.Decrypt(ctx, ct, b)
					if !assert.NoError(t, err, name) || !assert.Equal(t, pt, got) {
						return
					}
				}
			}(g)
		}
		wg.Wait()
	}
}

func TestAppendAPIs(t *testing.T) {
	ctx := context.Background()
	kek, _ := newLocalKEK(t)
	type appender interface {
		AppendEncrypt(ctx context.Context, dst, plaintext []byte, b envelope.Binding) ([]byte, error)
		AppendDecrypt(ctx context.Context, dst, ciphertext []byte, b envelope.Binding) ([]byte, error)
	}
	for name, f := range forms(t, kek) {
		a := f.(appender)
		pt := []byte("999-12-3456 Lemuel304")

		// Appends after an existing prefix, and reuses spare capacity.
		dst := make([]byte, 0, 4096)
		dst = append(dst, "row:"...)
		out, err := a.AppendEncrypt(ctx, dst, pt, patientBinding)
		require.NoError(t, err, name)
		assert.Equal(t, "row:", string(out[:4]))
		assert.Equal(t, &dst[:1][0], &out[:1][0], "%s: a large enough dst is reused", name)
		back, err := a.AppendDecrypt(ctx, []byte("pt:"), out[4:], patientBinding)
		require.NoError(t, err, name)
		assert.Equal(t, "pt:"+string(pt), string(back))

		// Steady state with reused buffers allocates nothing.
		ctBuf := make([]byte, 0, 4096)
		ptBuf := make([]byte, 0, 4096)
		ct, err := a.AppendEncrypt(ctx, ctBuf, pt, patientBinding)
		require.NoError(t, err)
		allocs := testing.AllocsPerRun(100, func() {
			ct, _ = a.AppendEncrypt(ctx, ctBuf[:0], pt, patientBinding)
			_, _ = a.AppendDecrypt(ctx, ptBuf[:0], ct, patientBinding)
		})
		assert.Zero(t, allocs, "%s: AppendEncrypt+AppendDecrypt with reused buffers", name)

		// Plaintext living in dst's spare capacity is never overwritten
		// by scratch data.
		buf := make([]byte, 0, 4096)
		inSpare := append(buf[100:100], pt...)
		out, err = a.AppendEncrypt(ctx, buf, inSpare, patientBinding)
		require.NoError(t, err, name)
		got, err := f.Decrypt(ctx, out, patientBinding)
		require.NoError(t, err, name)
		assert.Equal(t, pt, got, "%s: plaintext overlapping dst's spare capacity", name)

		// Ciphertext living in dst's spare capacity, likewise.
		ct, err = f.Encrypt(ctx, pt, patientBinding)
		require.NoError(t, err)
		buf = make([]byte, 0, 4096)
		ctInSpare := append(buf[50:50], ct...)
		got, err = a.AppendDecrypt(ctx, buf, ctInSpare, patientBinding)
		require.NoError(t, err, name)
		assert.Equal(t, pt, got, "%s: ciphertext overlapping dst's spare capacity", name)

		// A failure returns dst as it was.
		prefix := []byte("keep")
		moved := patientBinding
		moved.RecordID = "x"
		res, err := a.AppendDecrypt(ctx, prefix, ct, moved)
		assert.ErrorIs(t, err, envelope.ErrDecrypt)
		assert.Equal(t, "keep", string(res))
	}
}

// oneKeyKeyring gives every scope the same data keys, as a caller's own
// Keyring may: then only the AAD tells scopes apart.
type oneKeyKeyring struct{ *testKeyring }

func (k oneKeyKeyring) EncryptionKey(ctx context.Context, _ string) (*envelope.DEK, error) {
	return k.testKeyring.EncryptionKey(ctx, "shared")
}

func (k oneKeyKeyring) DecryptionKey(ctx context.Context, _ string, version uint32) (*envelope.DEK, error) {
	return k.testKeyring.DecryptionKey(ctx, "shared", version)
}

// TestScopeBoundWithSharedKey checks that the scope is authenticated by
// the ciphertext itself, not only through the choice of key: with one key
// for every scope, a value moved to another scope still fails.
func TestScopeBoundWithSharedKey(t *testing.T) {
	ctx := context.Background()
	c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: oneKeyKeyring{newTestKeyring("shared", envelope.AES256GCM)}})
	require.NoError(t, err)
	ct, err := c.Encrypt(ctx, []byte("999-12-3456"), patientBinding)
	require.NoError(t, err)
	got, err := c.Decrypt(ctx, ct, patientBinding)
	require.NoError(t, err)
	assert.Equal(t, "999-12-3456", string(got))
	other := patientBinding
	other.Scope = "tenant:other"
	_, err = c.Decrypt(ctx, ct, other)
	assert.ErrorIs(t, err, envelope.ErrDecrypt)
}

// TestAppendEncryptGrowsGeometrically appends a thousand values to one
// buffer that never has room to spare: the buffer must grow as append
// grows, a few dozen times, not once per value (which copies everything
// appended so far each time: quadratic in the output, as a JSON document
// of many encrypted values is).
func TestAppendEncryptGrowsGeometrically(t *testing.T) {
	ctx := context.Background()
	c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: newTestKeyring("grow", envelope.AES256GCM), Encoding: envelope.Text})
	require.NoError(t, err)
	var out []byte
	grown := 0
	for range 1000 {
		before := cap(out)
		out, err = c.AppendEncrypt(ctx, out, field64, patientBinding)
		require.NoError(t, err)
		if cap(out) != before {
			grown++
		}
	}
	assert.Less(t, grown, 64, "the buffer grew %d times for 1000 values", grown)
	pt, err := c.Decrypt(ctx, out[len(out)-len(out)/1000:], patientBinding)
	require.NoError(t, err)
	assert.Equal(t, field64, pt)
}
