package migrate_test

import (
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/migrate"
)

// Patient is the application's record type.
type Patient struct {
	ID        string                      `phi:"id,table=patients"`
	TenantID  string                      `phi:"scope"`
	SSN       fields.String               `phi:"encrypt"`
	LastName  fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
	SSNIndex  fields.BlindIndex           `phi:"index,of=SSN,normalize=digits,bits=16"`
	NameDOB   fields.BlindIndex           `phi:"index,of=LastName+BirthDate,normalize=trim+fold|date,bits=16"`
}

// The spec of a type comes from its tags. Saved as JSON, it is what
// "phicrypt migrate reencrypt --spec patients.json" reads: a program of
// the application's own module writes it, for example
// tools/phispec/main.go run with "go run ./tools/phispec > patients.json".
func ExampleSpecFor() {
	spec, err := migrate.SpecFor(&Patient{})
	if err != nil {
		log.Fatal(err)
	}
	out, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(out))
	// Output:
	// {
	//   "Table": "patients",
	//   "ID": "id",
	//   "ScopeColumn": "tenant_id",
	//   "Scope": "",
	//   "Columns": [
	//     {
	//       "Name": "ssn",
	//       "Target": "",
	//       "Bind": "",
	//       "Type": "string",
	//       "Deterministic": false
	//     },
	//     {
	//       "Name": "last_name",
	//       "Target": "",
	//       "Bind": "",
	//       "Type": "string",
	//       "Deterministic": false
	//     },
	//     {
	//       "Name": "birth_date",
	//       "Target": "",
	//       "Bind": "",
	//       "Type": "time",
	//       "Deterministic": false
	//     }
	//   ],
	//   "Indexes": [
	//     {
	//       "Column": "ssn_index",
	//       "Of": [
	//         "ssn"
	//       ],
	//       "Normalize": "digits",
	//       "Bits": 16,
	//       "Text": false
	//     },
	//     {
	//       "Column": "name_dob",
	//       "Of": [
	//         "last_name",
	//         "birth_date"
	//       ],
	//       "Normalize": "trim+fold|date",
	//       "Bits": 16,
	//       "Text": false
	//     }
	//   ]
	// }
}
