package fields_test

import (
	"bufio"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"os"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
)

// fhirPatient is the part of a FHIR R4 Patient resource that the test maps.
type fhirPatient struct {
	ID   string `json:"id"`
	Name []struct {
		Use    string   `json:"use"`
		Family string   `json:"family"`
		Given  []string `json:"given"`
		Prefix []string `json:"prefix"`
	} `json:"name"`
	Identifier []struct {
		Type struct {
			Coding []struct {
				Code string `json:"code"`
			} `json:"coding"`
		} `json:"type"`
		Value string `json:"value"`
	} `json:"identifier"`
	Telecom []struct {
		Value string `json:"value"`
	} `json:"telecom"`
	Gender    string `json:"gender"`
	BirthDate string `json:"birthDate"`
	Deceased  string `json:"deceasedDateTime"`
	Address   []struct {
		Line       []string `json:"line"`
		City       string   `json:"city"`
		State      string   `json:"state"`
		PostalCode string   `json:"postalCode"`
		Country    string   `json:"country"`
	} `json:"address"`
}

// EHRPatient is how an EHR backend might hold a FHIR Patient.
type EHRPatient struct {
	ID        string                            `phi:"id,table=fhir_patients"`
	Tenant    string                            `phi:"scope"`
	Family    fields.String                     `phi:"encrypt"`
	Given     fields.Encrypted[[]string]        `phi:"encrypt"`
	Prefix    fields.Encrypted[[]string]        `phi:"encrypt"`
	SSN       fields.String                     `phi:"encrypt"`
	MRN       fields.String                     `phi:"encrypt"`
	License   fields.Encrypted[*string]         `phi:"encrypt"`
	Phone     fields.String                     `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time]       `phi:"encrypt"`
	Deceased  fields.Encrypted[*time.Time]      `phi:"encrypt"`
	Address   fields.Encrypted[[]fhirAddress]   `phi:"encrypt"`
	Contact   Contact                           // nested: its tagged fields are found
	Gender    string                            //
	SSNIndex  fields.BlindIndex                 `phi:"index,of=SSN,normalize=digits,bits=10"`
	MRNIndex  fields.BlindIndex                 `phi:"index,of=MRN,normalize=trim+lower,bits=10"`
	Extra     map[string]fields.Encrypted[bool] `phi:"-"`
}

type fhirAddress struct {
	Line                             []string
	City, State, PostalCode, Country string
}

// Contact is a nested struct with its own encrypted fields.
type Contact struct {
	Email fields.String `phi:"encrypt"`
}

func loadFHIR(t *testing.T) []*EHRPatient {
	f, err := os.Open("../testdata/fhir-synthea/bulk-1000/Patient.000.ndjson")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var out []*EHRPatient
	for sc.Scan() {
		var r fhirPatient
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		p := &EHRPatient{ID: r.ID, Tenant: "tenant:bulk", Gender: r.Gender}
		if len(r.Name) > 0 {
			p.Family = fields.New(r.Name[0].Family)
			p.Given = fields.New(r.Name[0].Given)
			p.Prefix = fields.New(r.Name[0].Prefix)
		}
		p.License = fields.New[*string](nil)
		for _, id := range r.Identifier {
			if len(id.Type.Coding) == 0 {
				continue
			}
			switch id.Type.Coding[0].Code {
			case "SS":
				p.SSN = fields.New(id.Value)
			case "MR":
				p.MRN = fields.New(id.Value)
			case "DL":
				v := id.Value
				p.License = fields.New(&v)
			}
		}
		if len(r.Telecom) > 0 {
			p.Phone = fields.New(r.Telecom[0].Value)
		}
		bd, err := time.Parse("2006-01-02", r.BirthDate)
		require.NoError(t, err)
		p.BirthDate = fields.New(bd)
		p.Deceased = fields.New[*time.Time](nil)
		if r.Deceased != "" {
			d, err := time.Parse(time.RFC3339, r.Deceased)
			require.NoError(t, err)
			p.Deceased = fields.New(&d)
		}
		var addrs []fhirAddress
		for _, a := range r.Address {
			addrs = append(addrs, fhirAddress{a.Line, a.City, a.State, a.PostalCode, a.Country})
		}
		p.Address = fields.New(addrs)
		p.Contact.Email = fields.New(r.ID[:8] + "@example.org")
		out = append(out, p)
	}
	require.NoError(t, sc.Err())
	require.Len(t, out, 1144)
	return out
}

func TestFHIRPatientsRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	patients := loadFHIR(t)
	require.NoError(t, c.Seal(ctx, patients))
	nonASCII := 0
	for _, p := range patients {
		// Through the driver values, as a database would store them.
		cols := p.columns()
		got := EHRPatient{ID: p.ID, Tenant: p.Tenant}
		for i, dst := range got.columns() {
			v, err := cols[i].(driver.Valuer).Value()
			require.NoError(t, err)
			if s, ok := v.(string); ok {
				for _, phi := range []string{p.SSN.Get(), p.Family.Get(), p.Phone.Get(), p.Contact.Email.Get()} {
					if phi != "" {
						assert.NotContains(t, s, phi)
					}
				}
			}
			require.NoError(t, dst.(sql.Scanner).Scan(v))
		}
		require.NoError(t, c.Open(ctx, &got))
		assert.Equal(t, p.Family.Get(), got.Family.Get())
		assert.Equal(t, p.Given.Get(), got.Given.Get())
		assert.Equal(t, p.Prefix.Get(), got.Prefix.Get())
		assert.Equal(t, p.SSN.Get(), got.SSN.Get())
		assert.Equal(t, p.MRN.Get(), got.MRN.Get())
		assert.Equal(t, p.License.Get(), got.License.Get())
		assert.Equal(t, p.Phone.Get(), got.Phone.Get())
		assert.True(t, p.BirthDate.Get().Equal(got.BirthDate.Get()))
		assert.Equal(t, p.Deceased.Get() == nil, got.Deceased.Get() == nil)
		assert.Equal(t, p.Address.Get(), got.Address.Get())
		assert.Equal(t, p.Contact.Email.Get(), got.Contact.Email.Get())
		assert.True(t, p.SSNIndex.Equal(got.SSNIndex))
		if !isASCII(p.Family.Get()) {
			nonASCII++
			assert.True(t, utf8.ValidString(got.Family.Get()))
		}
	}
	assert.Positive(t, nonASCII, "the data set has non-ASCII names, kept intact")
}

func (p *EHRPatient) columns() []any {
	return []any{&p.Family, &p.Given, &p.Prefix, &p.SSN, &p.MRN, &p.License, &p.Phone, &p.BirthDate,
		&p.Deceased, &p.Address, &p.Contact.Email, &p.SSNIndex, &p.MRNIndex}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func TestNestedColumns(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	p := loadFHIR(t)[0]
	require.NoError(t, c.Seal(ctx, p))
	v, err := p.Contact.Email.Value()
	require.NoError(t, err)
	// The nested field is bound to column "contact.email": as a top-level
	// "email" column it does not decrypt.
	type flat struct {
		ID     string        `phi:"id,table=fhir_patients"`
		Tenant string        `phi:"scope"`
		Email  fields.String `phi:"encrypt"`
	}
	f := flat{ID: p.ID, Tenant: p.Tenant}
	require.NoError(t, f.Email.Scan(v))
	assert.Error(t, c.Open(ctx, &f))
	type asNested struct {
		ID     string        `phi:"id,table=fhir_patients"`
		Tenant string        `phi:"scope"`
		Email  fields.String `phi:"encrypt,column=contact.email"`
	}
	n := asNested{ID: p.ID, Tenant: p.Tenant}
	require.NoError(t, n.Email.Scan(v))
	require.NoError(t, c.Open(ctx, &n))
	assert.Equal(t, p.Contact.Email.Get(), n.Email.Get())
}
