package migrate_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/benchcmp"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/migrate"
)

// BenchmarkReencrypt re-encrypts a 10,000-row PostgreSQL table after a data
// key rotation, side by side with the same batched read-and-write-back loop
// without encryption (read a batch by key range, write it back with one
// UPDATE … FROM (VALUES …)), and with the record path that decodes every
// row into a typed record (Open, then Seal, as Encrypt jobs do). Each
// iteration runs the three once, in turn, so that they see the same load;
// it reports each one's rows/s and the median over the iterations of
// reencrypt/plain (the target is at least 0.6) and of record/plain. The
// database server is another process, whose share of a shared machine
// varies; the CPU time of this process per row (cpu-µs/row) tells the
// paths' own cost apart however loaded the database is.
func BenchmarkReencrypt(b *testing.B) {
	const rows = 10_000
	ctx := context.Background()
	e := newEnv(b, kinds[1], rows)
	_, err := migrate.Run(ctx, e.config("enc", migrate.Encrypt))
	require.NoError(b, err)

	n := 0 // job names stay unique across -count runs
	var cpuFast, cpuRecord time.Duration
	reencrypt := func(record bool) time.Duration {
		for i := 0; i < 3; i++ {
			_, err := e.keyring.Rotate(ctx, keys.DataKey(fmt.Sprint("tenant:", i)))
			require.NoError(b, err)
		}
		n++
		cfg := e.config(fmt.Sprint("reenc-", n), migrate.Reencrypt)
		cfg.PartitionRows, cfg.BatchRows = 1000, 250
		if record {
			migrate.UseRecordPath(&cfg)
		}
		start, cpu := time.Now(), benchcmp.CPUTime()
		r, err := migrate.Run(ctx, cfg)
		took := time.Since(start)
		if record {
			cpuRecord += benchcmp.CPUTime() - cpu
		} else {
			cpuFast += benchcmp.CPUTime() - cpu
		}
		require.NoError(b, err)
		require.Equal(b, int64(rows), r.Written)
		return took
	}
	plain := func() time.Duration {
		start := time.Now()
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
		return time.Since(start)
	}

	var tFast, tPlain, tRecord time.Duration
	var fastRatios, recordRatios []float64
	for b.Loop() {
		p := plain()
		f := reencrypt(false)
		r := reencrypt(true)
		tPlain, tFast, tRecord = tPlain+p, tFast+f, tRecord+r
		// rows/s ratios: the inverse of the time ratios.
		fastRatios = append(fastRatios, p.Seconds()/f.Seconds())
		recordRatios = append(recordRatios, p.Seconds()/r.Seconds())
	}
	median := func(x []float64) float64 { slices.Sort(x); return x[len(x)/2] }
	b.ReportMetric(float64(rows*b.N)/tFast.Seconds(), "reencrypt-rows/s")
	b.ReportMetric(float64(rows*b.N)/tRecord.Seconds(), "record-rows/s")
	b.ReportMetric(float64(rows*b.N)/tPlain.Seconds(), "plain-rows/s")
	b.ReportMetric(median(fastRatios), "reencrypt/plain")
	b.ReportMetric(median(recordRatios), "record/plain")
	b.ReportMetric(float64(cpuFast.Microseconds())/float64(rows*b.N), "reencrypt-cpu-µs/row")
	b.ReportMetric(float64(cpuRecord.Microseconds())/float64(rows*b.N), "record-cpu-µs/row")
}
