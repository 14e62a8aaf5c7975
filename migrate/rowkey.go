package migrate

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/phicrypt/phicrypt/keys"
)

// Row ids are carried as the driver returns them (an int64, a string, a
// []byte...), never as text: compared with a parameter of another type,
// an id column without a type affinity on SQLite (or a BLOB one) orders
// every integer before every text and every text before every blob, so a
// text bound would skip rows or never end a scan. The record id bound to
// the ciphertexts is the id's text form (idText), as the application's
// string id field reads it.

// ErrRowID means a row's id is NULL or of a type that the engine cannot
// carry (an integer, a float, text, bytes or a time).
var ErrRowID = errors.New("migrate: a row id is NULL or of an unsupported type")

// ErrUnwritable means a compare-and-swap update matched no row although
// the row, read again, had not changed since it was read: the engine
// cannot write that row (a value it cannot compare with what is stored).
// The job stops rather than leave the row's plaintext behind as a
// conflict.
var ErrUnwritable = errors.New("migrate: a row's compare-and-swap update matches nothing although the row did not change")

// idText is the text form of a row id as database/sql converts it into
// a string (the record id the application binds).
func idText(v any) (string, error) {
	if v == nil {
		return "", fmt.Errorf("%w: a NULL id", ErrRowID)
	}
	var s sql.NullString
	if err := s.Scan(v); err != nil {
		return "", fmt.Errorf("%w: %T", ErrRowID, v)
	}
	return s.String, nil
}

// encodeKey encodes a row id, as the driver returned it, for a partition
// bound (a TEXT column): a letter for its type, then the value.
func encodeKey(v any) (string, error) {
	switch x := v.(type) {
	case int64:
		return "i" + strconv.FormatInt(x, 10), nil
	case float64:
		return "f" + strconv.FormatFloat(x, 'g', -1, 64), nil
	case string:
		return "s" + x, nil
	case []byte:
		return "b" + base64.StdEncoding.EncodeToString(x), nil
	case time.Time:
		return "t" + x.Format(time.RFC3339Nano), nil
	case nil:
		return "", fmt.Errorf("%w: a NULL id", ErrRowID)
	}
	return "", fmt.Errorf("%w: %T", ErrRowID, v)
}

// decodeKey decodes encodeKey.
func decodeKey(s string) (any, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: an empty partition bound", ErrRowID)
	}
	body := s[1:]
	var v any
	var err error
	switch s[0] {
	case 'i':
		v, err = strconv.ParseInt(body, 10, 64)
	case 'f':
		v, err = strconv.ParseFloat(body, 64)
	case 's':
		v = body
	case 'b':
		v, err = base64.StdEncoding.DecodeString(body)
	case 't':
		v, err = time.Parse(time.RFC3339Nano, body)
	default:
		err = errors.New("unknown type")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: partition bound: %w", ErrRowID, err)
	}
	return v, nil
}

// bound reads a stored partition bound: nil when unbounded, the stored
// text itself for the jobs of earlier releases (textBounds).
func (w *worker) bound(b sql.NullString) (any, error) {
	if !b.Valid {
		return nil, nil
	}
	if w.textBounds {
		return b.String, nil
	}
	return decodeKey(b.String)
}

// convertedTypes are the declared SQLite column types whose values the
// drivers convert when read (modernc.org/sqlite and mattn/go-sqlite3 turn
// the text of DATE, DATETIME and TIMESTAMP columns into a time.Time,
// mattn the integers of BOOLEAN ones into a bool): bound back, such a
// value is written in another format and compares unequal to the stored
// one.
var convertedTypes = map[string]bool{"DATE": true, "DATETIME": true, "TIMESTAMP": true, "BOOLEAN": true}

// prepareRead finds, on SQLite, the columns read whose values the driver
// converts: they are read a second time as an expression (+col, which
// SQLite returns as stored), and that stored value is what the
// compare-and-swap compares and what pages through the table.
func (w *worker) prepareRead(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) error {
	if w.cfg.Dialect != keys.SQLite {
		return nil
	}
	s := &w.cfg.Spec
	cols := s.columns()
	rows, err := q.QueryContext(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM "+s.Table+" WHERE 1 = 0")
	if err != nil {
		return fmt.Errorf("migrate: read %s: %w", s.Table, err)
	}
	defer rows.Close()
	cts, err := rows.ColumnTypes()
	if err != nil {
		return fmt.Errorf("migrate: read %s: %w", s.Table, err)
	}
	w.rawCols = nil
	for i, ct := range cts {
		if convertedTypes[strings.ToUpper(ct.DatabaseTypeName())] {
			w.rawCols = append(w.rawCols, cols[i])
		}
	}
	return rows.Err()
}

// stored returns the value of column col as stored, for comparisons: the
// value read a second time unconverted (prepareRead), or v.
func (r *row) stored(col string, v any) any {
	if x, ok := r.raw[col]; ok {
		return x
	}
	return v
}

// sameRow reports whether two reads of a row found the same values.
func sameRow(a, b *row) bool {
	if a.scope != b.scope || a.ver != b.ver || !sameValue(a.key, b.key) || len(a.raw) != len(b.raw) {
		return false
	}
	for _, p := range [][2][]any{{a.src, b.src}, {a.dst, b.dst}, {a.idx, b.idx}} {
		for i := range p[0] {
			if !sameValue(p[0][i], p[1][i]) {
				return false
			}
		}
	}
	for c, v := range a.raw {
		if !sameValue(v, b.raw[c]) {
			return false
		}
	}
	return true
}
