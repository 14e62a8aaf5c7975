// Package fhir encrypts the PHI inside FHIR R4 JSON resources, element by
// element, so that the rest stays readable for analytics: a Patient keeps
// its gender, race and managing organization in clear while its names,
// identifiers, telecom, address and birth date become phicrypt
// ciphertexts. It works on single resources, Bundles and bulk NDJSON
// exports, and computes blind indexes (SSN, MRN) to find patients without
// decrypting.
//
// Most applications create one Encryptor with the built-in profile:
//
//	c, _ := envelope.NewCompact(envelope.CompactConfig{Keyring: keyring, Encoding: envelope.Text})
//	e, _ := fhir.NewEncryptor(fhir.Config{
//		Cipher:     c,                                // or an envelope.SelfContained over a KEK
//		Scope:      fhir.PatientScope("tenant:st-mary"),
//		Codec:      codec,                            // a fields.Codec over the same keyring
//		Indexes:    []fhir.Index{fhir.SSNIndex(16), fhir.MRNIndex(16)},
//		IndexScope: fhir.FixedScope("tenant:st-mary"),
//	})
//	enc, _ := e.Encrypt(ctx, patientJSON)
//	doc, _ := e.Decrypt(ctx, enc)                     // the same bytes as patientJSON
//
// and EncryptNDJSON / DecryptNDJSON for bulk exports.
//
// # What is encrypted
//
// A Profile lists element paths per resource type. USCore, the default,
// merges USCorePatient (the identifiers, names, telecom, addresses, birth
// and death dates, photos, contacts, narrative and PHI extensions of
// Patient and RelatedPerson) and PatientReferences (the patient's name in
// other resources' reference displays, clinical notes, the address answers
// of social-history surveys, visit and policy numbers); their
// documentation lists every element and why. Profiles are plain data and
// load from JSON (ParseProfile).
//
// A path that ends at a primitive encrypts the value; one that ends at an
// object encrypts the object as a whole. The built-in profile encrypts the
// patient's own names, telecom and addresses leaf by leaf: name.use,
// telecom.system and .use, address.use and .type stay readable, which is
// what analysts and data-quality checks use (how many patients have a
// mobile phone, a home and a work address, a maiden name), and a single
// element (the state) can be decrypted for regional statistics. What that
// leaks is the structure: how many given names or address lines there are,
// which elements are present, and a choice element's type
// (deceasedDateTime says that the patient died). Contacts, the birthplace
// address, photos and the narrative are encrypted whole, which hides their
// structure too: nothing inside them serves analysis.
//
// A primitive's extensions travel with it: when birthDate is encrypted, so
// is _birthDate (the birth time extension), and _given[i] with given[i].
//
// # Paths
//
// Paths are a subset of FHIRPath, parsed by ParsePath:
//
//	path       = [ ResourceType "." ] step { "." step | "[" index "]" }
//	step       = name | name "[x]" | "where(" criteria ")" | "extension(" string ")"
//	criteria   = comparison { ("and" | "or") comparison }   ("and" binds tighter)
//	comparison = relative-path "=" string
//	name       = a lower-case letter, then letters and digits (a FHIR element name)
//	string     = '...' with the escapes \' \" \` \\ \/ \f \n \r \t \uXXXX
//
// Arrays are traversed implicitly: name.given selects every given name of
// every name. An indexer [n] keeps the n-th item of the collection so far
// (name[0].given: the given names of the first name). name[x] selects the
// choice element name of any type (value[x]: valueString, valueQuantity,
// ...); unlike FHIRPath, a bare value does not, so that a path never
// matches members by accident. where() keeps the items for which the
// criteria hold; a comparison holds when any string its path selects
// equals the literal (FHIRPath's "in"). extension('url') is
// extension.where(url = 'url'). Examples:
//
//	Patient.name.family
//	identifier.where(type.coding.code = 'SS').value
//	identifier.where(system = 'http://hl7.org/fhir/sid/us-ssn' or type.coding.code = 'SS').value
//	extension('http://hl7.org/fhir/StructureDefinition/patient-birthPlace').value[x]
//	address.extension('http://hl7.org/fhir/StructureDefinition/geolocation').extension('latitude').value[x]
//	component.where(code.coding.code = '56799-0').value[x]
//
// Nothing else of FHIRPath is supported (other functions, operators,
// $this, ofType); a path that uses it fails to parse with a *PathError
// naming the offset and the reason. resourceType and id are never
// encrypted: every value is bound to them.
//
// # Documents
//
// A document is a resource, or a Bundle whose entry[].resource are
// resources (Bundles nest). A resource's contained[] resources get the
// profile of their own type. Other embedded resources
// (Parameters.parameter.resource, Bundle.entry.response.outcome) are part
// of their container and get no profile of their own.
//
// JSON is parsed strictly (RFC 8259, UTF-8, at most MaxDepth levels) and
// duplicate member names are refused: parsers disagree on which one wins,
// and a ciphertext must not be shadowed by a plaintext twin.
//
// # What the output guarantees
//
// Encrypt replaces each selected value, in place, by a JSON string
// "phicrypt:..." (the envelope's text armor) and, when indexes are
// configured, adds one extension (IndexExtensionURL) to each indexed
// resource. Every other byte of the document is kept: member order, white
// space, number formatting, escapes. The output is therefore valid JSON,
// and equal to the input when parsed, but for those values. Decrypt
// restores each value's exact bytes and removes the index extensions, so
// Decrypt(Encrypt(doc)) == doc byte for byte.
//
// A value is encrypted as its JSON text (so its type, string, number,
// boolean, object or array, and a number's digits are kept), padded inside
// the ciphertext with white space to a multiple of Config.Padding bytes
// (16 by default), so that ciphertext lengths do not tell "Mr." from
// "Mrs." or a short name from a long one. null stays null. The plaintext
// is the byte 0x01 (the value encoding's version), the JSON text, then the
// padding.
//
// Encrypt refuses a document that already holds a phicrypt ciphertext or
// index extension (ErrEncryptedInput) rather than encrypt twice. Decrypt
// decrypts every ciphertext it finds, whatever profile wrote it, and by
// default refuses a document in which an element of its own profile holds
// plaintext (ErrNotEncrypted): an attacker who replaced a ciphertext with
// a plaintext value would otherwise be believed. Config.AllowPlaintext
// lifts that check while a profile grows.
//
// # Binding
//
// Each value is bound (envelope.Binding) to its resource: Scope from the
// ScopeFunc, Table the resource type, RecordID the resource id, Column the
// element's path from the resource with array indexes
// ("identifier[2].value", "contained[0].name[0].family"), and an extra
// that names this value encoding. A Bundle entry is bound to its own
// resource, not to the Bundle, so an entry taken out of a transaction
// Bundle still decrypts; a contained resource is bound to its container.
//
// Moving a ciphertext to another element, another resource, another
// resource id or another scope fails with envelope.ErrDecrypt. Binding to
// array indexes also makes a swap inside an array fail (an SSN's
// ciphertext moved to the driver's licence identifier), which binding to
// the path without indexes would let through. The price: a ciphertext
// does not survive its array being reordered, or an element inserted or
// removed before it; FHIR servers keep the order of repeating elements,
// and an application that edits an array decrypts, edits and encrypts the
// resource again. Appending is safe. Field-level encryption authenticates
// values, not the document's shape: removing an element or a whole
// resource goes unnoticed; sign the document if that matters.
//
// Record ids must exist before encryption (ErrMissingID): create resources
// with client-assigned ids (PUT, or a UUID). A resource with nothing to
// encrypt needs no id (a transaction Bundle has none).
//
// # Scopes
//
// The ScopeFunc chooses who shares a data key. FixedScope puts everything
// in one scope (a tenant); PatientScope gives each patient a scope, derived
// from the Patient's id or from the subject, patient, beneficiary or for
// reference of other resources, so that destroying it (keys.Keyring.Destroy)
// crypto-shreds the patient everywhere the compact form was used.
// Self-contained and stream ciphertexts carry their own KEK-wrapped data
// key and are not shredded by Destroy (the phicrypt command refuses
// --per-patient with --form self-contained), and blind indexes under the
// tenant's index key still match the patient's values until erased (see
// "Blind indexes" below and keys.Keyring.Shred). The ScopeFunc sees only what is not
// encrypted: a reference the profile encrypts counts as absent, on both
// sides. With per-patient scopes and the compact form, a value moved to a
// patient who has no key fails with envelope.ErrKeyNotFound rather than
// ErrDecrypt.
//
// # Blind indexes
//
// Config.Indexes (SSNIndex, MRNIndex, or any Index) are computed with
// fields.Codec.IndexFor, so a value equals the struct-tag index
// `phi:"index,of=SSN,normalize=digits,bits=16"` of a table "Patient" with
// an index column "ssn_index" in the same scope: a patient can be found
// from a FHIR store or a SQL table alike. Encrypt writes them into the
// resource, as one extension with a sub-extension per value:
//
//	{"url": "https://github.com/phicrypt/phicrypt/fhir/StructureDefinition/blind-index",
//	 "extension": [{"url": "ssn", "valueBase64Binary": "AZ8x"}, {"url": "mrn", "valueBase64Binary": "AT0Q"}]}
//
// which keeps each resource self-contained (an NDJSON export needs no
// sidecar file) and searchable where it is stored. ReadIndexes returns
// them for a store that keeps a search table; Terms gives the values to
// look for. Plan the length with fields.SuggestIndexBits: a blind index
// reveals which resources share a value's bucket, by design.
//
// Shredding and indexes: a search across a tenant needs the tenant's index
// key (IndexScope a FixedScope), which shredding one patient leaves alive,
// so the patient's index values would still confirm a guessed SSN.
// Shredding is complete only once those values are erased: a search table
// fed by ReadIndexes is erased through a keys.IndexEraser passed to
// keys.Keyring.Shred; NDJSON files already written keep their index
// extension and must be deleted or re-exported (phicrypt keys shred says
// so). Where every search is within one patient, set IndexScope to the
// same PatientScope: the index keys are then destroyed with the patient.
//
// # Bulk NDJSON
//
// EncryptNDJSON and DecryptNDJSON stream one resource per line through a
// pool of workers and write the lines in input order, with memory bounded
// by 2×Workers+2 lines in flight, each at most NDJSONOptions.MaxLineSize
// (a longer line fails with ErrLineTooLong before it is buffered). They
// report progress through a callback, stop when the context is done, and
// name a failed line by its number (*LineError), never by its content.
//
// # Errors and PHI
//
// Errors name elements by path ("Patient.identifier[1].value") and lines by
// number; they never contain values, resource ids, ciphertexts or index
// values. Encryption failures wrap envelope's errors, so errors.Is works
// across packages. Buffers that held plaintext are cleared before they are
// reused (best effort: Go's runtime may have copied them).
package fhir
