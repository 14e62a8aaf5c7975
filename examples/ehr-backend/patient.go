package main

import (
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/phicrypt/phicrypt/fields"
)

// Patient is a row of the patients table. Its PHI is encrypted; the blind
// indexes, each indexed together with the tenant, let it be searched by
// SSN, by MRN, by last name and birth date, and by last-name prefix and
// birth-date range. The GORM columns are the
// default snake_case names, which are also the columns the values are
// bound to.
type Patient struct {
	ID        string                      `gorm:"primaryKey" phi:"id,table=patients"`
	TenantID  string                      `gorm:"not null;index:idx_patients_ssn,priority:1;index:idx_patients_mrn,priority:1;index:idx_patients_name_dob,priority:1;index:idx_patients_last_p3,priority:1;index:idx_patients_born_year,priority:1;index:idx_patients_born_month,priority:1" phi:"scope"`
	MRN       fields.String               `phi:"encrypt"`
	SSN       fields.String               `phi:"encrypt"`
	First     fields.String               `phi:"encrypt"`
	Last      fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
	Phone     fields.String               `phi:"encrypt"`
	Gender    string
	CreatedAt time.Time
	UpdatedAt time.Time
	// 16-bit indexes suit a tenant of about 130,000 patients and more
	// (fields.SuggestIndexBits); a smaller site uses fewer bits.
	SSNIndex fields.BlindIndex `gorm:"index:idx_patients_ssn,priority:2" phi:"index,of=SSN,normalize=digits,bits=16"`
	MRNIndex fields.BlindIndex `gorm:"index:idx_patients_mrn,priority:2" phi:"index,of=MRN,normalize=alnum+fold,bits=16"`
	NameDOB  fields.BlindIndex `gorm:"index:idx_patients_name_dob,priority:2" phi:"index,of=Last+BirthDate,normalize=trim+fold+nfc+collapse,bits=12"`
	// For GET /patients?last=smi&born=1980-03..1985-06: the first 3
	// characters of the last name (a longer query uses it too, and the
	// post-filter keeps the rows that really start with it), and the
	// birth year and month. Each reveals which rows share it (a first
	// three letters, a birth year) to whoever reads the table, whatever
	// its bits: many patients share them, which is what keeps them from
	// singling one out (see fields.DateRangeSearch). Their bits are what
	// the blind index planner allows together for 10 million patients
	// (main.go): the last name's indexes, NameDOB included, reveal 12 + 8
	// bits of it, and the birth date's 12 + 4 + 6, within the 22.25 bits that
	// leave every row among 2 candidates or more. Prefixes of 2 and 4
	// letters beside these would reveal more than that: the planner
	// refuses them.
	LastP3    fields.BlindIndex `gorm:"index:idx_patients_last_p3,priority:2" phi:"index,of=Last,normalize=trim+fold+nfc+prefix:3,bits=8"`
	BornYear  fields.BlindIndex `gorm:"index:idx_patients_born_year,priority:2" phi:"index,of=BirthDate,normalize=year,bits=4"`
	BornMonth fields.BlindIndex `gorm:"index:idx_patients_born_month,priority:2" phi:"index,of=BirthDate,normalize=yearmonth,bits=6"`
}

// minLastPrefix is the shortest last-name prefix the front-desk search
// takes: that of the one prefix index, LastP3.
const minLastPrefix = 3

// PatientInput is the JSON body of a create (every field but Phone and
// Gender required) or an update (only the fields present change; null
// clears Phone).
type PatientInput struct {
	MRN       *string `json:"mrn"`
	SSN       *string `json:"ssn"`
	First     *string `json:"first"`
	Last      *string `json:"last"`
	BirthDate *string `json:"birth_date"` // YYYY-MM-DD
	Phone     *string `json:"phone"`
	Gender    *string `json:"gender"`
}

// PatientOutput is the JSON of a patient in a response. Encrypted fields
// marshal to "[redacted]" on purpose, so the handlers copy the plaintext
// here explicitly.
type PatientOutput struct {
	ID        string    `json:"id"`
	MRN       string    `json:"mrn"`
	SSN       string    `json:"ssn"`
	First     string    `json:"first"`
	Last      string    `json:"last"`
	BirthDate string    `json:"birth_date"`
	Phone     string    `json:"phone,omitempty"`
	Gender    string    `json:"gender,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func output(p *Patient) PatientOutput {
	out := PatientOutput{ID: p.ID, MRN: p.MRN.Get(), SSN: p.SSN.Get(), First: p.First.Get(), Last: p.Last.Get(),
		Phone: p.Phone.Get(), Gender: p.Gender, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
	if !p.BirthDate.IsNull() {
		out.BirthDate = p.BirthDate.Get().Format(time.DateOnly)
	}
	return out
}

var (
	ssnPattern = regexp.MustCompile(`^\d{3}-?\d{2}-?\d{4}$`)
	mrnPattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,32}$`)
)

// ValidationError is a request that breaks a rule: a 400. It names the
// field and the rule, never the value.
type ValidationError struct {
	Field, Rule string
}

// Error names the field and the rule.
func (e *ValidationError) Error() string { return e.Field + ": " + e.Rule }

// parseDate parses a YYYY-MM-DD birth date.
func parseDate(field, s string) (time.Time, error) {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, &ValidationError{field, "want a date YYYY-MM-DD"}
	}
	if d.After(time.Now()) || d.Year() < 1850 {
		return time.Time{}, &ValidationError{field, "out of range"}
	}
	return d, nil
}

// validate checks in; create requires the identifying fields.
func (in *PatientInput) validate(create bool) error {
	required := map[string]*string{"mrn": in.MRN, "ssn": in.SSN, "first": in.First, "last": in.Last, "birth_date": in.BirthDate}
	for _, name := range []string{"mrn", "ssn", "first", "last", "birth_date"} {
		v := required[name]
		if v == nil {
			if create {
				return &ValidationError{name, "required"}
			}
			continue
		}
		if strings.TrimSpace(*v) == "" || len(*v) > 200 {
			return &ValidationError{name, "must be 1 to 200 characters"}
		}
	}
	if in.SSN != nil && !ssnPattern.MatchString(*in.SSN) {
		return &ValidationError{"ssn", "want 9 digits, as NNN-NN-NNNN"}
	}
	if in.MRN != nil && !mrnPattern.MatchString(*in.MRN) {
		return &ValidationError{"mrn", "want 1 to 32 letters, digits or dashes"}
	}
	if in.BirthDate != nil {
		if _, err := parseDate("birth_date", *in.BirthDate); err != nil {
			return err
		}
	}
	if in.Phone != nil && len(*in.Phone) > 40 {
		return &ValidationError{"phone", "at most 40 characters"}
	}
	if in.Gender != nil && len(*in.Gender) > 20 {
		return &ValidationError{"gender", "at most 20 characters"}
	}
	return nil
}

// newID returns a version 7 UUID (RFC 9562: a millisecond timestamp then
// random bits), so that new rows land at the end of the primary key's
// B-tree index instead of at random pages. Record ids must exist before a
// record is sealed, since every value is bound to its id. The timestamp
// tells when the record was created, which is not PHI.
func newID() string {
	return uuid.Must(uuid.NewV7()).String()
}
