package fields

import (
	"errors"
	"fmt"
)

// noTableReason is the TagError reason of a type that names no table.
const noTableReason = `no table: add table=NAME to the id tag, or a PHITable() string method (or bind one with Codec.BindTable)`

// ErrTableBinding means Codec.BindTable was refused: the table is empty,
// the type names another table in its tags or PHITable method, or the
// codec has already bound the type to another table.
var ErrTableBinding = errors.New("fields: cannot bind the record type to this table")

// BindTable binds the record type of v (as for Describe) to table on this
// codec, for a type whose tags name no table (no table= option on the id
// tag, no PHITable method): an ORM that owns the table name (the GORM
// plugin binds GORM's) or a framework that maps types to tables says
// which table the type's values are bound to. Every value sealed or
// opened through this codec is then bound to that table, as if the tag
// said table=NAME; other codecs still refuse the type.
//
// Binding the table a type already names, or binding a type again to the
// same table, does nothing. Binding another table fails with
// ErrTableBinding, since values bound to one table do not open under
// another; a type whose tags are otherwise wrong fails with its
// *TagError.
func (c *Codec) BindTable(v any, table string) error {
	if err := c.ready(); err != nil {
		return err
	}
	l, err := Describe(v)
	if err != nil {
		return err
	}
	if table == "" {
		return fmt.Errorf("%w: %v: empty table name", ErrTableBinding, l.Type)
	}
	if l.Table != "" {
		if l.Table != table {
			return fmt.Errorf("%w: %v names table %q, not %q", ErrTableBinding, l.Type, l.Table, table)
		}
		return nil
	}
	base, _ := planFor(l.Type)
	bound := *base
	bound.table = table
	got, _ := c.tables.LoadOrStore(l.Type, &bound)
	if t := got.(*plan).table; t != table {
		return fmt.Errorf("%w: %v is bound to table %q on this codec, not %q", ErrTableBinding, l.Type, t, table)
	}
	return nil
}
