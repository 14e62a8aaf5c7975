package migrate_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/migrate"
)

// BenchmarkReencrypt re-encrypts a 10,000-row PostgreSQL table after a data
// key rotation, against the same batched read-and-write-back loop without
// encryption (read a batch by key range, write it back with one UPDATE …
// FROM (VALUES …)). Compare the rows/s metrics.
func BenchmarkReencrypt(b *testing.B) {
	const rows = 10_000
	ctx := context.Background()
	e := newEnv(b, kinds[1], rows)
	_, err := migrate.Run(ctx, e.config("enc", migrate.Encrypt))
	require.NoError(b, err)

	n := 0 // job names stay unique across -count runs
	b.Run("phicrypt", func(b *testing.B) {
		for b.Loop() {
			for i := 0; i < 3; i++ {
				_, err := e.keyring.Rotate(ctx, keys.DataKey(fmt.Sprint("tenant:", i)))
				require.NoError(b, err)
			}
			n++
			cfg := e.config(fmt.Sprint("reenc-", n), migrate.Reencrypt)
			cfg.PartitionRows, cfg.BatchRows = 1000, 250
			r, err := migrate.Run(ctx, cfg)
			require.NoError(b, err)
			require.Equal(b, int64(rows), r.Written)
		}
		b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	})

	b.Run("plain-loop", func(b *testing.B) {
		for b.Loop() {
			last := ""
			for {
				rs, err := e.db.Query("SELECT id, ssn, last, birth_date, visits_enc, ssn_index, name_dob FROM patients WHERE id > $1 ORDER BY id LIMIT 250", last)
				require.NoError(b, err)
				var vals []string
				var args []any
				for rs.Next() {
					var id, ssn, lastName, bd, v string
					var i1, i2 []byte
					require.NoError(b, rs.Scan(&id, &ssn, &lastName, &bd, &v, &i1, &i2))
					base := len(args)
					vals = append(vals, fmt.Sprintf("($%d::text, $%d::text, $%d::text, $%d::text, $%d::text, $%d::bytea, $%d::bytea)",
						base+1, base+2, base+3, base+4, base+5, base+6, base+7))
					args = append(args, id, ssn, lastName, bd, v, i1, i2)
					last = id
				}
				rs.Close()
				if len(vals) == 0 {
					break
				}
				_, err = e.db.Exec(`UPDATE patients AS t SET ssn = v.ssn, last = v.last, birth_date = v.bd, visits_enc = v.ve, ssn_index = v.i1, name_dob = v.i2
					FROM (VALUES `+strings.Join(vals, ", ")+`) AS v(id, ssn, last, bd, ve, i1, i2) WHERE t.id = v.id`, args...)
				require.NoError(b, err)
			}
		}
		b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}
