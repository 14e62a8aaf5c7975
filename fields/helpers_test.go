package fields_test

import (
	"database/sql"
	"database/sql/driver"
	"encoding/csv"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

func newKeyring(t testing.TB) *keys.Keyring {
	t.Helper()
	data, err := local.Generate(local.Options{KeyID: "local:fields-test"})
	require.NoError(t, err)
	kek, err := local.New(local.Config{Data: data})
	require.NoError(t, err)
	kr, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore()})
	require.NoError(t, err)
	return kr
}

func newCodec(t testing.TB, cfg fields.Config) *fields.Codec {
	t.Helper()
	if cfg.Keyring == nil {
		cfg.Keyring = newKeyring(t)
	}
	c, err := fields.NewCodec(cfg)
	require.NoError(t, err)
	return c
}

// Patient is a Synthea CSV row with its PHI encrypted.
type Patient struct {
	ID          string                        `phi:"id,table=patients"`
	TenantID    string                        `phi:"scope"`
	SSN         fields.String                 `phi:"encrypt"`
	Drivers     fields.String                 `phi:"encrypt"`
	Passport    fields.String                 `phi:"encrypt"`
	Prefix      fields.String                 `phi:"encrypt"`
	First       fields.String                 `phi:"encrypt"`
	Last        fields.String                 `phi:"encrypt"`
	Maiden      fields.Encrypted[*string]     `phi:"encrypt"`
	BirthDate   fields.Encrypted[time.Time]   `phi:"encrypt"`
	DeathDate   fields.Encrypted[*time.Time]  `phi:"encrypt"`
	Address     fields.Encrypted[Address]     `phi:"encrypt"`
	Location    fields.Encrypted[[2]float64]  `phi:"encrypt"`
	Gender      string                        // not PHI on its own
	Expenses    float64                       // not PHI
	SSNIndex    fields.BlindIndex             `phi:"index,of=SSN,normalize=digits,bits=16"`
	NameDOB     fields.BlindIndex             `phi:"index,of=Last+BirthDate,normalize=trim+fold+nfc,bits=16"`
	Tags        fields.Encrypted[[]string]    `phi:"encrypt,column=tags"`
	Visits      fields.Encrypted[int]         `phi:"encrypt"`
	Deceased    fields.Encrypted[bool]        `phi:"encrypt"`
	ExternalRef fields.Encrypted[externalRef] `phi:"encrypt"`
	Photo       fields.Bytes                  `phi:"encrypt"`
	Coverage    fields.Encrypted[float64]     `phi:"encrypt"`
}

// Address is a nested struct, encrypted as one JSON value.
type Address struct {
	Line, City, State, County, ZIP, Birthplace string
}

// externalRef implements encoding.TextMarshaler.
type externalRef struct{ System, Value string }

func (r externalRef) MarshalText() ([]byte, error) { return []byte(r.System + "|" + r.Value), nil }
func (r *externalRef) UnmarshalText(b []byte) error {
	for i, c := range b {
		if c == '|' {
			r.System, r.Value = string(b[:i]), string(b[i+1:])
			return nil
		}
	}
	r.Value = string(b)
	return nil
}

// loadCSV reads the Synthea CSV rows as Patients, unsealed.
func loadCSV(t testing.TB) []*Patient {
	t.Helper()
	f, err := os.Open("../testdata/synthea/patients.csv")
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	var out []*Patient
	for i, r := range rows[1:] {
		get := func(name string) string { return r[col[name]] }
		bd, err := time.Parse("2006-01-02", get("BIRTHDATE"))
		require.NoError(t, err)
		p := &Patient{
			ID:        get("Id"),
			TenantID:  "tenant:" + strconv.Itoa(i%3),
			SSN:       fields.New(get("SSN")),
			Drivers:   fields.New(get("DRIVERS")),
			Passport:  fields.New(get("PASSPORT")),
			Prefix:    fields.New(get("PREFIX")),
			First:     fields.New(get("FIRST")),
			Last:      fields.New(get("LAST")),
			BirthDate: fields.New(bd),
			Address: fields.New(Address{Line: get("ADDRESS"), City: get("CITY"), State: get("STATE"),
				County: get("COUNTY"), ZIP: get("ZIP"), Birthplace: get("BIRTHPLACE")}),
			Gender:      get("GENDER"),
			Tags:        fields.New([]string{get("RACE"), get("ETHNICITY")}),
			Visits:      fields.New(i),
			ExternalRef: fields.New(externalRef{System: "synthea", Value: get("Id")}),
			Photo:       fields.New([]byte{byte(i), byte(i >> 8), 0xFF}),
		}
		p.Expenses, _ = strconv.ParseFloat(get("HEALTHCARE_EXPENSES"), 64)
		cov, _ := strconv.ParseFloat(get("HEALTHCARE_COVERAGE"), 64)
		p.Coverage = fields.New(cov)
		lat, _ := strconv.ParseFloat(get("LAT"), 64)
		lon, _ := strconv.ParseFloat(get("LON"), 64)
		p.Location = fields.New([2]float64{lat, lon})
		if m := get("MAIDEN"); m != "" {
			p.Maiden = fields.New(&m)
		} else {
			p.Maiden = fields.New[*string](nil)
		}
		if d := get("DEATHDATE"); d != "" {
			dd, err := time.Parse("2006-01-02", d)
			require.NoError(t, err)
			p.DeathDate = fields.New(&dd)
			p.Deceased = fields.New(true)
		} else {
			p.Deceased = fields.New(false)
		}
		out = append(out, p)
	}
	require.Len(t, out, 1174)
	return out
}

// columns returns pointers to the stored columns of p, in order: each is a
// driver.Valuer and an sql.Scanner.
func (p *Patient) columns() []any {
	return []any{&p.SSN, &p.Drivers, &p.Passport, &p.Prefix, &p.First, &p.Last, &p.Maiden, &p.BirthDate,
		&p.DeathDate, &p.Address, &p.Location, &p.SSNIndex, &p.NameDOB, &p.Tags, &p.Visits, &p.Deceased,
		&p.ExternalRef, &p.Photo, &p.Coverage}
}

// row is what a database stores of a Patient: the driver values.
type row []driver.Value

// store returns the driver values of p's columns, as database/sql would
// pass them to a driver.
func store(t testing.TB, p *Patient) row {
	t.Helper()
	var out row
	for _, c := range p.columns() {
		v, err := c.(driver.Valuer).Value()
		require.NoError(t, err)
		out = append(out, v)
	}
	return out
}

// load scans r into a new Patient, as database/sql would.
func load(t testing.TB, id, tenant string, r row) *Patient {
	t.Helper()
	p := &Patient{ID: id, TenantID: tenant}
	for i, c := range p.columns() {
		require.NoError(t, c.(sql.Scanner).Scan(r[i]))
	}
	return p
}
