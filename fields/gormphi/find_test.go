package gormphi_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/cases"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/fields/gormphi"
	"github.com/phicrypt/phicrypt/internal/testsvc"
)

// SearchPatient is a patient searchable by last-name prefix, sounds-like
// name and birth-date range. The few bits make false positives that the
// post-filter must remove.
type SearchPatient struct {
	ID        string                      `gorm:"primaryKey" phi:"id,table=search_patients"`
	TenantID  string                      `gorm:"not null;index" phi:"scope"`
	SSN       fields.String               `phi:"encrypt"`
	Last      fields.String               `phi:"encrypt"`
	BirthDate fields.Encrypted[time.Time] `gorm:"type:text" phi:"encrypt"`
	SSNIndex  fields.BlindIndex           `phi:"index,of=SSN,normalize=digits,bits=8"`
	LastP2    fields.BlindIndex           `phi:"index,of=Last,normalize=nfc+fold+prefix:2,bits=6"`
	LastP3    fields.BlindIndex           `phi:"index,of=Last,normalize=nfc+fold+prefix:3,bits=7"`
	LastP4    fields.BlindIndex           `phi:"index,of=Last,normalize=nfc+fold+prefix:4,bits=8"`
	LastP5    fields.BlindIndex           `phi:"index,of=Last,normalize=nfc+fold+prefix:5,bits=8"`
	LastSound fields.BlindIndex           `phi:"index,of=Last,normalize=alnum+nysiis,bits=8"`
	BornY     fields.BlindIndex           `phi:"index,of=BirthDate,normalize=year,bits=5"`
	BornYM    fields.BlindIndex           `phi:"index,of=BirthDate,normalize=yearmonth,bits=7"`
	BornD     fields.BlindIndex           `phi:"index,of=BirthDate,normalize=date,bits=9"`
}

// TestFind finds Synthea patients by example: by SSN, by MRN, by last
// name and birth date, each exactly, on SQLite and PostgreSQL.
func TestFind(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		all := loadPatients(t)
		records := make([]*Patient, len(all))
		for i, p := range all {
			records[i] = p.record()
		}
		require.NoError(t, e.db.CreateInBatches(records, 200).Error)
		fold := cases.Fold()
		digits := func(s string) string { return strings.ReplaceAll(s, "-", "") }
		step := 15 // every patient with PHICRYPT_FULL_TESTS=1
		if testsvc.Full() {
			step = 1
		}
		for i := 0; i < len(all); i += step {
			want := all[i]
			found, err := gormphi.Find(e.db, &Patient{TenantID: want.TenantID, SSN: fields.New(digits(want.SSN))})
			require.NoError(t, err)
			assert.Equal(t, []string{want.ID}, ids(found), "by SSN")
			require.Len(t, found, 1)
			assert.Equal(t, want.First, found[0].First.Get(), "opened")
			found, err = gormphi.Find(e.db, &Patient{TenantID: want.TenantID, MRN: fields.New(strings.ToLower(want.MRN))})
			require.NoError(t, err)
			assert.Equal(t, []string{want.ID}, ids(found), "by MRN")
			found, err = gormphi.Find(e.db, &Patient{TenantID: want.TenantID, Last: fields.New(strings.ToUpper(want.Last)), BirthDate: fields.New(want.BirthDate)})
			require.NoError(t, err)
			var same []string
			for _, p := range all {
				if p.TenantID == want.TenantID && fold.String(p.Last) == fold.String(want.Last) && p.BirthDate.Equal(want.BirthDate) {
					same = append(same, p.ID)
				}
			}
			assert.ElementsMatch(t, same, ids(found), "by last name and birth date")
			// Two indexes together: SSN and name with birth date.
			found, err = gormphi.Find(e.db, &Patient{TenantID: want.TenantID, SSN: fields.New(want.SSN), Last: fields.New(want.Last), BirthDate: fields.New(want.BirthDate)})
			require.NoError(t, err)
			assert.Equal(t, []string{want.ID}, ids(found))
			// Another tenant finds no one.
			found, err = gormphi.Find(e.db, &Patient{TenantID: "tenant:other", SSN: fields.New(want.SSN)})
			require.NoError(t, err)
			assert.Empty(t, found)
		}
		// The candidates hold false positives that Find removed: an 8-bit
		// index over 587 patients of a tenant matches about 2.3 of them,
		// so among the first patients one has more than itself.
		falsePositives := false
		for _, p := range all[:min(len(all), 40)] {
			var candidates []Patient
			require.NoError(t, e.db.Scopes(gormphi.WhereIndex(&Patient{TenantID: p.TenantID, SSN: fields.New(p.SSN)}, "SSNIndex")).Find(&candidates).Error)
			if len(candidates) > 1 {
				found, err := gormphi.Find(e.db, &Patient{TenantID: p.TenantID, SSN: fields.New(p.SSN)})
				require.NoError(t, err)
				assert.Equal(t, []string{p.ID}, ids(found), "Find removed the %d false positives", len(candidates)-1)
				falsePositives = true
				break
			}
		}
		assert.True(t, falsePositives, "an 8-bit index has false positives")
		// Conditions of db apply too.
		found, err := gormphi.Find(e.db.Where("gender = ?", "nobody"), &Patient{TenantID: all[0].TenantID, SSN: fields.New(all[0].SSN)})
		require.NoError(t, err)
		assert.Empty(t, found)

		_, err = gormphi.Find(e.db, &Patient{TenantID: all[0].TenantID, Last: fields.New(all[0].Last)})
		assert.ErrorIs(t, err, fields.ErrNoIndex, "no index over Last alone")
		_, err = gormphi.Find(e.db, &Patient{TenantID: all[0].TenantID, First: fields.New(all[0].First), SSN: fields.New(all[0].SSN)})
		assert.ErrorIs(t, err, fields.ErrNoIndex, "First has no index")
		_, err = gormphi.Find(e.db, &Patient{SSN: fields.New(all[0].SSN)})
		assert.ErrorIs(t, err, fields.ErrMissingRecordID)
		_, err = gormphi.Find(e.db.Session(&gorm.Session{NewDB: true}), &Visit{TenantID: "t", Reason: fields.New("x")})
		assert.ErrorIs(t, err, fields.ErrNoIndex)
	})
}

// searchEnv is the Synthea patients stored as SearchPatients, over two
// tenants.
type searchEnv struct {
	db     *gorm.DB
	codec  *fields.Codec
	plain  []plain
	tenant map[string]string
	dsn    string // PostgreSQL only
}

func newSearchEnv(t *testing.T, dialect string) *searchEnv {
	t.Helper()
	codec, _ := newCodec(t, fields.Config{InsecureSkipIndexPlanner: true}) // more indexes than a real table may have: see fields' planner
	se := &searchEnv{codec: codec, plain: loadPatients(t), tenant: map[string]string{}}
	d := dialects["sqlite"](t)
	if dialect == "postgres" {
		se.dsn = testsvc.SharedPostgres(t).CreateDatabase(t, dbName())
		d = postgres.Open(se.dsn)
	}
	db, err := gorm.Open(d, &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	t.Cleanup(func() { sqlDB.Close() })
	plugin, err := gormphi.New(gormphi.Config{Codec: codec, Models: []any{&SearchPatient{}}})
	require.NoError(t, err)
	require.NoError(t, db.Use(plugin))
	require.NoError(t, db.AutoMigrate(&SearchPatient{}))
	se.db = db
	var recs []*SearchPatient
	for _, p := range se.plain {
		recs = append(recs, &SearchPatient{ID: p.ID, TenantID: p.TenantID, SSN: fields.New(p.SSN), Last: fields.New(p.Last), BirthDate: fields.New(p.BirthDate)})
		se.tenant[p.ID] = p.TenantID
	}
	require.NoError(t, se.db.CreateInBatches(recs, 200).Error)
	return se
}

// TestQueryRangesAndPrefixes searches the Synthea patients by birth-date
// range, by last-name prefix, and by both, through gormphi.Query on SQLite
// and PostgreSQL: recall 100%, and nothing else after the post-filter.
func TestQueryRangesAndPrefixes(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		se := newSearchEnv(t, dialect)
		fold := cases.Fold()
		rng := rand.New(rand.NewPCG(16, 5))
		stats := map[string]*[3]int{"range": {}, "prefix": {}, "prefix+range": {}}
		step := 17 // every second patient with PHICRYPT_FULL_TESTS=1
		if testsvc.Full() {
			step = 2
		}
		for i := 0; i < len(se.plain); i += step {
			p := se.plain[i]
			born := p.BirthDate
			r := fields.DateRange{From: born.AddDate(-rng.IntN(8), -rng.IntN(12), -rng.IntN(28)), To: born.AddDate(rng.IntN(8), rng.IntN(12), rng.IntN(28))}
			prefix := strings.ToLower(string([]rune(p.Last)[:2+i%4]))
			for kind, q := range map[string]*fields.Query{
				"range":        fields.NewQuery(&SearchPatient{TenantID: p.TenantID}).DateRange("BirthDate", r),
				"prefix":       fields.NewQuery(&SearchPatient{TenantID: p.TenantID, Last: fields.New(prefix)}).Prefix("Last"),
				"prefix+range": fields.NewQuery(&SearchPatient{TenantID: p.TenantID, Last: fields.New(prefix)}).Prefix("Last").DateRange("BirthDate", r),
			} {
				found, err := gormphi.Query[SearchPatient](se.db, q)
				require.NoError(t, err)
				var want []string
				for _, o := range se.plain {
					if o.TenantID != p.TenantID {
						continue
					}
					inRange := r.Contains(o.BirthDate)
					hasPrefix := strings.HasPrefix(fold.String(o.Last), fold.String(prefix))
					if kind == "range" && inRange || kind == "prefix" && hasPrefix || kind == "prefix+range" && inRange && hasPrefix {
						want = append(want, o.ID)
					}
				}
				var got []string
				for _, f := range found {
					got = append(got, f.ID)
				}
				assert.Contains(t, got, p.ID, kind)
				assert.ElementsMatch(t, want, got, "%s %s %s", kind, prefix, r)
				// Prepare's Search and scope, over candidates read in batches.
				s, scope, err := gormphi.Prepare(se.db, q)
				require.NoError(t, err)
				var batch []SearchPatient
				var batched []string
				require.NoError(t, se.db.Scopes(scope).FindInBatches(&batch, 7, func(*gorm.DB, int) error {
					for i := range batch {
						ok, err := s.Match(&batch[i])
						if err != nil {
							return err
						}
						if ok {
							batched = append(batched, batch[i].ID)
						}
					}
					return nil
				}).Error)
				assert.ElementsMatch(t, want, batched, "Prepare, in batches: %s %s %s", kind, prefix, r)
				var candidates int64
				require.NoError(t, se.db.Model(&SearchPatient{}).Scopes(gormphi.Where(q)).Count(&candidates).Error)
				st := stats[kind]
				st[0]++
				st[1] += len(got)
				st[2] += int(candidates)
			}
		}
		for kind, st := range stats {
			t.Logf("%s: %d queries, recall and precision 100%%, %d found, %d candidates decrypted", kind, st[0], st[1], st[2])
			assert.Greater(t, st[2], st[1], "%s: the post-filter removed candidates", kind)
		}
	})
}

// TestWhereSQL checks the SQL that Where writes: a range's columns in
// parentheses, each identifier quoted by GORM.
func TestWhereSQL(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		codec, _ := newCodec(t, fields.Config{InsecureSkipIndexPlanner: true}) // more indexes than a real table may have: see fields' planner
		db := openDB(t, dialect, codec, &SearchPatient{})
		r, _ := fields.ParseDateRange("1980-03..1985-06")
		q := fields.NewQuery(&SearchPatient{TenantID: "t", Last: fields.New("smi")}).Prefix("Last").DateRange("BirthDate", r)
		stmt := db.Session(&gorm.Session{DryRun: true}).Where("gender = ?", "x").Scopes(gormphi.Where(q)).Find(&[]SearchPatient{}).Statement
		require.NoError(t, stmt.Error)
		sql := stmt.SQL.String()
		want := "WHERE gender = ? AND `search_patients`.`tenant_id` = ? AND `search_patients`.`last_p3` = ? AND (`search_patients`.`born_y` IN (?,?,?,?) OR `search_patients`.`born_ym` IN (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?))"
		if dialect == "postgres" {
			want = `WHERE gender = $1 AND "search_patients"."tenant_id" = $2 AND "search_patients"."last_p3" = $3 AND ("search_patients"."born_y" IN ($4,$5,$6,$7) OR "search_patients"."born_ym" IN ($8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23))`
		}
		assert.Contains(t, sql, want)
		assert.Len(t, stmt.Vars, 23)

		_, err := gormphi.Query[SearchPatient](db, fields.NewQuery(&Patient{TenantID: "t"}))
		assert.Error(t, err, "a template of another type")
		err = db.Scopes(gormphi.Where(fields.NewQuery(&SearchPatient{TenantID: "t"}).DateRange("BirthDate", fields.DateRange{From: time.Now(), To: time.Now().AddDate(-1, 0, 0)}))).Find(&[]SearchPatient{}).Error
		assert.ErrorIs(t, err, fields.ErrInvalidDateRange)
		wide, _ := fields.ParseDateRange("1900..2000")
		_, err = gormphi.Query[SearchPatient](db, fields.NewQuery(&SearchPatient{TenantID: "t"}).DateRange("BirthDate", wide).MaxTerms(10))
		assert.ErrorIs(t, err, fields.ErrTooManyTerms)
	})
}

// TestSearchWithoutGORM runs Search.Where through database/sql (? on
// SQLite, $n on PostgreSQL) and through pgx: recall 100% after Match.
func TestSearchWithoutGORM(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		se := newSearchEnv(t, dialect)
		sqlDB, err := se.db.DB()
		require.NoError(t, err)
		style := fields.SQLite
		if dialect == "postgres" {
			style = fields.Postgres
		}
		var conn *pgx.Conn
		if dialect == "postgres" {
			conn, err = pgx.Connect(context.Background(), se.dsn)
			require.NoError(t, err)
			t.Cleanup(func() { conn.Close(context.Background()) })
		}
		const cols = "id, tenant_id, ssn, last, birth_date"
		scan := func(sc interface{ Scan(...any) error }) *SearchPatient {
			p := &SearchPatient{}
			require.NoError(t, sc.Scan(&p.ID, &p.TenantID, &p.SSN, &p.Last, &p.BirthDate))
			return p
		}
		fold := cases.Fold()
		ctx := context.Background()
		for i := 0; i < len(se.plain); i += 37 {
			p := se.plain[i]
			r := fields.DateRange{From: p.BirthDate.AddDate(-3, 0, 0), To: p.BirthDate.AddDate(2, 5, 0)}
			prefix := string([]rune(p.Last)[:3])
			s, err := se.codec.Search(ctx, fields.NewQuery(&SearchPatient{TenantID: p.TenantID, Last: fields.New(prefix)}).Prefix("Last").DateRange("BirthDate", r))
			require.NoError(t, err)
			where, args, err := s.Where(style)
			require.NoError(t, err)
			query := "SELECT " + cols + " FROM search_patients WHERE " + where
			var want []string
			for _, o := range se.plain {
				if o.TenantID == p.TenantID && r.Contains(o.BirthDate) && strings.HasPrefix(fold.String(o.Last), fold.String(prefix)) {
					want = append(want, o.ID)
				}
			}
			check := func(via string, recs []*SearchPatient) {
				require.NoError(t, se.codec.Open(ctx, recs))
				var got []string
				for _, rec := range recs {
					ok, err := s.Match(rec)
					require.NoError(t, err)
					if ok {
						got = append(got, rec.ID)
					}
				}
				assert.ElementsMatch(t, want, got, via)
			}
			rows, err := sqlDB.QueryContext(ctx, query, args...)
			require.NoError(t, err)
			var recs []*SearchPatient
			for rows.Next() {
				recs = append(recs, scan(rows))
			}
			require.NoError(t, rows.Err())
			rows.Close()
			check("database/sql", recs)
			if conn != nil {
				prows, err := conn.Query(ctx, query, args...)
				require.NoError(t, err)
				recs = nil
				for prows.Next() {
					recs = append(recs, scan(prows))
				}
				require.NoError(t, prows.Err())
				check("pgx", recs)
			}
		}
	})
}

// hostileRow has a blind index column whose name would inject SQL.
type hostileRow struct {
	ID       string            `gorm:"primaryKey" phi:"id,table=hostile_rows"`
	TenantID string            `phi:"scope"`
	Name     fields.String     `phi:"encrypt"`
	NameIdx  fields.BlindIndex `gorm:"column:x) OR (1=1" phi:"index,of=Name,column=x) OR (1=1,bits=8"`
}

// TestFindRefusesUnsafeColumns: a column name from the tags that is not a
// plain identifier never reaches the SQL, whatever GORM would do with it.
func TestFindRefusesUnsafeColumns(t *testing.T) {
	codec, _ := newCodec(t, fields.Config{InsecureSkipIndexPlanner: true}) // more indexes than a real table may have: see fields' planner
	db := openDB(t, "sqlite", codec)
	_, err := gormphi.Find(db, &hostileRow{TenantID: "t", Name: fields.New("Ann")})
	assert.ErrorIs(t, err, fields.ErrUnsafeIdentifier)
	err = db.Scopes(gormphi.Where(fields.NewQuery(&hostileRow{TenantID: "t", Name: fields.New("Ann")}).Equal("NameIdx"))).Find(&[]hostileRow{}).Error
	assert.ErrorIs(t, err, fields.ErrUnsafeIdentifier)
}

// OrgChart takes its scope from a PHIScope method: no column holds it,
// so the WHERE clause cannot narrow a search to the organisation. Its
// 1-bit index makes half of the other organisations' rows candidates.
type OrgChart struct {
	ID       string            `gorm:"primaryKey" phi:"id,table=org_charts"`
	Org      string            `gorm:"index"`
	SSN      fields.String     `phi:"encrypt"`
	SSNIndex fields.BlindIndex `phi:"index,of=SSN,normalize=digits,bits=1"`
}

// PHIScope is the organisation's scope.
func (c OrgChart) PHIScope() string { return "org:" + c.Org }

// TestSearchStaysInMethodScope searches one organisation's records of a
// patient known to 40 organisations: Search, Find and Query return only
// its record, and WhereIndex and Where leave the other organisations'
// candidates sealed.
func TestSearchStaysInMethodScope(t *testing.T) {
	codec, _ := newCodec(t, fields.Config{})
	db := openDB(t, "sqlite", codec, &OrgChart{})
	const ssn = "999-12-3456"
	for i := range 40 {
		org := string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		require.NoError(t, db.Create(&OrgChart{ID: "c-" + org, Org: org, SSN: fields.New(ssn)}).Error)
	}
	template := &OrgChart{Org: "a", SSN: fields.New(ssn)}

	found, err := gormphi.Search(db, template, "SSNIndex")
	require.NoError(t, err)
	require.Len(t, found, 1)
	assert.Equal(t, "a", found[0].Org)
	found, err = gormphi.Find(db, template)
	require.NoError(t, err)
	require.Len(t, found, 1)
	assert.Equal(t, "a", found[0].Org)

	for name, scope := range map[string]func(*gorm.DB) *gorm.DB{
		"WhereIndex": gormphi.WhereIndex(template, "SSNIndex"),
		"Where":      gormphi.Where(fields.NewQuery(template).EqualSet()),
	} {
		var candidates []OrgChart
		require.NoError(t, db.Scopes(scope).Find(&candidates).Error, name)
		require.Greater(t, len(candidates), 1, "%s: other organisations' rows are candidates", name)
		for i, c := range candidates {
			assert.Equal(t, c.Org == "a", c.SSN.Opened(), "%s: %s opened only in the template's scope", name, c.Org)
			ok, err := codec.Match(&candidates[i], template, "SSNIndex")
			require.NoError(t, err, name)
			assert.Equal(t, c.Org == "a", ok, "%s: %s", name, c.Org)
		}
	}
}
