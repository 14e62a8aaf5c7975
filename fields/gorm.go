package fields

// GORM infers a column's type from a field's Go type; these methods give
// it the type of what the database stores (GORM's
// schema.GormDataTypeInterface, implemented without importing GORM).

// GormDataType returns "string": the column of an encrypted field holds
// its text-armored ciphertext, whatever T is, so GORM's AutoMigrate makes
// it text (PostgreSQL and SQLite; varchar or longtext on MySQL). With
// Config.Binary, tag the field gorm:"type:bytes" for a bytea (PostgreSQL)
// or BLOB (SQLite, MySQL) column.
func (Encrypted[T]) GormDataType() string { return "string" }

// GormDataType returns "bytes": a blind index is stored as bytes, bytea
// on PostgreSQL and BLOB on SQLite and MySQL. An index tagged with the
// text option holds base64url text: tag it gorm:"type:text" too.
func (BlindIndex) GormDataType() string { return "bytes" }
