package migrate

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/internal/format"
	"github.com/phicrypt/phicrypt/keys"
)

// A Reencrypt job works on ciphertexts and bindings alone: a value whose
// data key version is older than its scope's active one is opened with the
// old key and sealed with the active one, bound to the same (scope, table,
// column, record id) as the application binds it, in the value's own
// encoding (text armor or binary). There is no typed record, no decode of
// the plaintext into a Go value, and no blind index work when the row's
// index keys did not change: an index computed with the active index key
// from the same plaintext would be the same value. A row whose blind
// indexes are stale or missing goes through the fields package as before
// (decideRecord), so that they are recomputed in the same write.
//
// The binding checks are the AEAD's: a value moved to another row, column,
// table or scope fails to open, and the job stops with an error matching
// envelope.ErrDecrypt, leaving the value as it is. The keyring audits the
// opens and seals exactly as for the fields package (Config.AuditUses).

// resealer holds what the Reencrypt fast path reuses across rows: one
// envelope.Compact per key kind (random, deterministic) and encoding, the
// active key versions of the current batch, and scratch space.
type resealer struct {
	// compacts[det][text]
	compacts [2][2]*envelope.Compact
	// versions caches active key versions for one batch: a rotation made
	// while it runs only leaves a value for the next job, never seals it
	// with an older key (sealing takes the keyring's active key).
	versions map[keys.ID]uint32
	// indexNames are keys.IndexKeyName of each Spec index.
	indexNames []string
	// bin holds a value's binary form, pt its plaintext (cleared after
	// each row), ct a new ciphertext before it is copied out.
	bin, pt, ct []byte
	// work lists the columns of the current row to reseal.
	work []resealItem
}

type resealItem struct {
	col  int
	text bool
}

// newResealer builds the fast path's state for w's job.
func newResealer(w *worker) (*resealer, error) {
	rs := &resealer{versions: map[keys.ID]uint32{}}
	kr := w.cfg.Keyring
	for det, ring := range [2]envelope.Keyring{kr, kr.Deterministic()} {
		for text, enc := range [2]envelope.Encoding{envelope.Binary, envelope.Text} {
			// Values are opened and resealed at their stored size: the
			// limit only has to admit what the application wrote.
			c, err := envelope.NewCompact(envelope.CompactConfig{Keyring: ring, Encoding: enc, MaxPlaintextSize: envelope.MaxPlaintextSizeLimit})
			if err != nil {
				return nil, fmt.Errorf("migrate: %w", err)
			}
			rs.compacts[det][text] = c
		}
	}
	s := &w.cfg.Spec
	for _, ix := range s.Indexes {
		name, err := keys.IndexKeyName(s.Table, ix.Column)
		if err != nil {
			return nil, fmt.Errorf("migrate: index %s: %w", ix.Column, err)
		}
		rs.indexNames = append(rs.indexNames, name)
	}
	return rs, nil
}

// newBatch forgets the cached active versions.
func (rs *resealer) newBatch() { clear(rs.versions) }

// activeVersion is Keyring.ActiveVersion, cached for the batch.
func (w *worker) activeVersion(ctx context.Context, id keys.ID) (uint32, error) {
	if v, ok := w.rs.versions[id]; ok {
		return v, nil
	}
	v, err := w.cfg.Keyring.ActiveVersion(ctx, id)
	if err != nil {
		return 0, err
	}
	w.rs.versions[id] = v
	return v, nil
}

// compactHeader returns the key version of a stored value that is a
// compact ciphertext, binary or armored, and whether it is armored. For
// anything else (NULL, legacy plaintext, another form, a malformed value:
// Verify reports those) it reports false. Only the header is decoded.
func compactHeader(v any) (version uint32, text, ok bool) {
	var head []byte // the value's first bytes, enough for a header
	switch x := v.(type) {
	case []byte:
		head = x[:min(len(x), len(format.ArmorPrefix)+12)]
	case string:
		// Text columns scan as strings: look at the header without
		// copying the whole value.
		var buf [len(format.ArmorPrefix) + 12]byte
		head = buf[:copy(buf[:], x)]
	default:
		return 0, false, false
	}
	if len(head) > 0 && head[0] == format.Magic {
		_, version, ok = format.ParseCompact(rawBytes(v))
		return version, false, ok
	}
	if !format.IsArmored(head) {
		return 0, false, false
	}
	// 12 base64 characters are 9 bytes: the 8-byte header and one more.
	body := head[len(format.ArmorPrefix):]
	if len(body) < 12 {
		return 0, false, false
	}
	var hdr [9]byte
	if _, err := base64.RawURLEncoding.Decode(hdr[:], body[:12]); err != nil {
		return 0, false, false
	}
	if hdr[0] != format.Magic || hdr[1] != format.Version1 || format.Form(hdr[2]) != format.FormCompact {
		return 0, false, false
	}
	version = uint32(hdr[4])<<24 | uint32(hdr[5])<<16 | uint32(hdr[6])<<8 | uint32(hdr[7])
	return version, true, version != 0
}

// decideReencrypt is decide for a Reencrypt job: the fast path, or
// decideRecord for a row whose blind indexes need recomputing.
func (w *worker) decideReencrypt(ctx context.Context, r *row) (*change, error) {
	if w.rs == nil {
		rs, err := newResealer(w)
		if err != nil {
			return nil, err
		}
		w.rs = rs
	}
	if r.scope == "" {
		return nil, fmt.Errorf("migrate: row %s has an empty scope", r.id)
	}
	s := &w.cfg.Spec
	rs := w.rs
	rs.work = rs.work[:0]
	for i, c := range s.Columns {
		version, text, ok := compactHeader(r.dst[i])
		if !ok {
			continue
		}
		active, err := w.activeVersion(ctx, dataKeyID(r.scope, c.Deterministic))
		if err != nil {
			return nil, err
		}
		if version < active {
			rs.work = append(rs.work, resealItem{col: i, text: text})
		}
	}
	if len(rs.work) == 0 {
		return nil, nil
	}
	current, err := w.indexesCurrent(ctx, r)
	if err != nil {
		return nil, err
	}
	if !current {
		return w.decideRecord(ctx, r)
	}
	return w.reseal(ctx, r)
}

func dataKeyID(scope string, deterministic bool) keys.ID {
	if deterministic {
		return keys.ID{Scope: scope, Name: keys.DeterministicKeyName}
	}
	return keys.DataKey(scope)
}

// indexesCurrent reports whether every blind index of r was computed with
// its active index key, or is NULL because one of its sources is: then
// resealing the row's values leaves its indexes as they are.
func (w *worker) indexesCurrent(ctx context.Context, r *row) (bool, error) {
	s := &w.cfg.Spec
	for i, ix := range s.Indexes {
		var stored fields.BlindIndex
		if err := stored.Scan(r.idx[i]); err != nil {
			return false, nil
		}
		if stored.IsNull() {
			nullSource := false
			for _, of := range ix.Of {
				if r.dst[s.column(of)] == nil {
					nullSource = true
				}
			}
			if !nullSource {
				return false, nil
			}
			continue
		}
		active, err := w.activeVersion(ctx, keys.ID{Scope: r.scope, Name: w.rs.indexNames[i]})
		if err != nil {
			return false, err
		}
		if stored.Version() != active {
			return false, nil
		}
	}
	return true, nil
}

// reseal opens the values listed in w.rs.work with their old keys and
// seals them with the active ones, and returns the row's change.
func (w *worker) reseal(ctx context.Context, r *row) (*change, error) {
	s := &w.cfg.Spec
	rs := w.rs
	// One key lookup per record for each key kind (random,
	// deterministic) and encoding, as fields.Codec.Seal does.
	var n [2][2]int
	for _, it := range rs.work {
		n[det(s.Columns[it.col])][enc(it.text)]++
	}
	var sealers [2][2]envelope.Sealer
	var openers [2]envelope.Opener
	for k := range n {
		for e := range n[k] {
			if n[k][e] == 0 {
				continue
			}
			var err error
			if sealers[k][e], err = rs.compacts[k][e].Sealer(ctx, r.scope, n[k][e]); err != nil {
				return nil, fmt.Errorf("migrate: row %s: %w", r.id, err)
			}
		}
		// Values are opened in their binary form, whatever the
		// Compact's encoding.
		openers[k] = rs.compacts[k][0].Opener(r.scope)
	}
	ch := &change{row: r, cols: make([]string, 0, len(rs.work)), olds: make([]any, 0, len(rs.work)), news: make([]any, 0, len(rs.work))}
	for _, it := range rs.work {
		c := s.Columns[it.col]
		k := det(c)
		b := envelope.Binding{Scope: r.scope, Table: s.Table, Column: c.bind(), RecordID: r.id}
		if c.Deterministic {
			// As fields binds deterministic values: to the column, not
			// the record, so that equal values match across rows.
			b.RecordID = ""
		}
		bin := rawBytes(r.dst[it.col])
		if it.text {
			var err error
			if bin, err = dearmor(&rs.bin, bin); err != nil {
				return nil, fmt.Errorf("migrate: row %s column %s: %w", r.id, c.Name, err)
			}
		}
		pt, err := openers[k].AppendDecrypt(ctx, rs.pt[:0], bin, b)
		if err != nil {
			return nil, fmt.Errorf("migrate: row %s column %s: %w", r.id, c.Name, err)
		}
		rs.pt = pt
		out, err := sealers[k][enc(it.text)].AppendEncrypt(ctx, rs.ct[:0], pt, b)
		clear(pt) // no plaintext left in scratch space
		if err != nil {
			return nil, fmt.Errorf("migrate: row %s column %s: %w", r.id, c.Name, err)
		}
		rs.ct = out
		var v any
		if it.text {
			v = string(out)
		} else {
			v = append([]byte(nil), out...)
		}
		ch.cols, ch.olds, ch.news = append(ch.cols, c.target()), append(ch.olds, r.stored(c.target(), r.dst[it.col])), append(ch.news, v)
	}
	return ch, nil
}

// enc indexes resealer.compacts by encoding.
func enc(text bool) int {
	if text {
		return 1
	}
	return 0
}

func det(c Column) int {
	if c.Deterministic {
		return 1
	}
	return 0
}

// dearmor decodes an armored value into *buf.
func dearmor(buf *[]byte, s []byte) ([]byte, error) {
	n := format.DecodedLen(len(s))
	if n < 0 {
		return nil, &envelope.FormatError{Field: "armor", Offset: -1, Reason: "impossible length"}
	}
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	out, err := format.Dearmor((*buf)[:n], s)
	if err != nil {
		return nil, err
	}
	return out, nil
}
