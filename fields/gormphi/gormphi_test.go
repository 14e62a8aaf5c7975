package gormphi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/cases"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/fields/gormphi"
	"github.com/phicrypt/phicrypt/kms"
)

// TestSynthea stores the 1,174 Synthea patients through GORM, reads them
// back, searches them by SSN, MRN and last name with birth date, and
// checks that the table holds none of their PHI.
func TestSynthea(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		all := loadPatients(t)
		records := make([]*Patient, len(all))
		for i, p := range all {
			records[i] = p.record()
		}
		require.NoError(t, e.db.CreateInBatches(records, 200).Error)
		for _, r := range records {
			require.True(t, r.SSN.Sealed() && r.SSNIndex.Version() > 0, "Create seals the records it inserts")
		}

		var got []Patient
		require.NoError(t, e.db.Order("id").Find(&got).Error)
		require.Len(t, got, len(all))
		byID := map[string]plain{}
		for _, p := range all {
			byID[p.ID] = p
		}
		for i := range got {
			want := byID[got[i].ID]
			have := got[i].plain()
			assert.True(t, want.BirthDate.Equal(have.BirthDate))
			have.BirthDate = want.BirthDate
			assert.Equal(t, want, have)
		}

		fold := cases.Fold()
		for i := 0; i < len(all); i += 7 {
			want := all[i]
			expect := func(keep func(p plain) bool) []string {
				var ids []string
				for _, p := range all {
					if p.TenantID == want.TenantID && keep(p) {
						ids = append(ids, p.ID)
					}
				}
				return ids
			}
			// By SSN, written without dashes.
			found, err := gormphi.Search(e.db, &Patient{TenantID: want.TenantID, SSN: fields.New(strings.ReplaceAll(want.SSN, "-", ""))}, "SSNIndex")
			require.NoError(t, err)
			assert.Equal(t, []string{want.ID}, ids(found))
			// By MRN, in lower case.
			found, err = gormphi.Search(e.db, &Patient{TenantID: want.TenantID, MRN: fields.New(strings.ToLower(want.MRN))}, "MRNIndex")
			require.NoError(t, err)
			assert.Equal(t, []string{want.ID}, ids(found))
			// By last name and date of birth: every patient who shares
			// both, in the tenant, and no one else.
			found, err = gormphi.Search(e.db, &Patient{TenantID: want.TenantID, Last: fields.New(" " + strings.ToUpper(want.Last)), BirthDate: fields.New(want.BirthDate)}, "NameDOB")
			require.NoError(t, err)
			assert.ElementsMatch(t, expect(func(p plain) bool {
				return fold.String(p.Last) == fold.String(want.Last) && p.BirthDate.Equal(want.BirthDate)
			}), ids(found))
		}

		// No PHI in any column of any row.
		var secrets []string
		for _, p := range all {
			secrets = append(secrets, p.secrets()...)
		}
		values := rawRows(t, e.db, "patients")
		require.Len(t, values, len(all)*12, "every column of every row is non-NULL")
		assert.Empty(t, leaks(values, secrets))
		assert.Equal(t, []string{all[3].SSN}, leaks([][]byte{[]byte("x" + all[3].SSN + "y")}, secrets), "the leak check finds a plaintext")
	})
}

func ids(ps []Patient) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

// seed stores n Synthea patients and returns them as stored.
func seed(t *testing.T, e *env, n int) []*Patient {
	t.Helper()
	var out []*Patient
	for _, p := range loadPatients(t)[:n] {
		out = append(out, p.record())
	}
	require.NoError(t, e.db.Create(&out).Error)
	return out
}

func TestSwappedCiphertextsFailToDecrypt(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		ps := seed(t, e, 4)
		a, b := ps[0], ps[2] // same tenant
		require.Equal(t, a.TenantID, b.TenantID)
		// Swap the two SSN ciphertexts, as someone with write access to
		// the table (and no keys) could.
		var sa, sb any
		require.NoError(t, e.db.Raw("SELECT ssn FROM patients WHERE id = ?", a.ID).Row().Scan(&sa))
		require.NoError(t, e.db.Raw("SELECT ssn FROM patients WHERE id = ?", b.ID).Row().Scan(&sb))
		require.NoError(t, e.db.Exec("UPDATE patients SET ssn = ? WHERE id = ?", sb, a.ID).Error)
		require.NoError(t, e.db.Exec("UPDATE patients SET ssn = ? WHERE id = ?", sa, b.ID).Error)
		for _, id := range []string{a.ID, b.ID} {
			var p Patient
			err := e.db.First(&p, "id = ?", id).Error
			assert.ErrorIs(t, err, envelope.ErrDecrypt)
			assert.Empty(t, p.SSN.Get(), "nothing decrypted")
			require.Error(t, err)
			assert.NotContains(t, err.Error(), a.SSN.Get())
		}
		var other Patient
		require.NoError(t, e.db.First(&other, "id = ?", ps[1].ID).Error, "other rows are unaffected")
		assert.Equal(t, ps[1].SSN.Get(), other.SSN.Get())
	})
}

// TestPlaintextNeverWritten tries every path that skips the plugin's
// sealing, or gives it something else than an encrypted value: none
// writes anything.
func TestPlaintextNeverWritten(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		p := seed(t, e, 1)[0]
		before := rawRows(t, e.db, "patients")
		const ssn = "999-00-1234"

		// UpdateColumn skips hooks: an unsealed value is refused...
		err := e.db.Model(p).UpdateColumn("ssn", fields.New(ssn)).Error
		assert.ErrorIs(t, err, fields.ErrNotSealed)
		err = e.db.Model(p).UpdateColumns(&Patient{SSN: fields.New(ssn)}).Error
		assert.ErrorIs(t, err, fields.ErrNotSealed)
		// ...and so is a plain string, with or without hooks.
		for _, tx := range []*gorm.DB{
			e.db.Model(p).UpdateColumn("ssn", ssn),
			e.db.Model(p).Update("ssn", ssn),
			e.db.Model(p).Updates(map[string]any{"SSN": ssn}),
			e.db.Model(p).Update("ssn", gorm.Expr("?", ssn)),
			e.db.Model(p).Update("ssn_index", []byte{1, 2}),
			e.db.Table("patients").Where("id = ?", p.ID).Update("ssn", ssn),
			e.db.Model(&Patient{}).Create(map[string]any{"id": "x", "tenant_id": "t", "ssn": ssn}),
		} {
			assert.ErrorIs(t, tx.Error, gormphi.ErrPlaintext)
		}
		// Hooks skipped by the session: the driver refuses the value.
		q := &Patient{ID: "00000000-0000-0000-0000-000000000001", TenantID: p.TenantID, SSN: fields.New(ssn)}
		err = e.db.Session(&gorm.Session{SkipHooks: true}).Create(q).Error
		assert.ErrorIs(t, err, fields.ErrNotSealed)
		err = e.db.Session(&gorm.Session{SkipHooks: true}).Model(p).Updates(map[string]any{"ssn": fields.New(ssn)}).Error
		assert.ErrorIs(t, err, fields.ErrNotSealed)
		// Raw SQL: the value refuses to become a driver value.
		err = e.db.Exec("UPDATE patients SET ssn = ? WHERE id = ?", fields.New(ssn), p.ID).Error
		assert.ErrorIs(t, err, fields.ErrNotSealed)
		sqlDB, err := e.db.DB()
		require.NoError(t, err)
		update := "UPDATE patients SET ssn = ? WHERE id = ?"
		if dialect == "postgres" {
			update = "UPDATE patients SET ssn = $1 WHERE id = $2"
		}
		_, err = sqlDB.Exec(update, fields.New(ssn), p.ID)
		assert.ErrorIs(t, err, fields.ErrNotSealed)

		assert.Equal(t, before, rawRows(t, e.db, "patients"), "nothing changed")
		assert.Empty(t, leaks(rawRows(t, e.db, "patients"), []string{ssn}))
	})
}

func TestUpdates(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		ps := seed(t, e, 6)
		p := ps[0]
		find := func(ssn string) []string {
			found, err := gormphi.Search(e.db, &Patient{TenantID: p.TenantID, SSN: fields.New(ssn)}, "SSNIndex")
			require.NoError(t, err)
			return ids(found)
		}
		old := p.SSN.Get()
		require.Equal(t, []string{p.ID}, find(old))

		// A map: the value is sealed against the record, its blind index
		// recomputed and written, and the record updated.
		require.NoError(t, e.db.Model(p).Updates(map[string]any{"ssn": fields.New("999-01-0001"), "gender": "F"}).Error)
		assert.True(t, p.SSN.Sealed())
		assert.Equal(t, "999-01-0001", p.SSN.Get())
		assert.Equal(t, []string{p.ID}, find("999010001"))
		assert.Empty(t, find(old))

		// Update of one column, by Go name.
		require.NoError(t, e.db.Model(p).Update("SSN", fields.New("999-01-0002")).Error)
		assert.Equal(t, []string{p.ID}, find("999-01-0002"))

		// A struct of changes, applied to a record that knows only its id
		// and scope.
		q := &Patient{ID: p.ID, TenantID: p.TenantID}
		require.NoError(t, e.db.Model(q).Updates(Patient{SSN: fields.New("999-01-0003"), First: fields.New("Ada")}).Error)
		assert.Equal(t, []string{p.ID}, find("999-01-0003"))

		// The last name feeds the name+DOB index with the birth date: the
		// birth date must be known too.
		err := e.db.Model(q).Updates(map[string]any{"last": fields.New("Lovelace")}).Error
		assert.ErrorIs(t, err, gormphi.ErrIndexSources)
		require.NoError(t, e.db.Model(q).Updates(map[string]any{"last": fields.New("Lovelace"), "birth_date": fields.New(p.BirthDate.Get())}).Error)
		// Or opened in the record.
		var loaded Patient
		require.NoError(t, e.db.First(&loaded, "id = ?", p.ID).Error)
		require.NoError(t, e.db.Model(&loaded).Update("last", fields.New("Byron")).Error)
		found, err := gormphi.Search(e.db, &Patient{TenantID: p.TenantID, Last: fields.New("byron"), BirthDate: fields.New(p.BirthDate.Get())}, "NameDOB")
		require.NoError(t, err)
		assert.Equal(t, []string{p.ID}, ids(found))

		// Save writes the whole record, sealed.
		loaded.First.Set("Augusta")
		loaded.Address.Clear()
		require.NoError(t, e.db.Save(&loaded).Error)
		var again Patient
		require.NoError(t, e.db.First(&again, "id = ?", p.ID).Error)
		assert.Equal(t, "Augusta", again.First.Get())
		assert.Equal(t, "Byron", again.Last.Get())
		assert.Equal(t, "999-01-0003", again.SSN.Get())
		assert.True(t, again.Address.IsNull())
		assert.Equal(t, "F", again.Gender)

		// Save of a new record inserts it, sealed.
		n := loadPatients(t)[10].record()
		require.NoError(t, e.db.Save(n).Error)
		var inserted Patient
		require.NoError(t, e.db.First(&inserted, "id = ?", n.ID).Error)
		assert.Equal(t, n.SSN.Get(), inserted.SSN.Get())

		// Setting NULL clears the index with the value.
		require.NoError(t, e.db.Model(&inserted).Update("ssn", nil).Error)
		var cleared Patient
		require.NoError(t, e.db.First(&cleared, "id = ?", n.ID).Error)
		assert.True(t, cleared.SSN.IsNull())
		assert.True(t, cleared.SSNIndex.IsNull())

		// One value for many rows cannot be bound to each of them.
		err = e.db.Model(&Patient{}).Where("tenant_id = ?", p.TenantID).Update("ssn", fields.New("999-99-9999")).Error
		assert.ErrorIs(t, err, fields.ErrMissingRecordID)
		// Columns without PHI update as usual.
		require.NoError(t, e.db.Model(&Patient{}).Where("tenant_id = ?", p.TenantID).Update("gender", "U").Error)
	})
}

func TestMissingRecordID(t *testing.T) {
	e := newEnv(t, "sqlite")
	err := e.db.Create(&Patient{TenantID: "tenant:0", SSN: fields.New("999-00-0000")}).Error
	assert.ErrorIs(t, err, fields.ErrMissingRecordID)
	var n int64
	require.NoError(t, e.db.Model(&Patient{}).Count(&n).Error)
	assert.Zero(t, n)
}

// TestKMSOutage: a save whose data key cannot be unwrapped or created
// writes nothing, and rolls back the transaction it is part of.
func TestKMSOutage(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		all := loadPatients(t)
		first := all[0].record()
		require.NoError(t, e.db.Create(first).Error) // tenant:0's key is cached

		e.kek.SetDown(true)
		calls := e.kek.Calls()
		fresh := all[1].record() // tenant:1: no key yet
		err := e.db.Create(fresh).Error
		assert.ErrorIs(t, err, kms.ErrUnavailable)
		assert.Greater(t, e.kek.Calls(), calls, "the KMS was asked")

		err = e.db.Transaction(func(tx *gorm.DB) error {
			ok := all[2].record() // tenant:0, cached key: no KMS call
			if err := tx.Create(ok).Error; err != nil {
				return err
			}
			if err := tx.Model(first).Update("gender", "X").Error; err != nil {
				return err
			}
			return tx.Create(all[3].record()).Error // tenant:1
		})
		assert.ErrorIs(t, err, kms.ErrUnavailable)

		var n int64
		require.NoError(t, e.db.Model(&Patient{}).Count(&n).Error)
		assert.Equal(t, int64(1), n, "only the patient stored before the outage")
		var p Patient
		require.NoError(t, e.db.First(&p, "id = ?", first.ID).Error)
		assert.Equal(t, all[0].Gender, p.Gender, "the transaction rolled back")

		e.kek.SetDown(false)
		require.NoError(t, e.db.Create(all[1].record()).Error)
	})
}

func TestPreloadAndScan(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		p := loadPatients(t)[0].record()
		p.Visits = []Visit{
			{ID: "v1", TenantID: p.TenantID, Reason: fields.New("Chest pain")},
			{ID: "v2", TenantID: p.TenantID, Reason: fields.New("Follow-up")},
		}
		require.NoError(t, e.db.Create(p).Error, "associations are sealed by their own create")

		var got Patient
		require.NoError(t, e.db.Preload("Visits", func(db *gorm.DB) *gorm.DB { return db.Order("id") }).First(&got, "id = ?", p.ID).Error)
		require.Len(t, got.Visits, 2)
		assert.Equal(t, "Chest pain", got.Visits[0].Reason.Get())
		assert.Equal(t, p.SSN.Get(), got.SSN.Get())

		// Find into another struct type, with a subset of the columns.
		type summary struct {
			ID       string        `phi:"id,table=patients"`
			TenantID string        `phi:"scope"`
			Last     fields.String `phi:"encrypt"`
		}
		var sums []summary
		require.NoError(t, e.db.Model(&Patient{}).Select("id, tenant_id, last").Find(&sums).Error)
		require.Len(t, sums, 1)
		assert.Equal(t, p.Last.Get(), sums[0].Last.Get())

		// A query that reads no encrypted column needs no id or scope.
		var genders []Patient
		require.NoError(t, e.db.Select("gender").Find(&genders).Error)

		// Scan runs no query callback: GORM's leaves the values sealed,
		// gormphi.Scan opens them.
		var s1, s2 summary
		require.NoError(t, e.db.Model(&Patient{}).Select("id, tenant_id, last").Where("id = ?", p.ID).Scan(&s1).Error)
		assert.False(t, s1.Last.Opened())
		assert.Empty(t, s1.Last.Get())
		require.NoError(t, gormphi.Open(e.db, &s1))
		assert.Equal(t, p.Last.Get(), s1.Last.Get())
		require.NoError(t, gormphi.Scan(e.db.Model(&Patient{}).Select("id, tenant_id, last").Where("id = ?", p.ID), &s2).Error)
		assert.Equal(t, p.Last.Get(), s2.Last.Get())
		// Raw(...).Find runs the query callbacks.
		var raw []Patient
		require.NoError(t, e.db.Raw("SELECT * FROM patients WHERE id = ?", p.ID).Find(&raw).Error)
		assert.Equal(t, p.SSN.Get(), raw[0].SSN.Get())

		// SkipHooks reads the ciphertexts without opening them.
		var sealed Patient
		require.NoError(t, e.db.Session(&gorm.Session{SkipHooks: true}).First(&sealed, "id = ?", p.ID).Error)
		assert.False(t, sealed.SSN.Opened())
		assert.True(t, sealed.SSN.Sealed(), "and can write them back as they are")
	})
}

// TestContext: the statement's context reaches the keyring and the KMS.
func TestContext(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.kek.SetDelay(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// Without GORM's transaction: its rollback on a dead context would add
	// sql.ErrTxDone, and GORM keeps only the last error in the chain.
	err := e.db.Session(&gorm.Session{SkipDefaultTransaction: true}).WithContext(ctx).Create(loadPatients(t)[0].record()).Error
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// TestPlaintextRefusedUnderAnyColumnSpelling writes plaintext to the ssn
// column under spellings that SQLite (and MySQL) resolve to it: another
// letter case, quotes, a table prefix. Each is refused as the plain
// spelling is; a sealed value under another spelling is sealed as usual.
func TestPlaintextRefusedUnderAnyColumnSpelling(t *testing.T) {
	e := newEnv(t, "sqlite")
	p := seed(t, e, 1)[0]
	before := rawRows(t, e.db, "patients")
	const ssn = "999-00-1234"
	for _, col := range []string{"sSn", "SSN ", "`ssn`", "patients.ssn", "PATIENTS.Ssn", "Ssn_Index"} {
		t.Run(col, func(t *testing.T) {
			for name, tx := range map[string]*gorm.DB{
				"Updates":  e.db.Model(p).Updates(map[string]any{col: ssn}),
				"Update":   e.db.Model(p).Update(col, ssn),
				"Column":   e.db.Model(p).UpdateColumn(col, ssn),
				"Set":      e.db.Model(p).Clauses(clause.Set{{Column: clause.Column{Name: col}, Value: ssn}}).Updates(map[string]any{"gender": "F"}),
				"Table":    e.db.Table("patients").Where("id = ?", p.ID).Updates(map[string]any{col: ssn}),
				"Create":   e.db.Model(&Patient{}).Create(map[string]any{"id": "x", "tenant_id": "t", col: ssn}),
				"CreateTo": e.db.Table("patients").Create(map[string]any{"id": "y", "tenant_id": "t", col: ssn}),
			} {
				assert.ErrorIs(t, tx.Error, gormphi.ErrPlaintext, name)
			}
		})
	}
	assert.Equal(t, before, rawRows(t, e.db, "patients"), "nothing changed")

	require.NoError(t, e.db.Model(p).Updates(map[string]any{"sSn": fields.New(ssn)}).Error)
	var got Patient
	require.NoError(t, e.db.First(&got, "id = ?", p.ID).Error)
	assert.Equal(t, ssn, got.SSN.Get())
	assert.True(t, got.SSNIndex.Equal(p.SSNIndex), "the index follows the sealed value")
	assert.Empty(t, leaks(rawRows(t, e.db, "patients"), []string{ssn}))
}

// plainRow is an untagged view of the patients table.
type plainRow struct {
	ID, TenantID, SSN string
}

// TestPlaintextRefusedUnderAnyTableSpelling writes plaintext to the
// patients table through db.Table under names that SQLite resolves to
// it (another letter case, quotes, a schema, an alias), and with an
// untagged model: each is refused as db.Table("patients") is.
func TestPlaintextRefusedUnderAnyTableSpelling(t *testing.T) {
	e := newEnv(t, "sqlite")
	p := seed(t, e, 1)[0]
	before := rawRows(t, e.db, "patients")
	const ssn = "999-00-1234"
	for _, table := range []string{"patients", "Patients", "PATIENTS", "main.patients", "`Patients`", "patients p", "Patients AS p"} {
		t.Run(table, func(t *testing.T) {
			for name, tx := range map[string]*gorm.DB{
				"Create":  e.db.Table(table).Create(map[string]any{"id": "x", "tenant_id": "t", "ssn": ssn}),
				"Creates": e.db.Table(table).Create([]map[string]any{{"id": "x", "tenant_id": "t", "ssn": ssn}}),
				"Updates": e.db.Table(table).Where("id = ?", p.ID).Updates(map[string]any{"ssn": ssn}),
				"Update":  e.db.Table(table).Where("id = ?", p.ID).Update("ssn", ssn),
				"Row":     e.db.Table(table).Create(&plainRow{ID: "x", TenantID: "t", SSN: ssn}),
				"Model":   e.db.Table(table).Model(&plainRow{}).Where("id = ?", p.ID).Updates(&plainRow{SSN: ssn}),
			} {
				assert.ErrorIs(t, tx.Error, gormphi.ErrPlaintext, name)
			}
		})
	}
	assert.Equal(t, before, rawRows(t, e.db, "patients"), "nothing changed")
}
