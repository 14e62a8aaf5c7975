package migrate

// UseRecordPath makes a Reencrypt job decode every row into a typed record
// (Open, then Seal) instead of resealing its ciphertexts, for tests and
// benchmarks that compare the two.
func UseRecordPath(c *Config) { c.recordPath = true }
