package gormphi_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/fields/gormphi"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms/local"
)

func mustGenerate(t testing.TB) []byte {
	t.Helper()
	data, err := local.Generate(local.Options{KeyID: "local:gormphi-shred"})
	require.NoError(t, err)
	return data
}

// Chart has a data key per patient (its scope) and a tenant-wide SSN
// index, so that a tenant can be searched by SSN in one query.
type Chart struct {
	ID           string            `gorm:"primaryKey" phi:"id,table=charts"`
	TenantID     string            `gorm:"not null;index:idx_charts_ssn,priority:1"`
	PatientScope string            `gorm:"not null;index" phi:"scope"`
	SSN          fields.String     `phi:"encrypt"`
	SSNIndex     fields.BlindIndex `gorm:"index:idx_charts_ssn,priority:2" phi:"index,of=SSN,normalize=digits,bits=16,scope=TenantID"`
}

// Unscoped has a blind index but its scope comes from a method, not a
// column.
type Unscoped struct {
	ID       string            `gorm:"primaryKey" phi:"id,table=unscopeds"`
	SSN      fields.String     `phi:"encrypt"`
	SSNIndex fields.BlindIndex `phi:"index,of=SSN,bits=8"`
}

func (Unscoped) PHIScope() string { return "tenant:a" }

// TestShredErasesTenantWideIndexValues: destroying a patient's keys leaves
// their values under the tenant's index key, which still confirm a
// guessed SSN; Shred with the plugin's Eraser sets them to NULL, and
// leaves other patients searchable.
func TestShredErasesTenantWideIndexValues(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		kek, err := local.New(local.Config{Data: mustGenerate(t)})
		require.NoError(t, err)
		kr, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore()})
		require.NoError(t, err)
		codec, err := fields.NewCodec(fields.Config{Keyring: kr})
		require.NoError(t, err)
		db := openDB(t, dialect, codec, &Chart{}, &Visit{})
		const tenant = "tenant:a"
		victim := &Chart{ID: "c1", TenantID: tenant, PatientScope: tenant + "/patient:1", SSN: fields.New("999-11-1111")}
		bystander := &Chart{ID: "c2", TenantID: tenant, PatientScope: tenant + "/patient:2", SSN: fields.New("999-22-2222")}
		visit := &Visit{ID: "v1", TenantID: victim.PatientScope, PatientID: "c1", Reason: fields.New("checkup")}
		require.NoError(t, db.Create([]*Chart{victim, bystander}).Error)
		require.NoError(t, db.Create(visit).Error)

		matches := func(ssn string) int64 {
			terms, err := codec.IndexTerms(ctx, &Chart{TenantID: tenant, SSN: fields.New(ssn)}, "SSNIndex")
			require.NoError(t, err)
			var n int64
			require.NoError(t, db.Model(&Chart{}).Where("tenant_id = ? AND ssn_index = ?", tenant, terms[0]).Count(&n).Error)
			return n
		}
		require.Equal(t, int64(1), matches("999111111"))

		_, err = kr.Destroy(ctx, victim.PatientScope)
		require.NoError(t, err)
		assert.Equal(t, int64(1), matches("999111111"), "Destroy alone: the tenant's index key still confirms the guess")

		eraser, err := gormphi.Eraser(db, &Chart{}, &Visit{})
		require.NoError(t, err)
		report, err := kr.Shred(ctx, victim.PatientScope, keys.ShredOptions{Erasers: []keys.IndexEraser{eraser}})
		require.NoError(t, err)
		assert.Equal(t, int64(1), report.IndexRowsErased)
		assert.Zero(t, matches("999111111"), "the shredded patient's index value is gone")
		assert.Equal(t, int64(1), matches("999222222"), "the bystander is still found")
		var count int64
		require.NoError(t, db.Model(&Chart{}).Where("ssn IS NOT NULL").Count(&count).Error)
		assert.Equal(t, int64(2), count, "ciphertexts stay: the destroyed key makes them unreadable")

		_, err = gormphi.Eraser(db, &Unscoped{})
		assert.ErrorIs(t, err, gormphi.ErrNoScopeColumn)
		_, err = eraser.EraseIndexes(ctx, "")
		assert.ErrorIs(t, err, keys.ErrInvalidID)
	})
}
