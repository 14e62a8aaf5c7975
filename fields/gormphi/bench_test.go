package gormphi_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/phicrypt/phicrypt/fields"
)

// The benchmarks insert (CreateInBatches, 1,000 a statement) and select
// (Find) 10,000 patients through GORM on PostgreSQL, with the plugin
// sealing and opening, and without it on a model of plain strings with the
// same columns and indexes. One op is the whole 10,000 rows.
//
//	go test -run '^$' -bench Postgres -benchtime 5x ./fields/gormphi

const benchRows = 10_000

// PlainPatient is Patient without encryption.
type PlainPatient struct {
	ID        string `gorm:"primaryKey"`
	TenantID  string `gorm:"not null;index:idx_plain_ssn,priority:1;index:idx_plain_mrn,priority:1;index:idx_plain_name_dob,priority:1"`
	MRN       string `gorm:"index:idx_plain_mrn,priority:2"`
	SSN       string `gorm:"index:idx_plain_ssn,priority:2"`
	First     string
	Last      string `gorm:"index:idx_plain_name_dob,priority:2"`
	BirthDate string `gorm:"index:idx_plain_name_dob,priority:3"`
	Address   string
	Gender    string
}

func BenchmarkPostgres(b *testing.B) {
	all := loadPatients(b)
	enc := make([]*Patient, benchRows)
	plain := make([]*PlainPatient, benchRows)
	for i := range enc {
		s := all[i%len(all)]
		s.ID = fmt.Sprintf("%08d-%s", i, s.ID[9:])
		s.MRN = mrn(s.ID)
		enc[i] = s.record()
		plain[i] = &PlainPatient{ID: s.ID, TenantID: s.TenantID, MRN: s.MRN, SSN: s.SSN, First: s.First, Last: s.Last,
			BirthDate: s.BirthDate.Format(time.DateOnly), Address: s.Address, Gender: s.Gender}
	}
	codec, _ := newCodec(b, fields.Config{})
	encDB := openDB(b, "postgres", codec, &Patient{})
	plainDB := openDB(b, "postgres", nil, &PlainPatient{})
	rows := func(b *testing.B) { b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s") }
	truncate := func(b *testing.B, db *gorm.DB, table string) {
		b.StopTimer()
		require.NoError(b, db.Exec("TRUNCATE "+table).Error)
		b.StartTimer()
	}

	b.Run("gorm/insert/encrypted", func(b *testing.B) {
		for range b.N {
			truncate(b, encDB, "patients")
			require.NoError(b, encDB.CreateInBatches(enc, 1000).Error)
		}
		rows(b)
	})
	b.Run("gorm/insert/plain", func(b *testing.B) {
		for range b.N {
			truncate(b, plainDB, "plain_patients")
			require.NoError(b, plainDB.CreateInBatches(plain, 1000).Error)
		}
		rows(b)
	})
	b.Run("gorm/select/encrypted", func(b *testing.B) {
		for range b.N {
			var got []Patient
			require.NoError(b, encDB.Find(&got).Error)
			require.Len(b, got, benchRows)
		}
		rows(b)
	})
	b.Run("gorm/select/plain", func(b *testing.B) {
		for range b.N {
			var got []PlainPatient
			require.NoError(b, plainDB.Find(&got).Error)
			require.Len(b, got, benchRows)
		}
		rows(b)
	})
}
