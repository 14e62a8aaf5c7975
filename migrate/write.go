package migrate

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/phicrypt/phicrypt/internal/sqltx"
	"github.com/phicrypt/phicrypt/keys"
)

// write applies changes with compare-and-swap updates and marks those
// written done; a row written since it was read is left alone. On
// PostgreSQL rows that write the same columns go in one UPDATE … FROM
// (VALUES …) RETURNING id, conditioned on the row version read; on SQLite,
// the single writer, one UPDATE per row, conditioned on the values read.
func (w *worker) write(ctx context.Context, q sqltx.Querier, changes []*change) error {
	if w.cfg.Dialect == keys.SQLite {
		for _, ch := range changes {
			n, err := w.writeOne(ctx, q, ch)
			if err != nil {
				return err
			}
			ch.done = n == 1
		}
		return nil
	}
	groups := map[string][]*change{}
	var order []string
	for _, ch := range changes {
		k := strings.Join(ch.cols, ",")
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], ch)
	}
	for _, k := range order {
		if err := w.writeGroup(ctx, q, groups[k]); err != nil {
			return err
		}
	}
	return nil
}

// writeOne is the compare-and-swap update of one row: it sets ch.cols,
// if they and ch.cmpCols still hold the values read.
func (w *worker) writeOne(ctx context.Context, q sqltx.Querier, ch *change) (int64, error) {
	s := &w.cfg.Spec
	var set, cond []string
	var args []any
	for i, c := range ch.cols {
		set = append(set, c+" = ?")
		args = append(args, ch.news[i])
	}
	args = append(args, ch.row.key)
	for i, c := range ch.cols {
		cond = append(cond, c+" IS ?")
		args = append(args, ch.olds[i])
	}
	for i, c := range ch.cmpCols {
		cond = append(cond, c+" IS ?")
		args = append(args, ch.cmpOlds[i])
	}
	res, err := q.ExecContext(ctx, "UPDATE "+s.Table+" SET "+strings.Join(set, ", ")+" WHERE "+s.ID+" = ? AND "+strings.Join(cond, " AND "), args...)
	if err != nil {
		return 0, fmt.Errorf("migrate: update %s: %w", s.Table, err)
	}
	return res.RowsAffected()
}

// writeGroup is the compare-and-swap update of rows writing the same
// columns, in one statement, conditioned on the row version read (xmin):
//
//	UPDATE t SET c = v.n0 FROM (VALUES ($1::idtype, $2::text, $3::ctype), …) AS v(id, ver, n0)
//	WHERE t.id = v.id AND t.xmin::text = v.ver
//
// Any write to the row since it was read, committed or waited for (the
// update re-checks the condition on the row's newest version), makes a new
// row version with another xmin, so the row is left as that write made it
// and read again (migrateBatch). This is stricter than comparing the
// columns written, and sends only the new values: a batch's statement is
// about half the size.
func (w *worker) writeGroup(ctx context.Context, q sqltx.Querier, group []*change) error {
	s := &w.cfg.Spec
	cols := group[0].cols
	var values strings.Builder
	values.Grow(len(group) * (24 + 24*len(cols)))
	args := make([]any, 0, len(group)*(2+len(cols)))
	param := func(cast string) {
		values.WriteByte('$')
		values.WriteString(strconv.Itoa(len(args) + 1))
		values.WriteString("::")
		values.WriteString(cast)
	}
	for i, ch := range group {
		if i > 0 {
			values.WriteString(", ")
		}
		values.WriteByte('(')
		param(w.casts[s.ID])
		args = append(args, ch.row.key)
		values.WriteString(", ")
		param("text")
		args = append(args, ch.row.ver)
		for j, c := range cols {
			values.WriteString(", ")
			param(w.casts[c])
			args = append(args, ch.news[j])
		}
		values.WriteByte(')')
	}
	names := []string{"id", "ver"}
	var set []string
	for i, c := range cols {
		names = append(names, "n"+strconv.Itoa(i))
		set = append(set, c+" = v.n"+strconv.Itoa(i))
	}
	query := "UPDATE " + s.Table + " AS t SET " + strings.Join(set, ", ") + " FROM (VALUES " + values.String() + ") AS v(" + strings.Join(names, ", ") +
		") WHERE t." + s.ID + " = v.id AND t.xmin::text = v.ver RETURNING t." + s.ID
	byKey := make(map[string]*change, len(group))
	for _, ch := range group {
		k, err := encodeKey(ch.row.key)
		if err != nil {
			return err
		}
		byKey[k] = ch
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("migrate: update %s: %w", s.Table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id any
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("migrate: update %s: %w", s.Table, err)
		}
		k, err := encodeKey(ownBytes(id))
		if err != nil {
			return fmt.Errorf("migrate: update %s: %w", s.Table, err)
		}
		if ch := byKey[k]; ch != nil {
			ch.done = true
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("migrate: update %s: %w", s.Table, err)
	}
	return nil
}
