package gormphi_test

import (
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	_ "modernc.org/sqlite" // database/sql driver "sqlite", pure Go

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/fields/gormphi"
	"github.com/phicrypt/phicrypt/internal/testsvc"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
	"github.com/phicrypt/phicrypt/kms/local"
)

func TestMain(m *testing.M) { os.Exit(testsvc.RunMain(m)) }

// Patient is a Synthea patient as an EHR backend stores it with GORM.
// GORM's default column names (snake_case) are the columns the values are
// bound to; the blind indexes are indexed together with the tenant.
type Patient struct {
	ID        string                      `gorm:"primaryKey" phi:"id,table=patients"`
	TenantID  string                      `gorm:"not null;index:idx_patients_ssn,priority:1;index:idx_patients_mrn,priority:1;index:idx_patients_name_dob,priority:1" phi:"scope"`
	MRN       fields.String               `phi:"encrypt"`
	SSN       fields.String               `phi:"encrypt"`
	First     fields.String               `phi:"encrypt"`
	Last      fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
	Address   fields.String               `phi:"encrypt"`
	Gender    string
	SSNIndex  fields.BlindIndex `gorm:"index:idx_patients_ssn,priority:2" phi:"index,of=SSN,normalize=digits,bits=8"`
	MRNIndex  fields.BlindIndex `gorm:"index:idx_patients_mrn,priority:2" phi:"index,of=MRN,normalize=alnum+fold,bits=8"`
	NameDOB   fields.BlindIndex `gorm:"index:idx_patients_name_dob,priority:2" phi:"index,of=Last+BirthDate,normalize=trim+fold+nfc,bits=8"`
	Visits    []Visit           `phi:"-"` // has many: its own table, keys and binding
}

// Visit is an encounter of a patient, preloaded with it.
type Visit struct {
	ID        string        `gorm:"primaryKey" phi:"id,table=visits"`
	TenantID  string        `phi:"scope"`
	PatientID string        `gorm:"index"`
	Reason    fields.String `phi:"encrypt"`
}

// plain is what a record reads as in clear, for comparisons.
type plain struct {
	ID, TenantID, MRN, SSN, First, Last, Address, Gender string
	BirthDate                                            time.Time
}

func (p *Patient) plain() plain {
	return plain{ID: p.ID, TenantID: p.TenantID, MRN: p.MRN.Get(), SSN: p.SSN.Get(), First: p.First.Get(),
		Last: p.Last.Get(), Address: p.Address.Get(), Gender: p.Gender, BirthDate: p.BirthDate.Get()}
}

// mrn derives a medical record number from a Synthea id, since the CSV
// has none: "MRN-" and the first 10 hex digits of the id, upper case.
func mrn(id string) string {
	return "MRN-" + strings.ToUpper(strings.ReplaceAll(id, "-", "")[:10])
}

// loadPatients reads the 1,174 Synthea patients, unsealed, spread over
// two tenants.
func loadPatients(t testing.TB) []plain {
	t.Helper()
	f, err := os.Open("../../testdata/synthea/patients.csv")
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	var out []plain
	seen := map[string]bool{}
	for i, r := range rows[1:] {
		get := func(name string) string { return r[col[name]] }
		born, err := time.Parse("2006-01-02", get("BIRTHDATE"))
		require.NoError(t, err)
		p := plain{ID: get("Id"), TenantID: "tenant:" + strconv.Itoa(i%2), MRN: mrn(get("Id")), SSN: get("SSN"),
			First: get("FIRST"), Last: get("LAST"), Address: get("ADDRESS") + ", " + get("CITY"), Gender: get("GENDER"), BirthDate: born}
		require.False(t, seen[p.MRN], "derived MRNs are unique")
		seen[p.MRN] = true
		out = append(out, p)
	}
	require.Len(t, out, 1174)
	return out
}

func (p plain) record() *Patient {
	return &Patient{ID: p.ID, TenantID: p.TenantID, MRN: fields.New(p.MRN), SSN: fields.New(p.SSN), First: fields.New(p.First),
		Last: fields.New(p.Last), BirthDate: fields.New(p.BirthDate), Address: fields.New(p.Address), Gender: p.Gender}
}

// secrets returns the PHI values that must never appear in a table.
func (p plain) secrets() []string {
	return []string{p.MRN, p.SSN, strings.ReplaceAll(p.SSN, "-", ""), p.First, p.Last, p.Address, p.BirthDate.Format("2006-01-02")}
}

// env is a database with the plugin registered, and its KEK.
type env struct {
	db    *gorm.DB
	codec *fields.Codec
	kek   *kmstest.Instrumented
}

// newCodec returns a codec over a fresh keyring and an instrumented local
// KEK.
func newCodec(t testing.TB, cfg fields.Config) (*fields.Codec, *kmstest.Instrumented) {
	t.Helper()
	data, err := local.Generate(local.Options{KeyID: "local:gormphi-test"})
	require.NoError(t, err)
	k, err := local.New(local.Config{Data: data})
	require.NoError(t, err)
	kek := kmstest.Instrument(k)
	kr, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore()})
	require.NoError(t, err)
	cfg.Keyring = kr
	c, err := fields.NewCodec(cfg)
	require.NoError(t, err)
	return c, kek
}

var _ kms.KEK = (*kmstest.Instrumented)(nil)

// dialects opens a fresh database of each kind.
var dialects = map[string]func(t testing.TB) gorm.Dialector{
	"sqlite": func(t testing.TB) gorm.Dialector {
		path := filepath.Join(t.TempDir(), "gormphi.db")
		return sqlite.Dialector{DriverName: "sqlite", DSN: gormphi.SQLiteDSN(path)}
	},
	"postgres": func(t testing.TB) gorm.Dialector {
		return postgres.Open(testsvc.SharedPostgres(t).CreateDatabase(t, dbName()))
	},
}

var dbSeq atomic.Int64

func dbName() string { return fmt.Sprintf("gormphi_%d", dbSeq.Add(1)) }

// openDB opens a database of the dialect, registers the plugin with
// codec, and creates the tables of models.
func openDB(t testing.TB, dialect string, codec *fields.Codec, models ...any) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(dialects[dialect](t), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	t.Cleanup(func() { sqlDB.Close() })
	if codec != nil {
		plugin, err := gormphi.New(gormphi.Config{Codec: codec, Models: models})
		require.NoError(t, err)
		require.NoError(t, db.Use(plugin))
	}
	require.NoError(t, db.AutoMigrate(models...))
	return db
}

func newEnv(t testing.TB, dialect string) *env {
	t.Helper()
	codec, kek := newCodec(t, fields.Config{})
	return &env{db: openDB(t, dialect, codec, &Patient{}, &Visit{}), codec: codec, kek: kek}
}

// forEachDialect runs fn as a subtest on SQLite and on PostgreSQL.
func forEachDialect(t *testing.T, fn func(t *testing.T, dialect string)) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) { fn(t, d) })
	}
}

// rawRows returns every column of every row of table as bytes, read
// without the plugin.
func rawRows(t testing.TB, db *gorm.DB, table string) [][]byte {
	t.Helper()
	rows, err := db.Session(&gorm.Session{NewDB: true}).Raw("SELECT * FROM " + table).Rows()
	require.NoError(t, err)
	defer rows.Close()
	cols, err := rows.Columns()
	require.NoError(t, err)
	var out [][]byte
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		for _, v := range vals {
			switch v := v.(type) {
			case nil:
			case []byte:
				out = append(out, v)
			case string:
				out = append(out, []byte(v))
			default:
				out = append(out, fmt.Appendf(nil, "%v", v))
			}
		}
	}
	require.NoError(t, rows.Err())
	return out
}

// minSecret is the length under which a secret is not looked for: a
// table of 1,174 rows holds about 1.3 million characters of base64url
// ciphertext, where a given 4-character string occurs by chance with
// probability 8% (1.3e6 / 64^4), a 6-character one with 0.002%. Synthea
// names are at least 4 characters; SSNs, MRNs, dates and addresses 10 and
// more.
const minSecret = 6

// leaks returns the secrets found in values: a sliding window over each
// value, looked up in a set of the secrets, for each secret length.
func leaks(values [][]byte, secrets []string) []string {
	set := map[string]bool{}
	lengths := map[int]bool{}
	for _, s := range secrets {
		if len(s) >= minSecret {
			set[s], lengths[len(s)] = true, true
		}
	}
	found := map[string]bool{}
	for _, v := range values {
		for n := range lengths {
			for i := 0; i+n <= len(v); i++ {
				if set[string(v[i:i+n])] {
					found[string(v[i:i+n])] = true
				}
			}
		}
	}
	var out []string
	for s := range found {
		out = append(out, s)
	}
	return out
}
