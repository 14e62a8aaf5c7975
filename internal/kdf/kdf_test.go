package kdf

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/wycheproof"
)

func TestWycheproofHKDFSHA256(t *testing.T) {
	_, groups := wycheproof.Load(t, "hkdf_sha256_test.json")
	valid, invalid := 0, 0
	for _, g := range groups {
		for _, tc := range g.Tests {
			got, err := KeySalt(tc.IKM, tc.Salt, string(tc.Info), tc.Size)
			switch tc.Result {
			case "valid":
				valid++
				require.NoError(t, err, "tc %d", tc.TcID)
				assert.True(t, bytes.Equal(tc.OKM, got), "tc %d", tc.TcID)
			case "invalid":
				invalid++
				assert.Error(t, err, "tc %d %s", tc.TcID, tc.Comment)
			default:
				t.Fatalf("tc %d: unexpected result %q", tc.TcID, tc.Result)
			}
		}
	}
	assert.Equal(t, 83, valid)
	assert.Equal(t, 3, invalid)
}

func TestWycheproofHMACSHA256(t *testing.T) {
	_, groups := wycheproof.Load(t, "hmac_sha256_test.json")
	valid, invalid := 0, 0
	for _, g := range groups {
		for _, tc := range g.Tests {
			got, err := MAC(tc.Key, tc.Msg, g.TagSize/8)
			require.NoError(t, err)
			switch tc.Result {
			case "valid":
				valid++
				assert.True(t, bytes.Equal(tc.Tag, got), "tc %d", tc.TcID)
			case "invalid":
				invalid++
				assert.False(t, bytes.Equal(tc.Tag, got), "tc %d %s", tc.TcID, tc.Comment)
			default:
				t.Fatalf("tc %d: unexpected result %q", tc.TcID, tc.Result)
			}
		}
	}
	assert.Equal(t, 66, valid)
	assert.Equal(t, 108, invalid)
}

func TestMACSize(t *testing.T) {
	key := make([]byte, 32)
	for _, n := range []int{0, -1, 33} {
		_, err := MAC(key, nil, n)
		assert.ErrorIs(t, err, ErrMACSize)
	}
	_, err := MAC(make([]byte, 8), nil, 32)
	assert.ErrorIs(t, err, ErrMACKeySize)
}

// TestLabels freezes the labels (stored ciphertexts depend on them) and
// checks that none is a prefix of another, so that a label with a suite byte
// appended never equals another label.
func TestLabels(t *testing.T) {
	labels := map[string]string{
		"phicrypt/v1/aead-key/":           LabelAEAD,
		"phicrypt/v1/stream-key/":         LabelStreamKey,
		"phicrypt/v1/key-commitment":      LabelCommitment,
		"phicrypt/v1/blind-index-key":     LabelBlindIndex,
		"phicrypt/v1/blind-index-params/": LabelBlindIndexParams,
		"phicrypt/v1/audit-chain-key":     LabelAuditChain,
		"phicrypt/v1/key-metadata-key":    LabelKeyMetadata,
	}
	for want, got := range labels {
		assert.Equal(t, want, got)
		for other := range labels {
			if other != want {
				assert.False(t, bytes.HasPrefix([]byte(other), []byte(want)), "%q is a prefix of %q", want, other)
			}
		}
	}
}
