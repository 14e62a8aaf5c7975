package gormphi_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/fields/gormphi"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

// ExampleRecord is a patient as a GORM model with encrypted fields.
type ExampleRecord struct {
	ID        string                      `gorm:"primaryKey" phi:"id"` // table: GORM's, example_records
	TenantID  string                      `gorm:"index:idx_example_ssn,priority:1" phi:"scope"`
	SSN       fields.String               `phi:"encrypt"`
	Last      fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
	SSNIndex  fields.BlindIndex           `gorm:"index:idx_example_ssn,priority:2" phi:"index,of=SSN,normalize=digits,bits=8"`
}

// exampleDB opens a SQLite database in a temporary folder (modernc.org's
// pure-Go driver, through GORM's SQLite dialector) and registers the
// plugin.
func exampleDB() (*gorm.DB, func()) {
	dir, err := os.MkdirTemp("", "gormphi-example")
	if err != nil {
		log.Fatal(err)
	}
	keyFile, err := local.Generate(local.Options{KeyID: "local:example"})
	if err != nil {
		log.Fatal(err)
	}
	kek, err := local.New(local.Config{Data: keyFile})
	if err != nil {
		log.Fatal(err)
	}
	keyring, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore()})
	if err != nil {
		log.Fatal(err)
	}
	// The domain of last names, about 2^17.3 (US Census 2010), bounds
	// what SearchPatient's five indexes over Last reveal together: the
	// blind index planner accepts them.
	codec, err := fields.NewCodec(fields.Config{Keyring: keyring, SourceBits: map[string]float64{"Last": 17.3}})
	if err != nil {
		log.Fatal(err)
	}
	db, err := gorm.Open(sqlite.Dialector{DriverName: "sqlite", DSN: "file:" + filepath.Join(dir, "example.db")},
		&gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	plugin, err := gormphi.New(gormphi.Config{Codec: codec, Models: []any{&ExampleRecord{}}})
	if err != nil {
		log.Fatal(err)
	}
	if err := db.Use(plugin); err != nil {
		log.Fatal(err)
	}
	if err := db.AutoMigrate(&ExampleRecord{}); err != nil {
		log.Fatal(err)
	}
	return db, func() {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
		os.RemoveAll(dir)
	}
}

// Create seals, First opens, and the table holds only ciphertexts.
func Example() {
	db, done := exampleDB()
	defer done()
	ctx := keys.WithPrincipal(context.Background(), "dr-house")

	p := ExampleRecord{
		ID:        "a52eed3a-6dd1-7729-b65c-1b5d73e7bbe0",
		TenantID:  "tenant:st-mary",
		SSN:       fields.New("999-32-6219"),
		Last:      fields.New("Gottlieb798"),
		BirthDate: fields.New(time.Date(1993, 5, 10, 0, 0, 0, 0, time.UTC)),
	}
	if err := db.WithContext(ctx).Create(&p).Error; err != nil {
		log.Fatal(err)
	}

	var got ExampleRecord
	if err := db.WithContext(ctx).First(&got, "id = ?", p.ID).Error; err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.SSN.Get(), got.Last.Get(), got.BirthDate.Get().Format(time.DateOnly))

	var stored string
	db.Raw("SELECT ssn FROM example_records WHERE id = ?", p.ID).Row().Scan(&stored)
	fmt.Println(stored[:9])

	// Plaintext never reaches the table, whatever the path.
	err := db.Model(&got).UpdateColumn("ssn", fields.New("999-00-0000")).Error
	fmt.Println(errors.Is(err, fields.ErrNotSealed))
	err = db.Model(&got).Update("ssn", "999-00-0000").Error
	fmt.Println(errors.Is(err, gormphi.ErrPlaintext))
	// Output:
	// 999-32-6219 Gottlieb798 1993-05-10
	// phicrypt:
	// true
	// true
}

// Search by SSN: the blind index narrows the rows in SQL, Match removes
// its false positives.
func ExampleSearch() {
	db, done := exampleDB()
	defer done()
	for i, ssn := range []string{"999-32-6219", "999-56-1526", "999-71-4210"} {
		db.Create(&ExampleRecord{ID: fmt.Sprint("id-", i), TenantID: "tenant:st-mary", SSN: fields.New(ssn), Last: fields.New(fmt.Sprint("Last", i))})
	}
	found, err := gormphi.Search(db, &ExampleRecord{TenantID: "tenant:st-mary", SSN: fields.New("999 56 1526")}, "SSNIndex")
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range found {
		fmt.Println(p.ID, p.Last.Get())
	}
	// Output:
	// id-1 Last1
}

// Updates with a map seals the new value against the record and rewrites
// its blind index.
func ExamplePlugin_updates() {
	db, done := exampleDB()
	defer done()
	p := ExampleRecord{ID: "id-1", TenantID: "tenant:st-mary", SSN: fields.New("999-32-6219")}
	db.Create(&p)

	if err := db.Model(&p).Updates(map[string]any{"ssn": fields.New("999-11-2222")}).Error; err != nil {
		log.Fatal(err)
	}
	found, _ := gormphi.Search(db, &ExampleRecord{TenantID: "tenant:st-mary", SSN: fields.New("999-11-2222")}, "SSNIndex")
	fmt.Println(len(found), p.SSN.Sealed())
	// Output:
	// 1 true
}

// WhereIndex narrows a query to the candidates of a blind index; Match
// keeps those whose plaintext is the search term's.
func ExampleWhereIndex() {
	db, done := exampleDB()
	defer done()
	for i, ssn := range []string{"999-32-6219", "999-56-1526"} {
		db.Create(&ExampleRecord{ID: fmt.Sprint("id-", i), TenantID: "tenant:st-mary", SSN: fields.New(ssn)})
	}
	term := &ExampleRecord{TenantID: "tenant:st-mary", SSN: fields.New("999-32-6219")}
	var candidates []ExampleRecord
	if err := db.Scopes(gormphi.WhereIndex(term, "SSNIndex")).Order("id").Find(&candidates).Error; err != nil {
		log.Fatal(err)
	}
	codec := db.Config.Plugins[gormphi.Name].(*gormphi.Plugin).Codec()
	for _, c := range candidates {
		if ok, _ := codec.Match(&c, term, "SSNIndex"); ok {
			fmt.Println(c.ID, c.SSN.Get())
		}
	}
	// Output:
	// id-0 999-32-6219
}
