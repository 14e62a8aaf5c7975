package fields_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/internal/testsvc"
)

// BenchmarkSearchPostgres (issue 16.6): the front desk's searches over
// 10,000 patients in PostgreSQL, each against the same search on
// plaintext columns with ordinary indexes. An encrypted search is the
// whole work: terms, SELECT by index values, Open of every candidate row,
// post-filter. The patients are the Synthea CSV and bulk-export ones,
// repeated with other SSNs up to 10,000. Run with:
//
//	go test -run '^$' -bench SearchPostgres -benchtime 200x ./fields/
func BenchmarkSearchPostgres(b *testing.B) {
	ctx := context.Background()
	pg := testsvc.StartPostgres(b)
	db, err := sql.Open("pgx", pg.CreateDatabase(b, "search_bench"))
	require.NoError(b, err)
	b.Cleanup(func() { db.Close() })
	c := newCodec(b, frontDeskConfig(tenMillion))
	people := benchPeople(b, 10_000)
	loadSearchTables(b, ctx, db, c, people)
	// The queries: 64 patients of the table.
	var sample []person
	for i := 0; i < len(people); i += len(people) / 64 {
		sample = append(sample, people[i])
	}

	open := func(b *testing.B, rows *sql.Rows, keep func(*frontDesk) bool) int {
		n := 0
		defer rows.Close()
		for rows.Next() {
			r := &frontDesk{TenantID: benchTenant}
			if err := rows.Scan(&r.ID, &r.SSN, &r.First, &r.Last, &r.BirthDate); err != nil {
				b.Fatal(err)
			}
			if err := c.Open(ctx, r); err != nil {
				b.Fatal(err)
			}
			if keep(r) {
				n++
			}
		}
		if err := rows.Err(); err != nil {
			b.Fatal(err)
		}
		return n
	}
	plain := func(b *testing.B, rows *sql.Rows) int {
		n := 0
		defer rows.Close()
		for rows.Next() {
			var id, ssn, first, last string
			var born time.Time
			if err := rows.Scan(&id, &ssn, &first, &last, &born); err != nil {
				b.Fatal(err)
			}
			n++
		}
		return n
	}
	const cols = "id, ssn, first, last, birth_date"
	termBytes := func(ts []fields.BlindIndex) [][]byte {
		out := make([][]byte, len(ts))
		for i, t := range ts {
			v, _ := t.Value()
			out[i] = v.([]byte)
		}
		return out
	}
	query := func(b *testing.B, q string, args ...any) *sql.Rows {
		rows, err := db.QueryContext(ctx, q, args...)
		if err != nil {
			b.Fatal(err)
		}
		return rows
	}

	b.Run("terms/last4+DOB", func(b *testing.B) {
		for i := range b.N {
			p := sample[i%len(sample)]
			if _, err := c.IndexTerms(ctx, &frontDesk{TenantID: benchTenant, SSN: fields.New(p.SSN[7:]), BirthDate: fields.New(p.Born)}, "Last4DOB"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("terms/prefix3", func(b *testing.B) {
		for i := range b.N {
			p := sample[i%len(sample)]
			if _, err := c.PrefixSearch(ctx, &frontDesk{TenantID: benchTenant, Last: fields.New(first3(p.Last))}, "Last"); err != nil {
				b.Fatal(err)
			}
		}
	})
	var decrypted, found int
	report := func(b *testing.B) {
		b.ReportMetric(float64(decrypted)/float64(b.N), "decrypted/op")
		b.ReportMetric(float64(found)/float64(b.N), "found/op")
		decrypted, found = 0, 0
	}
	count := func(_ *frontDesk, ok bool) bool { decrypted++; return ok }

	b.Run("last4+DOB/encrypted", func(b *testing.B) {
		for i := range b.N {
			p := sample[i%len(sample)]
			q := &frontDesk{TenantID: benchTenant, SSN: fields.New(p.SSN[7:]), BirthDate: fields.New(p.Born)}
			ts, err := c.IndexTerms(ctx, q, "Last4DOB")
			if err != nil {
				b.Fatal(err)
			}
			found += open(b, query(b, "SELECT "+cols+" FROM enc WHERE tenant = $1 AND last4dob = ANY($2)", benchTenant, termBytes(ts)),
				func(r *frontDesk) bool { ok, _ := c.Match(r, q, "Last4DOB"); return count(r, ok) })
		}
		report(b)
	})
	b.Run("last4+DOB/plaintext", func(b *testing.B) {
		for i := range b.N {
			p := sample[i%len(sample)]
			found += plain(b, query(b, "SELECT "+cols+" FROM plain WHERE tenant = $1 AND right(ssn, 4) = $2 AND birth_date = $3", benchTenant, p.SSN[7:], p.Born))
		}
		report(b)
	})
	b.Run("prefix3/encrypted", func(b *testing.B) {
		for i := range b.N {
			p := sample[i%len(sample)]
			q := &frontDesk{TenantID: benchTenant, Last: fields.New(first3(p.Last))}
			pt, err := c.PrefixSearch(ctx, q, "Last")
			if err != nil {
				b.Fatal(err)
			}
			col := strings.ToLower(strings.Replace(pt.Index, "LastP", "last_p", 1))
			found += open(b, query(b, "SELECT "+cols+" FROM enc WHERE tenant = $1 AND "+col+" = ANY($2)", benchTenant, termBytes(pt.Terms)),
				func(r *frontDesk) bool { ok, _ := c.MatchPrefix(r, q, pt.Index); return count(r, ok) })
		}
		report(b)
	})
	b.Run("prefix3/plaintext", func(b *testing.B) {
		for i := range b.N {
			p := sample[i%len(sample)]
			found += plain(b, query(b, "SELECT "+cols+" FROM plain WHERE tenant = $1 AND lower(last) LIKE $2", benchTenant, strings.ToLower(first3(p.Last))+"%"))
		}
		report(b)
	})
	b.Run("soundslike/encrypted", func(b *testing.B) {
		for i := range b.N {
			p := sample[i%len(sample)]
			q := &frontDesk{TenantID: benchTenant, Last: fields.New(p.Last)}
			ts, err := c.IndexTerms(ctx, q, "LastSound")
			if err != nil {
				b.Fatal(err)
			}
			found += open(b, query(b, "SELECT "+cols+" FROM enc WHERE tenant = $1 AND last_sound = ANY($2)", benchTenant, termBytes(ts)),
				func(r *frontDesk) bool { ok, _ := c.Match(r, q, "LastSound"); return count(r, ok) })
		}
		report(b)
	})
	b.Run("soundslike/plaintext", func(b *testing.B) {
		for i := range b.N {
			p := sample[i%len(sample)]
			found += plain(b, query(b, "SELECT "+cols+" FROM plain WHERE tenant = $1 AND last_code = $2", benchTenant, fields.NYSIISCode(p.Last)))
		}
		report(b)
	})
	// A range of 5 years and 4 months: 1980-03-01 to 1985-06-30, shifted
	// by a year per query.
	rangeOf := func(i int) (time.Time, time.Time) {
		from := time.Date(1950+i%40, 3, 1, 0, 0, 0, 0, time.UTC)
		return from, from.AddDate(5, 4, -1)
	}
	b.Run("daterange/encrypted", func(b *testing.B) {
		for i := range b.N {
			from, to := rangeOf(i)
			var years, months [][]byte
			for m := from; !m.After(to); {
				if m.Month() == time.January && !m.AddDate(1, 0, -1).After(to) {
					ts, err := c.IndexTerms(ctx, &frontDesk{TenantID: benchTenant, BirthDate: fields.New(m)}, "BornYear")
					if err != nil {
						b.Fatal(err)
					}
					years = append(years, termBytes(ts)...)
					m = m.AddDate(1, 0, 0)
					continue
				}
				ts, err := c.IndexTerms(ctx, &frontDesk{TenantID: benchTenant, BirthDate: fields.New(m)}, "BornMonth")
				if err != nil {
					b.Fatal(err)
				}
				months = append(months, termBytes(ts)...)
				m = m.AddDate(0, 1, 0)
			}
			found += open(b, query(b, "SELECT "+cols+" FROM enc WHERE tenant = $1 AND (born_year = ANY($2) OR born_month = ANY($3))", benchTenant, years, months),
				func(r *frontDesk) bool {
					d := r.BirthDate.Get()
					return count(r, !d.Before(from) && !d.After(to))
				})
		}
		report(b)
	})
	b.Run("daterange/plaintext", func(b *testing.B) {
		for i := range b.N {
			from, to := rangeOf(i)
			found += plain(b, query(b, "SELECT "+cols+" FROM plain WHERE tenant = $1 AND birth_date BETWEEN $2 AND $3", benchTenant, from, to))
		}
		report(b)
	})
}

const benchTenant = "tenant:bench"

// first3 is the first three characters of s (all of it when shorter).
func first3(s string) string {
	r := []rune(s)
	return string(r[:min(3, len(r))])
}

// benchPeople returns n patients: the CSV and bulk-export ones, repeated
// with other SSNs.
func benchPeople(b *testing.B, n int) []person {
	base := append(loadCSVPeople(b), loadBulkPeople(b)...)
	require.NotEmpty(b, base)
	out := make([]person, n)
	for i := range out {
		p := base[i%len(base)]
		p.ID = fmt.Sprintf("p%05d", i)
		if i >= len(base) {
			p.SSN = fmt.Sprintf("999-%02d-%04d", i%100, (i*7919)%10000)
		}
		out[i] = p
	}
	return out
}

// loadSearchTables creates and fills the encrypted and the plaintext
// tables, with their indexes.
func loadSearchTables(b *testing.B, ctx context.Context, db *sql.DB, c *fields.Codec, people []person) {
	for _, ddl := range []string{
		`CREATE TABLE enc (id text PRIMARY KEY, tenant text NOT NULL, ssn text, first text, last text, birth_date text,
			last4dob bytea, last_p2 bytea, last_p3 bytea, last_p4 bytea, last_p5 bytea, last_sound bytea, first_snd bytea, born_year bytea, born_month bytea)`,
		`CREATE TABLE plain (id text PRIMARY KEY, tenant text NOT NULL, ssn text, first text, last text, birth_date date, last_code text)`,
		`CREATE INDEX ON plain (tenant, right(ssn, 4), birth_date)`,
		`CREATE INDEX ON plain (tenant, lower(last) text_pattern_ops)`,
		`CREATE INDEX ON plain (tenant, last_code)`,
		`CREATE INDEX ON plain (tenant, birth_date)`,
	} {
		_, err := db.ExecContext(ctx, ddl)
		require.NoError(b, err)
	}
	for _, col := range []string{"last4dob", "last_p2", "last_p3", "last_p4", "last_p5", "last_sound", "first_snd", "born_year", "born_month"} {
		_, err := db.ExecContext(ctx, fmt.Sprintf("CREATE INDEX ON enc (tenant, %s)", col))
		require.NoError(b, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(b, err)
	for _, p := range people {
		r := &frontDesk{ID: p.ID, TenantID: benchTenant, SSN: fields.New(p.SSN), First: fields.New(p.First), Last: fields.New(p.Last), BirthDate: fields.New(p.Born)}
		require.NoError(b, c.Seal(ctx, r))
		_, err := tx.ExecContext(ctx, `INSERT INTO enc VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
			r.ID, r.TenantID, r.SSN, r.First, r.Last, r.BirthDate, r.Last4DOB, r.LastP2, r.LastP3, r.LastP4, r.LastP5, r.LastSound, r.FirstSnd, r.BornYear, r.BornMonth)
		require.NoError(b, err)
		_, err = tx.ExecContext(ctx, `INSERT INTO plain VALUES ($1, $2, $3, $4, $5, $6, $7)`, p.ID, benchTenant, p.SSN, p.First, p.Last, p.Born, fields.NYSIISCode(p.Last))
		require.NoError(b, err)
	}
	require.NoError(b, tx.Commit())
	for _, tbl := range []string{"enc", "plain"} {
		_, err := db.ExecContext(ctx, "ANALYZE "+tbl)
		require.NoError(b, err)
	}
}
