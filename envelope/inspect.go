package envelope

import (
	"fmt"

	"github.com/phicrypt/phicrypt/internal/format"
)

// Form is the form of a ciphertext.
type Form uint8

// Forms. Values are wire constants.
const (
	// CompactForm names its data key by version (Compact).
	CompactForm = Form(format.FormCompact)
	// SelfContainedForm carries its wrapped data key (SelfContained).
	SelfContainedForm = Form(format.FormSelfContained)
	// StreamForm is a segmented stream (SelfContained.EncryptStream).
	StreamForm = Form(format.FormStream)
)

// String returns "compact", "self-contained" or "stream".
func (f Form) String() string {
	switch f {
	case CompactForm:
		return "compact"
	case SelfContainedForm:
		return "self-contained"
	case StreamForm:
		return "stream"
	}
	return fmt.Sprintf("Form(%d)", uint8(f))
}

// Info describes a ciphertext without decrypting it.
type Info struct {
	Form     Form
	Suite    Suite
	Encoding Encoding
	// KeyVersion is the data key version of a compact ciphertext.
	KeyVersion uint32
	// KEKID is the key id of the KEK that wrapped the data key of a
	// self-contained ciphertext or a stream.
	KEKID string
	// PlaintextSize is the size of the plaintext it holds; -1 for a
	// stream, whose size is known only once it has been read to the end.
	PlaintextSize int
	// SegmentSize is the plaintext size of a stream's segments.
	SegmentSize int
}

// Inspect parses a ciphertext's header, binary or armored, without
// decrypting it. Migrations use it to tell legacy plaintext (ErrNotEncrypted)
// from ciphertext, and to count values per key version. It does not
// authenticate anything: a value Inspect accepts may still fail to decrypt.
//
// For a stream the header suffices: its first MaxStreamHeaderSize bytes, or
// the whole stream.
func Inspect(ciphertext []byte) (Info, error) {
	if len(ciphertext) > 2 && ciphertext[0] == format.Magic && format.Form(ciphertext[2]) == format.FormStream {
		h, err := format.ParseHeader(ciphertext)
		if err != nil {
			return Info{}, err
		}
		return Info{
			Form:          StreamForm,
			Suite:         Suite(h.Suite),
			KEKID:         string(h.KEKID),
			PlaintextSize: -1,
			SegmentSize:   int(h.SegmentSize),
		}, nil
	}
	o, err := newOpening(nil, ciphertext, 0, MaxPlaintextSizeLimit)
	if err != nil {
		return Info{}, err
	}
	if o.h.Form == format.FormStream {
		return Info{}, &FormatError{Field: "armor", Offset: -1, Reason: "streams are binary only"}
	}
	nonce, tag, _ := o.h.Suite.Params()
	info := Info{
		Form:          Form(o.h.Form),
		Suite:         Suite(o.h.Suite),
		KeyVersion:    o.h.KeyVersion,
		KEKID:         string(o.h.KEKID),
		PlaintextSize: len(o.bin) - o.h.Size - nonce - tag,
	}
	if format.IsArmored(ciphertext) {
		info.Encoding = Text
	}
	return info, nil
}
