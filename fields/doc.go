// Package fields encrypts the PHI fields of Go structs: declare which
// fields are PHI with struct tags, Seal before writing a record, Open after
// reading one, and find patients by SSN, MRN or last name and birth date
// through blind indexes without decrypting the table.
//
//	type Patient struct {
//		ID        string                    `phi:"id,table=patients"`
//		TenantID  string                    `phi:"scope"`
//		SSN       fields.String             `phi:"encrypt"`
//		LastName  fields.String             `phi:"encrypt"`
//		BirthDate fields.Encrypted[time.Time] `phi:"encrypt"`
//		SSNIndex  fields.BlindIndex         `phi:"index,of=SSN,normalize=digits,bits=16"`
//		NameDOB   fields.BlindIndex         `phi:"index,of=LastName+BirthDate,normalize=trim+fold+nfc,bits=16"`
//	}
//
//	codec, _ := fields.NewCodec(fields.Config{Keyring: keyring})
//	p := Patient{ID: uuid, TenantID: "tenant:st-mary", SSN: fields.New("999-12-3456"), ...}
//	codec.Seal(ctx, &p)   // encrypts, computes the indexes
//	db.Exec(`INSERT ...`, p.ID, p.TenantID, p.SSN, p.LastName, p.BirthDate, p.SSNIndex, p.NameDOB)
//	...
//	row.Scan(&p.ID, &p.TenantID, &p.SSN, ...)
//	codec.Open(ctx, &p)   // decrypts
//	ssn := p.SSN.Get()
//
// # Tags
//
// The tag key is phi. Its first word is the kind; options follow, comma
// separated:
//
//	phi:"id"                 the record id, bound to every value of the record: a string,
//	                         []byte, integer, or a type with MarshalText or String (UUIDs).
//	    table=NAME           the table name (or give the type a PHITable() string method,
//	                         or let an ORM bind it: Codec.BindTable, as the GORM plugin does)
//	phi:"scope"              the scope: who shares the data key (a tenant, a patient).
//	                         Or give the type a PHIScope() string method.
//	phi:"encrypt"            an encrypted field, of type Encrypted[T]
//	    column=NAME          the column name bound to the value (default: the field's
//	                         name in snake_case)
//	    deterministic        AES-SIV instead of AES-GCM: equal values, equal ciphertexts
//	    migrate              migration mode: Open accepts legacy plaintext
//	phi:"index"              a blind index, of type BlindIndex
//	    of=A or of=A+B       the encrypted fields it indexes (a compound index)
//	    bits=N               its length in bits, 1 to 64 (see SuggestIndexBits)
//	    normalize=X+Y        normalizers applied to each source in order: trim, lower,
//	                         fold, digits, alnum, nfc, collapse, and the transforms
//	                         last4, prefix:N, nysiis, year, yearmonth, date
//	    normalize=X+Y|Z      one chain per source of a compound index, in the order
//	                         of of= ("-" for none): of=SSN+BirthDate,
//	                         normalize=digits+last4|date
//	    column=NAME          the column name (default: snake_case of the field name)
//	    scope=Field          a field whose value scopes the index key, when the
//	                         record's scope is narrower (per-patient data keys, but
//	                         one index per tenant, so that a tenant can search)
//	    text                 store base64url text instead of bytes
//	phi:"-"                  ignored
//
// Untagged struct fields (and embedded structs) are searched for tagged
// fields too; a nested field's column is prefixed by the struct field's
// column and a dot. Only structs held by value are searched: tagged,
// encrypted or index fields reached through a pointer (an embedded
// *Contact), a slice, an array or a map are a *TagError, as are
// PHIScope or PHITable methods that are not func() string. The plan of a type is built once, on first use, and
// cached; any mistake (an unknown kind or option, a tag on a field of the
// wrong type, an unsupported type, a missing id, scope or table, two fields
// with one column, an index over a field that is not encrypted) is a
// *TagError naming the field, never a silent skip. Call Codec.Plan at
// startup to fail fast.
//
// Table and column names are part of every ciphertext's binding: renaming
// a Go field changes its default column and makes its stored values fail to
// decrypt. Set column= on fields you may rename.
//
// # Batches and large reads
//
// Seal and Open take a slice as well as one record: one plan lookup, and
// each key looked up once per record and scope. Open spreads a slice of
// 512 records or more over GOMAXPROCS goroutines. For a result set too
// large to wait for, OpenPipeline opens records while the caller scans
// more rows; either way the error is the first failing record's, as in a
// serial run. With pgx, Encrypted implements pgtype.BytesScanner
// (ScanBytes), which spares pgx's copy of each value.
//
// # Values
//
// Encrypted[T] keeps plaintext and ciphertext apart; see its documentation
// for the supported types, what NULL reveals (an Encrypted that was never
// set is NULL; Set(nil) on an Encrypted[*T] encrypts the nil, which hides
// it), and the JSON policy: encrypted values and blind indexes marshal to
// "[redacted]" and unmarshal only from null, so neither plaintext, nor
// ciphertext, nor index values reach logs or API responses through JSON,
// and JSON cannot smuggle plaintext in. Its driver.Valuer refuses to
// produce a value until the record is sealed, so plaintext cannot reach a
// database by accident, even through raw SQL that bypasses every hook.
// Plaintext, ciphertexts and index values are held behind pointers that
// reflection-based printers (fmt on unexported fields or with a bad verb,
// go-spew, testify's failure diffs) show only as addresses, so a record
// logged or dumped by any of them shows no PHI. As a consequence
// reflect.DeepEqual and testify's assert.Equal compare encrypted values and
// blind indexes by identity: compare Get and BlindIndex.Equal instead.
// Errors never quote a value: when a type's own marshaling code fails
// (MarshalText, UnmarshalBinary, UnmarshalJSON...), its error, which may
// quote the plaintext, is replaced by ErrEncode or ErrTypeMismatch naming
// only the type and the method.
// Numbers are encoded with a fixed width, so a ciphertext's length does
// not reveal their magnitude; strings and byte slices are not padded, so
// their length shows through.
//
// # Binding
//
// Every value is bound to (scope, table, column, record id): a ciphertext
// copied to another patient's row, another column or another tenant fails
// with envelope.ErrDecrypt. Record ids must therefore exist before a record
// is sealed: use client-generated UUIDs or ULIDs as primary keys. With
// auto-increment keys, either insert the row first and seal and update it
// in the same transaction, or tag as id a stable natural key that exists
// before insert (an MRN, an external id) and never changes.
//
// Deterministic fields are bound to (scope, table, column) only, without
// the record id, so that equal values have equal ciphertexts across rows:
// that is what makes equality lookups, joins and unique constraints work,
// and it reveals which rows share a value. AES-SIV is not FIPS 140-3
// approved.
//
// # Blind indexes
//
// A blind index stores a truncated HMAC-SHA-256 of the normalized
// plaintext of its source fields, under an index key per (scope, table,
// column) kept wrapped by the keyring. Truncation makes several plaintexts
// share each index value on purpose, so the index does not single out a
// row; SuggestIndexBits plans the length from the table's expected size
// (CipherSweet's rule: at least two rows per index value), and the planner
// (see Planning blind indexes) refuses plans that would leak more. A search
// (IndexTerms) returns candidate rows; decrypt them and keep those for
// which Match is true. Index key versions created by this release on bind
// the index's definition (its normalizer chains, one per source, and its
// bits) into the key that computes it (keys.IndexKey.For): two
// definitions of one column never share values, so changing normalize= or
// bits= without rotating the index key makes searches miss instead of
// mixing incompatible values; rotate the index key and reindex instead.
// Versions created by earlier releases compute as they did, so their
// stored values keep matching until they are reindexed. The digits normalizer keeps every Unicode decimal digit as
// its ASCII digit (a full-width "９９９-１２-３４５６" indexes like
// "999-12-3456"). A non-empty source that its normalizers reduce to
// nothing ("N/A" under digits) gets a NULL index, like a NULL source,
// rather than an index value shared by all such values: IndexTerms refuses
// to search for it and Match never pairs it. During an index key rotation IndexTerms returns a
// value for each live key version, so searches keep working while the
// migration engine recomputes the stored indexes.
//
// # Transforms and prefix search
//
// Transforms are normalizers that keep part of a value, and each index
// reveals, to whoever reads the table, which rows share what it keeps:
//
//	last4       the last four decimal digits (digits' rules; fewer than four
//	            give nothing): reveals equality of the last four digits.
//	prefix:N    the first N characters, counted in Unicode code points, of
//	            the text the normalizers before it produced (prefix:N must
//	            end its chain; put nfc before it so that an accent is one
//	            character): reveals equality of the first N characters.
//	nysiis      the NYSIIS phonetic code (Taft, 1970; six letters, as Apache
//	            Commons Codec computes it) of the letters A to Z, accents
//	            removed: groups similar-sounding names (Smith, Schmit, Smyth),
//	            revealing that their names sound alike. Names in other scripts
//	            code to nothing.
//	year        "2006", yearmonth "2006-01", date "2006-01-02" of a date:
//	            reveals equality at that granularity. They read a time.Time
//	            (in UTC, as every time is indexed) or a date string (RFC 3339,
//	            or ISO 8601 / FHIR dates and partial dates, whose calendar date
//	            is the one written); a text that is not a date, or a partial
//	            date coarser than asked, gives nothing. On a source of another
//	            type they are a *TagError. A birth date held as local midnight
//	            east of UTC falls on the day before in UTC: hold dates as UTC
//	            midnight (time.Date(y, m, d, 0, 0, 0, 0, time.UTC)), or as
//	            date strings.
//
// Several indexes over one field add up what they reveal: a prefix:3 and a
// prefix:5 index together reveal the equality of both prefixes; the
// planner (below) counts them together.
//
// A compound index applies one chain to every source, or, with chains
// separated by |, one chain per source in the order of of=; "-" is an
// empty chain. A chain count that is neither one nor the number of
// sources is a *TagError.
//
// Prefix search uses one index per prefix length, each with its own key
// (say LastP2, LastP3 and LastP5, normalize=nfc+fold+prefix:N).
// Codec.PrefixSearch picks the index whose length equals the query's, or
// else the longest that the query covers, and returns its terms; a query
// shorter than every prefix index fails with ErrPrefixTooShort.
// Codec.MatchPrefix then keeps the opened rows whose value, normalized the
// same way, starts with the whole query.
//
// Every index key belongs to a scope, so that destroying the scope shreds
// it: IndexValue, IndexTerms, IndexFor and TermsFor refuse an empty scope
// with ErrMissingRecordID, and the keyring refuses it too (keys.ErrInvalidID),
// as it refuses the scopes phicrypt reserves (keys.ErrReservedScope). The
// index key versions a search tries are cached with the keys, so a warm
// IndexTerms makes no key store call.
//
// # Planning blind indexes
//
// Each index reveals which rows share its value; several indexes over one
// field reveal more together. The planner checks, for every encrypted
// field, all the indexes that read it, compound ones included, as
// CipherSweet's FieldIndexPlanner does, and refuses a record type whose
// indexes together would narrow a row's value down to fewer than
// Config.MinCandidates rows (2 by default; 2^k keeps k bits of doubt) of a
// table of Config.ExpectedRows rows: the size of the real table, say 10
// million patients, never the test table's. Without ExpectedRows it
// assumes DefaultExpectedRows, a million. The refusal is a *LeakError
// (ErrIndexLeak, also ErrInvalidTag) from NewCodec for the types listed in
// Config.Types, and otherwise from Plan, Seal, Open and every search of the
// type's first use: a codec never writes or searches a type its planner
// refused. Codec.PlanReport shows every figure below.
//
// The model, with R rows and a minimum of M candidates:
//
//	L          an index's bits (bits=N).
//	K          the domain of its input, in bits (log2 of the number of
//	           values): a source's declared Config.SourceBits (SSN 29.9;
//	           US last names about 17.3), narrowed by the transforms:
//	           last4 13.3 (10^4), year 7.2, yearmonth 10.8, date 15.7 (dates
//	           over 150 years), prefix:N 4.75 per character (26 letters and
//	           a separator), nysiis 28.2 (6 letters); the sum over the
//	           sources of a compound; unbounded (+Inf) when nothing bounds it.
//	min(L, K)  what one index reveals.
//	Λ          what the indexes reading one field reveal together: the sum
//	           of min(L, K) over them, except that nested refinements of one
//	           source under one chain (prefix:2, prefix:3 and the full
//	           value; or year, yearmonth, date) reveal no more than the
//	           finest one's K; the whole capped by the domains of the
//	           inputs they read.
//	R / 2^Λ    the rows expected to share a row's values of all those
//	           indexes: it must be at least M, so Λ ≤ log2(R/M), the budget:
//	           18.9 bits for a million rows, 22.25 for 10 million.
//	R/2^K + (R − R/2^K)/2^L
//	           the rows one query decrypts: the matches, then the false
//	           positives, each non-matching row colliding with probability
//	           2^−L, which the post-filter (Match, MatchPrefix) removes.
//
// For 10 million patients, with last names of 17.3 bits, first names of
// 16.6 and SSNs of 29.9 declared, the front desk of issue 16 passes with:
// last4+date of birth at 12 bits (2,441 rows per query), last-name prefixes
// of 2, 3, 4, 5 letters at 10, 12, 14, 16 bits (23,470, 2,949, 672, 215
// rows), NYSIIS of the last name at 16 bits (215 rows) and of the first
// name at 14 (711 rows), and birth-date buckets by year and month at 4 and
// 6 bits. The birth date's indexes then reveal 22 of the 22.25 bits
// allowed: a 13-bit compound, or wider buckets, are refused. The last
// name's five indexes reveal at most its 17.3 bits, so their lengths are
// free; that equality of last names shows is the price of searching them.
//
// The model assumes values spread evenly: a rare value (a surname one
// patient holds) is singled out whenever the indexes determine the value,
// so keep M above 2 for fields with a long tail, and declare SourceBits no
// smaller than the truth, since a smaller domain loosens the check. It
// counts each field's indexes, not the whole record's: an attacker who
// knows several fields of a patient and can compare index values of rows
// they insert may single out that patient's row from indexes over
// different fields together. An index whose input has at most
// LowCardinalityBits (16) bits, or no more bits than the index, groups rows
// by value that frequency analysis can name: the planner warns
// (Config.OnPlanWarning, or slog.Warn) without refusing.
//
// # Date ranges and queries
//
// A date field with year, yearmonth or date indexes is searched by range
// (ParseDateRange, Codec.DateRangeSearch): the range becomes the coarsest
// buckets inside it and finer ones at its edges, each searched in its
// index under every live key version, and MatchDateRange post-filters.
// What bucket indexes leak is in daterange.go's comment: which rows share
// a birth year or month, whatever the bits.
//
// A Query (NewQuery) joins equality, sounds-like, prefix and date-range
// conditions on a template with AND. Codec.Search computes its terms,
// bounded by Query.MaxTerms (DefaultMaxTerms; a *TermLimitError beyond);
// Search.Where writes the SQL condition with ? or $n placeholders and
// quoted column names, refusing names that are not plain identifiers
// (ErrUnsafeIdentifier); Search.Match is the post-filter that makes the
// answer exact. Package gormphi runs a Query with GORM (Query, Find).
//
// # Migration mode
//
// By default, Open refuses plaintext where a ciphertext belongs
// (ErrNotEncrypted). A field tagged migrate accepts it while a table is
// being encrypted: the value is decoded from its legacy form, reported
// (Config.OnLegacyPlaintext, and an audit event), and left unsealed, so the
// next Seal encrypts it. The audit event (OpLegacyRead, sent to
// Config.Auditor) names the scope, table and column, never the value.
//
// A value close to a ciphertext is never taken for legacy plaintext: a
// ciphertext whose armor prefix changed case, gained white space or a
// quote, lost or changed a character or two, or was stripped, and a
// binary ciphertext with a few bits flipped in its first four bytes,
// fail with ErrDamagedCiphertext (also envelope.ErrDecrypt) in both modes;
// Codec.Open documents the exact rule. A legacy plaintext that happens to
// be that close fails the same way: fail closed, then fix the row by hand.
package fields
