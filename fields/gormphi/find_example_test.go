package gormphi_test

import (
	"fmt"
	"log"
	"time"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/fields/gormphi"
)

// Find by example: the blind indexes whose sources the template sets,
// every live key version, the false positives removed.
func ExampleFind() {
	db, done := exampleDB()
	defer done()
	for i, ssn := range []string{"999-32-6219", "999-56-1526", "999-71-4210"} {
		db.Create(&ExampleRecord{ID: fmt.Sprint("id-", i), TenantID: "tenant:st-mary", SSN: fields.New(ssn), Last: fields.New(fmt.Sprint("Last", i))})
	}
	found, err := gormphi.Find(db, &ExampleRecord{TenantID: "tenant:st-mary", SSN: fields.New("999 56 1526")})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range found {
		fmt.Println(p.ID, p.Last.Get())
	}
	// Output:
	// id-1 Last1
}

// A front-desk search: last names starting with "smi", born between
// March 1980 and June 1985.
func ExampleQuery() {
	db, done := exampleDB()
	defer done()
	if err := db.AutoMigrate(&SearchPatient{}); err != nil {
		log.Fatal(err)
	}
	for i, p := range []struct {
		last string
		born time.Time
	}{
		{"Smith", time.Date(1983, 7, 4, 0, 0, 0, 0, time.UTC)},
		{"Smithers", time.Date(1985, 7, 1, 0, 0, 0, 0, time.UTC)}, // born too late
		{"Smyth", time.Date(1981, 1, 1, 0, 0, 0, 0, time.UTC)},    // another prefix
		{"SMIRNOV", time.Date(1980, 3, 1, 0, 0, 0, 0, time.UTC)},
	} {
		db.Create(&SearchPatient{ID: fmt.Sprint("id-", i), TenantID: "tenant:st-mary", Last: fields.New(p.last), BirthDate: fields.New(p.born)})
	}
	born, err := fields.ParseDateRange("1980-03..1985-06")
	if err != nil {
		log.Fatal(err)
	}
	q := fields.NewQuery(&SearchPatient{TenantID: "tenant:st-mary", Last: fields.New("smi")}).
		Prefix("Last").
		DateRange("BirthDate", born)
	found, err := gormphi.Query[SearchPatient](db.Order("id"), q)
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range found {
		fmt.Println(p.ID, p.Last.Get(), p.BirthDate.Get().Format(time.DateOnly))
	}
	// Output:
	// id-0 Smith 1983-07-04
	// id-3 SMIRNOV 1980-03-01
}
