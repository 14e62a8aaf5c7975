package migrate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/migrate"
)

// TestSpecForMatchesTheTags: the spec built from the application's type
// is the hand-written one that the migration tests use, and it survives
// JSON.
func TestSpecForMatchesTheTags(t *testing.T) {
	got, err := migrate.SpecFor(&appPatient{}, migrate.WithLegacyColumn("visits_enc", "visits"))
	require.NoError(t, err)
	assert.Equal(t, spec, got)

	data, err := json.Marshal(got)
	require.NoError(t, err)
	back, err := migrate.ReadSpec(bytes.NewReader(data))
	require.NoError(t, err)
	assert.Equal(t, spec, back)

	// Without the legacy column, the encrypted column is migrated in
	// place; other options name the id and scope columns.
	got, err = migrate.SpecFor(appPatient{}, migrate.WithIDColumn("pid"), migrate.WithScope("tenant:a"))
	require.NoError(t, err)
	assert.Equal(t, migrate.Column{Name: "visits_enc", Type: "int"}, got.Columns[3])
	assert.Equal(t, "pid", got.ID)
	assert.Equal(t, "tenant:a", got.Scope)
	assert.Empty(t, got.ScopeColumn)

	type noteKinds struct {
		PatientID string                    `phi:"id,table=notes"`
		Tenant    string                    `phi:"scope"`
		Body      fields.Encrypted[[]byte]  `phi:"encrypt,column=body_enc,deterministic"`
		Score     fields.Encrypted[float32] `phi:"encrypt"`
		Flag      fields.Encrypted[bool]    `phi:"encrypt"`
		Code      fields.String             `phi:"encrypt"`
		CodeIndex fields.BlindIndex         `phi:"index,of=Code+Body,normalize=trim|trim,bits=12,text"`
	}
	got, err = migrate.SpecFor(&noteKinds{})
	require.NoError(t, err)
	assert.Equal(t, migrate.Spec{Table: "notes", ID: "patient_id", ScopeColumn: "tenant",
		Columns: []migrate.Column{
			{Name: "body_enc", Type: "bytes", Deterministic: true},
			{Name: "score", Type: "float"},
			{Name: "flag", Type: "bool"},
			{Name: "code", Type: "string"},
		},
		Indexes: []migrate.Index{{Column: "code_index", Of: []string{"code", "body_enc"}, Normalize: "trim|trim", Bits: 12, Text: true}},
	}, got)
}

type viaMethods struct {
	ID  string        `phi:"id"`
	SSN fields.String `phi:"encrypt"`
}

func (viaMethods) PHIScope() string { return "tenant:m" }

// TestSpecForRefuses: what a spec cannot describe fails with ErrSpec,
// before any row is touched.
func TestSpecForRefuses(t *testing.T) {
	_, err := migrate.SpecFor(&viaMethods{})
	assert.ErrorIs(t, err, migrate.ErrSpec, "no table")
	_, err = migrate.SpecFor(&viaMethods{}, migrate.WithTable("people"))
	assert.ErrorIs(t, err, migrate.ErrSpec, "a scope from a method, no option")
	got, err := migrate.SpecFor(&viaMethods{}, migrate.WithTable("people"), migrate.WithScope("tenant:m"))
	require.NoError(t, err)
	assert.Equal(t, migrate.Spec{Table: "people", ID: "id", Scope: "tenant:m", Columns: []migrate.Column{{Name: "ssn", Type: "string"}}}, got)
	_, err = migrate.SpecFor(&appPatient{}, migrate.WithTable("people"))
	assert.ErrorIs(t, err, migrate.ErrSpec, "another table than the tags'")

	_, err = migrate.SpecFor(struct{ X fields.String }{})
	assert.ErrorIs(t, err, migrate.ErrSpec)
	assert.ErrorIs(t, err, fields.ErrInvalidTag)
	_, err = migrate.SpecFor(42)
	assert.ErrorIs(t, err, migrate.ErrSpec)

	type addr struct {
		ID string                       `phi:"id,table=hosts"`
		S  string                       `phi:"scope"`
		IP fields.Encrypted[netip.Addr] `phi:"encrypt"`
	}
	_, err = migrate.SpecFor(&addr{})
	assert.ErrorIs(t, err, migrate.ErrSpec, "a BinaryMarshaler field")
	type ptr struct {
		ID string                    `phi:"id,table=hosts"`
		S  string                    `phi:"scope"`
		P  fields.Encrypted[*string] `phi:"encrypt"`
	}
	_, err = migrate.SpecFor(&ptr{})
	assert.ErrorIs(t, err, migrate.ErrSpec, "a pointer field")
	type scoped struct {
		ID       string            `phi:"id,table=charts"`
		Patient  string            `phi:"scope"`
		Tenant   string            `phi:"-"`
		SSN      fields.String     `phi:"encrypt"`
		SSNIndex fields.BlindIndex `phi:"index,of=SSN,bits=8,scope=Tenant"`
	}
	_, err = migrate.SpecFor(&scoped{})
	assert.ErrorIs(t, err, migrate.ErrSpec, "an index with its own scope")
	_, err = migrate.SpecFor(&appPatient{}, migrate.WithLegacyColumn("nope", "visits"))
	assert.ErrorIs(t, err, migrate.ErrSpec, "a legacy column for no encrypted column")
	type nested struct {
		ID   string `phi:"id,table=n"`
		S    string `phi:"scope"`
		Home struct {
			Phone fields.String `phi:"encrypt"`
		}
	}
	_, err = migrate.SpecFor(&nested{})
	assert.ErrorIs(t, err, migrate.ErrSpec, "home.phone is no SQL identifier")
}

// TestReadSpecRefuses: a spec file is checked as strictly as a Spec.
func TestReadSpecRefuses(t *testing.T) {
	good, err := json.Marshal(spec)
	require.NoError(t, err)
	_, err = migrate.ReadSpec(bytes.NewReader(good))
	require.NoError(t, err)
	for name, doc := range map[string]string{
		"syntax":         `{"Table": "patients",`,
		"unknown field":  strings.Replace(string(good), `"Table"`, `"Tabel":"x","Table"`, 1),
		"second value":   string(good) + ` {}`,
		"trailing brace": string(good) + `}`,
		"duplicate":      strings.Replace(string(good), `"Table"`, `"table":"other","Table"`, 1),
		"no columns":     `{"Table":"patients","ID":"id","Scope":"s"}`,
		"bad identifier": strings.Replace(string(good), `"patients"`, `"patients; DROP TABLE x"`, 1),
		"bits":           strings.Replace(string(good), `"Bits":8`, `"Bits":65`, 1),
		"normalizer":     strings.Replace(string(good), `"digits"`, `"digitz"`, 1),
		"chains":         strings.Replace(string(good), `"trim+fold"`, `"trim|fold|nfc"`, 1),
		"type":           strings.Replace(string(good), `"Type":"int"`, `"Type":"uint"`, 1),
		"array":          `[]`,
	} {
		if doc == string(good) {
			t.Fatalf("%s: the replacement did not apply", name)
		}
		_, err := migrate.ReadSpec(strings.NewReader(doc))
		assert.ErrorIs(t, err, migrate.ErrSpec, name)
	}
	_, err = migrate.ReadSpec(strings.NewReader(`{"Table":"` + strings.Repeat("a", 1<<20) + `"}`))
	assert.ErrorIs(t, err, migrate.ErrSpec, "over 1 MiB")
}

// TestCheckTable: a spec that does not match its table is a *TableError,
// before a job starts.
func TestCheckTable(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, k, 3)
			require.NoError(t, spec.CheckTable(ctx, e.db, e.dialect))

			var te *migrate.TableError
			s := spec
			s.Table = "patient"
			err := s.CheckTable(ctx, e.db, e.dialect)
			require.ErrorAs(t, err, &te)
			assert.ErrorIs(t, err, migrate.ErrTableMismatch)
			assert.True(t, te.Missing)

			s = spec
			s.ScopeColumn = "tenant"
			s.Columns = append([]migrate.Column{{Name: "phone", Type: "string"}}, s.Columns...)
			err = s.CheckTable(ctx, e.db, e.dialect)
			require.ErrorAs(t, err, &te)
			assert.ErrorIs(t, err, migrate.ErrTableMismatch)
			assert.Equal(t, []string{"tenant", "phone"}, te.Columns)
			assert.Empty(t, te.Types)

			// The legacy INTEGER column encrypted in place: it cannot
			// hold a ciphertext.
			s, err = migrate.SpecFor(&appPatient{})
			require.NoError(t, err)
			s.Columns[3] = migrate.Column{Name: "visits", Type: "int"}
			err = s.CheckTable(ctx, e.db, e.dialect)
			require.ErrorAs(t, err, &te)
			assert.False(t, te.Missing)
			assert.Empty(t, te.Columns)
			assert.Equal(t, []string{"visits"}, keysOf(te.Types))
			assert.Contains(t, err.Error(), "column visits is INT")
		})
	}
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
