package migrate_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/phicrypt/phicrypt/migrate"
)

func TestVerifyReportPlural(t *testing.T) {
	assert.Equal(t, "1 row\n", (&migrate.VerifyReport{Rows: 1}).String())
	assert.Equal(t, "2 rows\n", (&migrate.VerifyReport{Rows: 2}).String())
}
