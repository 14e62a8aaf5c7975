package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/cases"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/internal/testsvc"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

func TestMain(m *testing.M) { os.Exit(testsvc.RunMain(m)) }

func newKeyring(t testing.TB) *keys.Keyring {
	t.Helper()
	data, err := local.Generate(local.Options{KeyID: "local:sqlpatients-test"})
	require.NoError(t, err)
	kek, err := local.New(local.Config{Data: data})
	require.NoError(t, err)
	kr, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore()})
	require.NoError(t, err)
	return kr
}

var dbSeq atomic.Int64

func pgDSN(t testing.TB) string {
	return testsvc.SharedPostgres(t).CreateDatabase(t, fmt.Sprintf("sqlpatients_%d", dbSeq.Add(1)))
}

// stores opens an empty store of each kind.
var stores = map[string]func(t testing.TB) Store{
	"sql-sqlite": func(t testing.TB) Store {
		s, c, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "p.db"), newKeyring(t))
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return s
	},
	"sql-postgres": func(t testing.TB) Store {
		s, c, err := OpenPostgres(context.Background(), pgDSN(t), newKeyring(t))
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return s
	},
	"pgx-postgres": func(t testing.TB) Store {
		s, c, err := OpenPgx(context.Background(), pgDSN(t), newKeyring(t))
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return s
	},
}

func forEachStore(t *testing.T, fn func(t *testing.T, s Store)) {
	for _, name := range []string{"sql-sqlite", "sql-postgres", "pgx-postgres"} {
		t.Run(name, func(t *testing.T) { fn(t, stores[name](t)) })
	}
}

// exec runs a raw statement (with $n placeholders) through the store's
// own driver.
func exec(t testing.TB, s Store, query string, args ...any) error {
	t.Helper()
	ctx := context.Background()
	switch s := s.(type) {
	case *SQLStore:
		_, err := s.db.ExecContext(ctx, s.q(strings.NewReplacer("$1", "?", "$2", "?").Replace(query)), args...)
		return err
	case *PgxStore:
		_, err := s.pool.Exec(ctx, query, args...)
		return err
	}
	panic("unknown store")
}

// raw returns every column of every row of the patients table.
func raw(t testing.TB, s Store) [][]byte {
	t.Helper()
	ctx := context.Background()
	var out [][]byte
	add := func(vals []any) {
		for _, v := range vals {
			switch v := v.(type) {
			case nil:
			case []byte:
				out = append(out, v)
			case string:
				out = append(out, []byte(v))
			default:
				out = append(out, fmt.Appendf(nil, "%v", v))
			}
		}
	}
	switch s := s.(type) {
	case *SQLStore:
		rows, err := s.db.QueryContext(ctx, "SELECT * FROM patients")
		require.NoError(t, err)
		defer rows.Close()
		cols, _ := rows.Columns()
		for rows.Next() {
			vals, ptrs := make([]any, len(cols)), make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			require.NoError(t, rows.Scan(ptrs...))
			add(vals)
		}
		require.NoError(t, rows.Err())
	case *PgxStore:
		rows, err := s.pool.Query(ctx, "SELECT * FROM patients")
		require.NoError(t, err)
		defer rows.Close()
		for rows.Next() {
			vals, err := rows.Values()
			require.NoError(t, err)
			add(vals)
		}
		require.NoError(t, rows.Err())
	}
	return out
}

func loadSynthea(t testing.TB) []*Patient {
	t.Helper()
	f, err := os.ReadFile("../../testdata/synthea/patients.csv")
	require.NoError(t, err)
	ps, err := ReadPatients(bytes.NewReader(f), 2)
	require.NoError(t, err)
	require.Len(t, ps, 1174)
	return ps
}

type plainRow struct{ id, tenant, mrn, ssn, first, last, address, gender, born string }

func clearOf(p *Patient) plainRow {
	return plainRow{p.ID, p.TenantID, p.MRN.Get(), p.SSN.Get(), p.First.Get(), p.Last.Get(), p.Address.Get(), p.Gender,
		p.BirthDate.Get().Format("2006-01-02")}
}

func ids(ps []*Patient) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

// TestSynthea stores the 1,174 Synthea patients, reads each back, finds
// them by SSN, MRN and last name with birth date, and finds none of their
// PHI in the table.
func TestSynthea(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		all := loadSynthea(t)
		want := make([]plainRow, len(all))
		for i, p := range all {
			want[i] = clearOf(p)
		}
		require.NoError(t, s.Insert(ctx, all))
		for _, w := range want {
			got, err := s.Get(ctx, w.tenant, w.id)
			require.NoError(t, err)
			require.Equal(t, w, clearOf(got))
		}
		_, err := s.Get(ctx, "tenant:0", "nobody")
		assert.ErrorIs(t, err, ErrNotFound)

		fold := cases.Fold()
		for i := 0; i < len(want); i += 9 {
			w := want[i]
			found, err := s.Search(ctx, &Patient{TenantID: w.tenant, SSN: fields.New(strings.ReplaceAll(w.ssn, "-", " "))}, "SSNIndex")
			require.NoError(t, err)
			assert.Equal(t, []string{w.id}, ids(found))
			found, err = s.Search(ctx, &Patient{TenantID: w.tenant, MRN: fields.New(strings.ToLower(w.mrn))}, "MRNIndex")
			require.NoError(t, err)
			assert.Equal(t, []string{w.id}, ids(found))
			found, err = s.Search(ctx, &Patient{TenantID: w.tenant, Last: fields.New(strings.ToUpper(w.last)), BirthDate: all[i].BirthDate}, "NameDOB")
			require.NoError(t, err)
			var expect []string
			for _, o := range want {
				if o.tenant == w.tenant && fold.String(o.last) == fold.String(w.last) && o.born == w.born {
					expect = append(expect, o.id)
				}
			}
			assert.ElementsMatch(t, expect, ids(found))
		}

		values := raw(t, s)
		require.Len(t, values, len(all)*12)
		haystack := bytes.Join(values, []byte{0})
		for _, w := range want {
			for _, secret := range []string{w.mrn, w.ssn, strings.ReplaceAll(w.ssn, "-", ""), w.first, w.last, w.address, w.born} {
				// Shorter strings occur by chance in 1.3 MB of base64url
				// (a 4-character one with probability 8%).
				if len(secret) >= 6 && bytes.Contains(haystack, []byte(secret)) {
					t.Errorf("the table holds PHI of patient %s", w.id)
				}
			}
		}
	})
}

func TestSwappedCiphertextsFailToDecrypt(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		ps := loadSynthea(t)[:4]
		require.NoError(t, s.Insert(ctx, ps))
		a, b := ps[0], ps[2]
		require.Equal(t, a.TenantID, b.TenantID)
		sa, _ := a.SSN.Value()
		sb, _ := b.SSN.Value()
		require.NoError(t, exec(t, s, "UPDATE patients SET ssn = $1 WHERE id = $2", sb, a.ID))
		require.NoError(t, exec(t, s, "UPDATE patients SET ssn = $1 WHERE id = $2", sa, b.ID))
		for _, p := range []*Patient{a, b} {
			_, err := s.Get(ctx, p.TenantID, p.ID)
			assert.ErrorIs(t, err, envelope.ErrDecrypt)
		}
		_, err := s.Get(ctx, ps[1].TenantID, ps[1].ID)
		assert.NoError(t, err)
	})
}

// TestUnsealedRefused: an Encrypted that was not sealed cannot become a
// driver value, through database/sql or pgx.
func TestUnsealedRefused(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		ps := loadSynthea(t)[:1]
		require.NoError(t, s.Insert(ctx, ps))
		before := raw(t, s)
		err := exec(t, s, "UPDATE patients SET ssn = $1 WHERE id = $2", fields.New("999-00-1234"), ps[0].ID)
		assert.ErrorIs(t, err, fields.ErrNotSealed)
		err = exec(t, s, "UPDATE patients SET ssn = $1 WHERE id = $2", &Patient{}, ps[0].ID)
		assert.Error(t, err, "a record is no column value")
		assert.Equal(t, before, raw(t, s))
	})
}

func TestRun(t *testing.T) {
	const want = "stored 20 patients\n" +
		"read back a52eed3a-6dd1-7729-b65c-1b5d73e7bbe0: Ignacio928 Gottlieb798, born 1993-05-10\n" +
		"search by SSNIndex: 1 found\nsearch by MRNIndex: 1 found\nsearch by NameDOB: 1 found\n"
	for _, c := range []struct {
		name   string
		pg     bool
		usePgx bool
	}{{"sqlite", false, false}, {"postgres", true, false}, {"pgx", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			dsn := ""
			if c.pg {
				dsn = pgDSN(t)
			}
			var out bytes.Buffer
			require.NoError(t, run(context.Background(), &out, dsn, c.usePgx))
			assert.Equal(t, want, out.String())
		})
	}
}
