package gormphi_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/internal/benchcmp"
)

// The benchmarks insert (CreateInBatches, 1,000 a statement) and select
// (Find) 10,000 patients through GORM on PostgreSQL, with the plugin
// sealing and opening, and without it on a model of plain strings with the
// same columns and indexes. One op is the whole 10,000 rows.
//
//	go test -run '^$' -bench Postgres -benchtime 5x ./fields/gormphi
//	go test -run '^$' -bench Postgres/gorm/vs- -benchtime 20x ./fields/gormphi  # ratios only

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

// BinaryPatient is Patient with binary ciphertexts in bytea columns
// (fields.Config.Binary): a third smaller than armored text, and opened
// without base64 decoding.
type BinaryPatient struct {
	ID        string                      `gorm:"primaryKey" phi:"id,table=binary_patients"`
	TenantID  string                      `gorm:"not null;index:idx_binary_ssn,priority:1;index:idx_binary_mrn,priority:1;index:idx_binary_name_dob,priority:1" phi:"scope"`
	MRN       fields.String               `gorm:"type:bytes" phi:"encrypt"`
	SSN       fields.String               `gorm:"type:bytes" phi:"encrypt"`
	First     fields.String               `gorm:"type:bytes" phi:"encrypt"`
	Last      fields.String               `gorm:"type:bytes" phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `gorm:"type:bytes" phi:"encrypt"`
	Address   fields.String               `gorm:"type:bytes" phi:"encrypt"`
	Gender    string
	SSNIndex  fields.BlindIndex `gorm:"index:idx_binary_ssn,priority:2" phi:"index,of=SSN,normalize=digits,bits=8"`
	MRNIndex  fields.BlindIndex `gorm:"index:idx_binary_mrn,priority:2" phi:"index,of=MRN,normalize=alnum+fold,bits=8"`
	NameDOB   fields.BlindIndex `gorm:"index:idx_binary_name_dob,priority:2" phi:"index,of=Last+BirthDate,normalize=trim+fold+nfc,bits=8"`
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
	binCodec, _ := newCodec(b, fields.Config{Binary: true})
	binDB := openDB(b, "postgres", binCodec, &BinaryPatient{})
	bin := make([]*BinaryPatient, benchRows)
	for i, p := range enc {
		bin[i] = &BinaryPatient{ID: p.ID, TenantID: p.TenantID, MRN: fields.New(p.MRN.Get()), SSN: fields.New(p.SSN.Get()),
			First: fields.New(p.First.Get()), Last: fields.New(p.Last.Get()), BirthDate: fields.New(p.BirthDate.Get()),
			Address: fields.New(p.Address.Get()), Gender: p.Gender}
	}
	plainDB := openDB(b, "postgres", nil, &PlainPatient{})
	rows := func(b *testing.B) { b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s") }
	truncate := func(b *testing.B, db *gorm.DB, table string) {
		b.StopTimer()
		require.NoError(b, db.Exec("TRUNCATE "+table).Error)
		b.StartTimer()
	}

	// The selects read the rows the inserts leave behind. Insert them
	// once here too, so that a -bench pattern that skips the inserts
	// (Postgres/gorm/vs-, say) still reads 10,000 patients.
	require.NoError(b, encDB.CreateInBatches(enc, 1000).Error)
	require.NoError(b, binDB.CreateInBatches(bin, 1000).Error)
	require.NoError(b, plainDB.CreateInBatches(plain, 1000).Error)

	b.Run("gorm/insert/encrypted", func(b *testing.B) {
		for range b.N {
			truncate(b, encDB, "patients")
			require.NoError(b, encDB.CreateInBatches(enc, 1000).Error)
		}
		rows(b)
	})
	b.Run("gorm/insert/binary", func(b *testing.B) {
		for range b.N {
			truncate(b, binDB, "binary_patients")
			require.NoError(b, binDB.CreateInBatches(bin, 1000).Error)
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
	selects := []struct {
		name             string
		encrypted, plain func(*testing.B)
	}{
		{"", find(encDB, func() []Patient { return nil }), find(plainDB, func() []PlainPatient { return nil })},
		// Find into a slice with room for the rows: GORM then appends
		// without growing, which matters more for records of many
		// encrypted fields.
		{"-sized", find(encDB, func() []Patient { return make([]Patient, 0, benchRows) }),
			find(plainDB, func() []PlainPatient { return make([]PlainPatient, 0, benchRows) })},
		{"-pointers", find(encDB, func() []*Patient { return nil }), find(plainDB, func() []*PlainPatient { return nil })},
		{"-pointers-binary", find(binDB, func() []*BinaryPatient { return nil }), find(plainDB, func() []*PlainPatient { return nil })},
	}
	for _, s := range selects {
		b.Run("gorm/select"+s.name+"/encrypted", func(b *testing.B) {
			for range b.N {
				s.encrypted(b)
			}
			rows(b)
		})
	}
	// The plain reads, each once: the last entry compares binary values
	// with the same plain read as -pointers.
	for _, s := range selects[:len(selects)-1] {
		b.Run("gorm/select"+s.name+"/plain", func(b *testing.B) {
			for range b.N {
				s.plain(b)
			}
			rows(b)
		})
	}
	// Each encrypted Find against its plain one, in turn, in one run:
	// the ratio (%-of-base) holds on a shared machine where the rates
	// of separate benchmarks drift with the load.
	for _, s := range selects {
		b.Run("gorm/vs-plain/select"+s.name, func(b *testing.B) {
			benchcmp.Versus(b, func() { s.encrypted(b) }, func() { s.plain(b) })
		})
	}
}

// find returns a read, checked, of every row of db into the slice that
// newSlice makes.
func find[T any](db *gorm.DB, newSlice func() []T) func(*testing.B) {
	return func(b *testing.B) {
		got := newSlice()
		require.NoError(b, db.Find(&got).Error)
		require.Len(b, got, benchRows)
	}
}
