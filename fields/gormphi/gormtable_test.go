package gormphi_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/fields/gormphi"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

// Clinician is declared the GORM way: no table in the phi tags (GORM's,
// "clinicians"), no gorm type tags (the value types give GORM their data
// types), whatever the plaintext types.
type Clinician struct {
	ID        string                      `gorm:"primaryKey" phi:"id"`
	TenantID  string                      `gorm:"not null;index:idx_clinicians_npi,priority:1" phi:"scope"`
	NPI       fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
	Shifts    fields.Encrypted[int64]     `phi:"encrypt"`
	OnCall    fields.Encrypted[bool]      `phi:"encrypt"`
	Photo     fields.Encrypted[[]byte]    `phi:"encrypt"`
	NPIIndex  fields.BlindIndex           `gorm:"index:idx_clinicians_npi,priority:2" phi:"index,of=NPI,normalize=digits,bits=8"`
	NameIndex fields.BlindIndex           `gorm:"type:text" phi:"index,of=NPI,normalize=trim,bits=8,text"`
}

// clinicianTwin is Clinician with the table named in its tag: it opens
// what the plugin wrote only if the values are bound to GORM's table.
type clinicianTwin struct {
	ID        string                      `phi:"id,table=clinicians"`
	TenantID  string                      `phi:"scope"`
	NPI       fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
	Shifts    fields.Encrypted[int64]     `phi:"encrypt"`
	OnCall    fields.Encrypted[bool]      `phi:"encrypt"`
	Photo     fields.Encrypted[[]byte]    `phi:"encrypt"`
	NPIIndex  fields.BlindIndex           `phi:"index,of=NPI,normalize=digits,bits=8"`
	NameIndex fields.BlindIndex           `phi:"index,of=NPI,normalize=trim,bits=8,text"`
}

func (clinicianTwin) TableName() string { return "clinicians" }

// TestGORMTableAndColumnTypes: the table comes from GORM when the tags
// name none, and AutoMigrate makes text columns for ciphertexts and
// bytes columns for blind indexes, with no gorm type tag.
func TestGORMTableAndColumnTypes(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		codec, _ := newCodec(t, fields.Config{})
		db := openDB(t, dialect, codec, &Clinician{})

		want := map[string]string{"npi": "text", "birth_date": "text", "shifts": "text", "on_call": "text", "photo": "text",
			"npi_index": "bytea", "name_index": "text"}
		if dialect == "sqlite" {
			want["npi_index"] = "blob"
		}
		cts, err := db.Migrator().ColumnTypes(&Clinician{})
		require.NoError(t, err)
		got := map[string]string{}
		for _, ct := range cts {
			if _, ok := want[ct.Name()]; ok {
				got[ct.Name()] = strings.ToLower(ct.DatabaseTypeName())
			}
		}
		assert.Equal(t, want, got)

		born := time.Date(1971, 3, 4, 0, 0, 0, 0, time.UTC)
		c := &Clinician{ID: "c1", TenantID: "tenant:a", NPI: fields.New("1234567893"), BirthDate: fields.New(born),
			Shifts: fields.New[int64](12), OnCall: fields.New(true), Photo: fields.New([]byte{0xff, 0xd8})}
		require.NoError(t, db.Create(c).Error)
		var back Clinician
		require.NoError(t, db.First(&back, "id = ?", "c1").Error)
		assert.Equal(t, "1234567893", back.NPI.Get())
		assert.True(t, born.Equal(back.BirthDate.Get()))
		assert.Equal(t, int64(12), back.Shifts.Get())
		assert.True(t, back.OnCall.Get())
		assert.Equal(t, []byte{0xff, 0xd8}, back.Photo.Get())
		found, err := gormphi.Search(db, &Clinician{TenantID: "tenant:a", NPI: fields.New("123-456-7893")}, "NPIIndex")
		require.NoError(t, err)
		require.Len(t, found, 1)
		assert.Equal(t, "c1", found[0].ID)

		// The values are bound to GORM's table name: the twin that names
		// it in its tag opens them.
		var twin clinicianTwin
		require.NoError(t, db.First(&twin, "id = ?", "c1").Error)
		assert.Equal(t, "1234567893", twin.NPI.Get())
		assert.Equal(t, int64(12), twin.Shifts.Get())

		// Nothing readable in the table.
		assert.Empty(t, leaks(rawRows(t, db, "clinicians"), []string{"1234567893"}))
	})
}

// TestGORMTableBindingConflicts: one codec binds a type to one table; a
// second *gorm.DB that names it differently is refused, since the values
// would not open under the other name. Wrong gorm type tags are layout
// errors.
func TestGORMTableBindingConflicts(t *testing.T) {
	codec, _ := newCodec(t, fields.Config{})
	openDB(t, "sqlite", codec, &Clinician{})
	db, err := gorm.Open(dialects["sqlite"](t), &gorm.Config{Logger: logger.Discard,
		NamingStrategy: schema.NamingStrategy{TablePrefix: "ehr_"}})
	require.NoError(t, err)
	plugin, err := gormphi.New(gormphi.Config{Codec: codec, Models: []any{&Clinician{}}})
	require.NoError(t, err)
	assert.ErrorIs(t, db.Use(plugin), fields.ErrTableBinding)

	// With a codec of its own, the prefixed table is the bound one.
	other, _ := newCodec(t, fields.Config{})
	db, err = gorm.Open(dialects["sqlite"](t), &gorm.Config{Logger: logger.Discard,
		NamingStrategy: schema.NamingStrategy{TablePrefix: "ehr_"}})
	require.NoError(t, err)
	plugin, err = gormphi.New(gormphi.Config{Codec: other, Models: []any{&Clinician{}}})
	require.NoError(t, err)
	require.NoError(t, db.Use(plugin))
	require.NoError(t, db.AutoMigrate(&Clinician{}))
	require.NoError(t, db.Create(&Clinician{ID: "c2", TenantID: "tenant:a", NPI: fields.New("1")}).Error)
	var twin clinicianTwin
	err = db.Table("ehr_clinicians").First(&twin, "id = ?", "c2").Error
	assert.ErrorIs(t, err, envelope.ErrDecrypt, "bound to ehr_clinicians, GORM's name, not clinicians")

	type textIndexAsBytes struct {
		ID       string            `phi:"id,table=text_index_as_bytes"`
		TenantID string            `phi:"scope"`
		SSN      fields.String     `phi:"encrypt"`
		SSNIndex fields.BlindIndex `phi:"index,of=SSN,bits=8,text"`
	}
	type bytesIndexAsText struct {
		ID       string            `phi:"id,table=bytes_index_as_texts"`
		TenantID string            `phi:"scope"`
		SSN      fields.String     `phi:"encrypt"`
		SSNIndex fields.BlindIndex `gorm:"type:varchar(64)" phi:"index,of=SSN,bits=8"`
	}
	type jsonColumn struct {
		ID       string                   `phi:"id,table=json_columns"`
		TenantID string                   `phi:"scope"`
		Tags     fields.Encrypted[[]int]  `gorm:"type:jsonb" phi:"encrypt"`
		Binary   fields.Encrypted[[]byte] `gorm:"type:bytes" phi:"encrypt"`
	}
	for _, model := range []any{&textIndexAsBytes{}, &bytesIndexAsText{}, &jsonColumn{}} {
		db, err := gorm.Open(dialects["sqlite"](t), &gorm.Config{Logger: logger.Discard})
		require.NoError(t, err)
		plugin, err := gormphi.New(gormphi.Config{Codec: codec, Models: []any{model}})
		require.NoError(t, err)
		var le *gormphi.LayoutError
		require.ErrorAs(t, db.Use(plugin), &le, "%T", model)
	}
}

// TestGORMTableForRawScans: a type read only by Raw(...).Scan, which runs
// no query callback, is bound to GORM's table before it is opened.
func TestGORMTableForRawScans(t *testing.T) {
	data, err := local.Generate(local.Options{KeyID: "local:gormphi-scan"})
	require.NoError(t, err)
	kek, err := local.New(local.Config{Data: data})
	require.NoError(t, err)
	kr, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore()})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "scan.db")
	open := func(models ...any) *gorm.DB {
		codec, err := fields.NewCodec(fields.Config{Keyring: kr})
		require.NoError(t, err)
		db, err := gorm.Open(sqlite.Dialector{DriverName: "sqlite", DSN: gormphi.SQLiteDSN(path)}, &gorm.Config{Logger: logger.Discard})
		require.NoError(t, err)
		sqlDB, err := db.DB()
		require.NoError(t, err)
		t.Cleanup(func() { sqlDB.Close() })
		plugin, err := gormphi.New(gormphi.Config{Codec: codec, Models: models})
		require.NoError(t, err)
		require.NoError(t, db.Use(plugin))
		return db
	}
	writer := open(&Clinician{})
	require.NoError(t, writer.AutoMigrate(&Clinician{}))
	require.NoError(t, writer.Create(&Clinician{ID: "c1", TenantID: "tenant:a", NPI: fields.New("1234567893")}).Error)

	reader := open() // a new codec that has not seen the type
	var rows []Clinician
	tx := gormphi.Scan(reader.Raw("SELECT * FROM clinicians"), &rows)
	require.NoError(t, tx.Error)
	require.Len(t, rows, 1)
	assert.Equal(t, "1234567893", rows[0].NPI.Get())
}
