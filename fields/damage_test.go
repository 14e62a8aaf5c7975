package fields_test

import (
	"context"
	"encoding/base64"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
)

// recordingAuditor keeps the events it receives.
type recordingAuditor struct {
	mu     sync.Mutex
	events []keys.Event
}

func (a *recordingAuditor) Audit(_ context.Context, e keys.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, e)
	return nil
}

type migrating struct {
	ID    string        `phi:"id,table=legacy"`
	Scope string        `phi:"scope"`
	Name  fields.String `phi:"encrypt,migrate"`
	Photo fields.Bytes  `phi:"encrypt,migrate"`
}

// TestDamagedCiphertextNotPlaintext damages ciphertexts the ways storage
// and hand edits do, in a field in migration mode: each is refused with
// ErrDamagedCiphertext (and envelope.ErrDecrypt), reported neither as
// legacy plaintext nor to the auditor, and never sealed as the field's
// value. Real legacy plaintext still reads.
func TestDamagedCiphertextNotPlaintext(t *testing.T) {
	ctx := context.Background()
	var legacyReads int
	aud := &recordingAuditor{}
	text := newCodec(t, fields.Config{Auditor: aud, OnLegacyPlaintext: func(context.Context, fields.Legacy) { legacyReads++ }})
	kr := newKeyring(t)
	bin := newCodec(t, fields.Config{Keyring: kr, Binary: true})

	good := migrating{ID: "1", Scope: "tenant:1", Name: fields.New("Lemuel304"), Photo: fields.New([]byte("photo"))}
	require.NoError(t, text.Seal(ctx, &good))
	v, err := good.Name.Value()
	require.NoError(t, err)
	armored := v.(string)
	body := strings.TrimPrefix(armored, envelope.ArmorPrefix)
	goodBin := migrating{ID: "1", Scope: "tenant:1", Name: fields.New("Lemuel304"), Photo: fields.New([]byte("photo"))}
	require.NoError(t, bin.Seal(ctx, &goodBin))
	bv, err := goodBin.Photo.Value()
	require.NoError(t, err)
	binary := bv.([]byte)
	flip := func(i int, mask byte) []byte {
		b := []byte(string(binary))
		b[i] ^= mask
		return b
	}
	std := base64.StdEncoding.EncodeToString(binary)

	damaged := map[string]any{
		"upper case P":          "Phicrypt:" + body,
		"all upper case":        strings.ToUpper(envelope.ArmorPrefix) + body,
		"leading space":         " " + armored,
		"leading tab, newline":  "\t\n" + armored,
		"byte order mark":       "\ufeff" + armored,
		"quoted":                `"` + armored + `"`,
		"colon to semicolon":    "phicrypt;" + body,
		"colon lost":            "phicrypt" + body,
		"letter changed":        "phicrypr:" + body,
		"letters swapped":       "phicrpyt:" + body,
		"letter lost":           "phcrypt:" + body,
		"two letters changed":   "phlcrypT;" + body,
		"letter added":          "phiccrypt:" + body,
		"prefix stripped":       body,
		"prefix stripped, std":  std,
		"bytes as text":         string(flip(0, 0x01)),
		"magic bit 0":           flip(0, 0x01),
		"magic bit 7":           flip(0, 0x80),
		"magic two bits":        flip(0, 0x81),
		"magic and form bits":   func() []byte { b := flip(0, 0x10); b[2] ^= 0x04; return b }(),
		"magic lost, text col":  "\x00" + armored,
		"armor in a bytea":      []byte(" " + armored),
		"prefix stripped bytes": []byte(body),
	}
	for name, src := range damaged {
		for _, field := range []string{"Name", "Photo"} {
			r := migrating{ID: "1", Scope: "tenant:1"}
			target := &r.Name
			var scan func(any) error = target.Scan
			if field == "Photo" {
				scan = r.Photo.Scan
			}
			require.NoError(t, scan(src))
			before, after := legacyReads, len(aud.events)
			err := text.Open(ctx, &r)
			assert.ErrorIs(t, err, fields.ErrDamagedCiphertext, "%s in %s", name, field)
			assert.ErrorIs(t, err, envelope.ErrDecrypt, "%s in %s", name, field)
			assert.Equal(t, before, legacyReads, "%s: not reported as legacy plaintext", name)
			assert.Len(t, aud.events, after, "%s: no legacy read audited", name)
			// The next Seal leaves it alone: it never becomes the value.
			require.NoError(t, text.Seal(ctx, &r))
			switch field {
			case "Name":
				assert.False(t, r.Name.Opened(), name)
				_, err = r.Name.Value()
			case "Photo":
				assert.False(t, r.Photo.Opened(), name)
				_, err = r.Photo.Value()
			}
			assert.ErrorIs(t, err, fields.ErrNotSealed, "%s in %s: nothing to write back", name, field)
		}
	}

	// With the magic intact, the value is decrypted, and fails there.
	r := migrating{ID: "1", Scope: "tenant:1"}
	require.NoError(t, r.Photo.Scan(flip(1, 0x02)))
	before := legacyReads
	assert.ErrorIs(t, text.Open(ctx, &r), envelope.ErrUnsupportedVersion)
	assert.Equal(t, before, legacyReads)

	// Strict mode says damaged too, not merely "not encrypted".
	type strict struct {
		ID    string        `phi:"id,table=legacy"`
		Scope string        `phi:"scope"`
		Name  fields.String `phi:"encrypt"`
	}
	s := strict{ID: "1", Scope: "tenant:1"}
	require.NoError(t, s.Name.Scan("Phicrypt:"+body))
	assert.ErrorIs(t, text.Open(ctx, &s), fields.ErrDamagedCiphertext)

	// Legacy plaintext, including values that start like the prefix, reads
	// as before, reported and audited without its value.
	for _, plain := range []string{"Lemuel304 MacGyver246", "999-12-3456", "phil", "physician", "PHI: none",
		"crypt", "", "9QEB", "Photography", "ph", "phicr"} {
		r := migrating{ID: "7", Scope: "tenant:1"}
		require.NoError(t, r.Name.Scan(plain))
		require.NoError(t, r.Photo.Scan([]byte(plain)))
		before, after := legacyReads, len(aud.events)
		require.NoError(t, text.Open(ctx, &r), plain)
		assert.Equal(t, plain, r.Name.Get())
		assert.Equal(t, []byte(plain), r.Photo.Get())
		assert.Equal(t, before+2, legacyReads)
		require.Len(t, aud.events, after+2)
		e := aud.events[after]
		assert.Equal(t, fields.OpLegacyRead, e.Op)
		assert.Equal(t, "tenant:1", e.Scope)
		assert.Equal(t, "legacy.name", e.Key)
		assert.Equal(t, keys.Success, e.Outcome)
		if plain != "" {
			assert.NotContains(t, e.Key+e.Scope+e.Use+e.Purpose+e.Principal+e.ErrorClass, plain)
		}
	}
}
