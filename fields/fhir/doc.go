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
// documentation lists every element and why. SafeHarbor encrypts, for a
// data set released under HIPAA's Safe Harbor method, every identifier and
// every date finer than a year in every resource (see Safe Harbor below).
// Profiles are plain data and load from JSON (ParseProfile).
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
// A path that ends at an element also selects its _name member on its
// own (for a choice element name[x], every _nameType), so that
// extensions without a value (FHIR allows _birthDate without birthDate,
// _deceasedDateTime without deceasedDateTime) are encrypted too.
//
// # Shapes and resource types
//
// Whatever the input, every element a profile names is either encrypted
// or makes Encrypt (and Decrypt) fail; nothing passes through because it
// came in an unexpected shape. A path that must step into an element (to
// reach name.family) needs an object there, or an array of objects: a
// string, number, boolean, or an array inside an array
// ("name": "Mallory", "name": ["Mallory"]) fails with ErrUnexpectedShape,
// as does an extension that is not an object, a _given that is not an
// array beside the array given, or one of its items that is not an
// object. null is no value and passes. The members that hold resources
// are checked the same way: contained must be an array of objects,
// Bundle.entry an array of objects whose resource is an object, and a
// contained resource cannot hold resources (FHIR's dom-2). The criteria
// of where() are checked too, since a code in an odd shape would hide an
// answer the profile encrypts: the values they compare, and the url of
// an extension('url') step, must be strings (or null). Where a path ends, any JSON value is
// encrypted as it is, so it needs no check. The *ElementError names the
// element's path and the JSON types, never the value.
//
// A resourceType must be a resource type name, an upper-case letter then
// letters, or the document fails with ErrInvalidResourceType. The profile
// knows the types it lists (Profile.Resources, with or without paths) and
// Bundle; Config.UnknownTypes chooses what happens to the others:
// RefuseUnknown, the default, fails with ErrUnknownResourceType, because
// a type nobody reviewed may hold PHI anywhere (QuestionnaireResponse
// answers, Person names); EncryptUnknown encrypts every string value of
// such a resource but its resourceType and id, which hides what the
// profile cannot name at the cost of its analytics; PassUnknown applies
// only the "*" paths, without shape checks, as earlier versions did, and
// counts the resource in the Report. The library's default is the CLI's:
// a bulk export with a new resource type stops rather than leaks.
//
// # Reports
//
// AppendEncryptReport and AppendDecryptReport (and NDJSONOptions.Report)
// add to a Report what they did, per resource type: how many resources,
// how many had no value encrypted, how many were of an unknown type, and
// the number of values encrypted per element path without array indexes
// ("name.family": 1144). It holds no values and no ids: a compliance
// review reads it to check a profile against an export.
//
// ProfileByName returns a built-in profile by name ("us-core",
// "us-core-patient", "patient-references", "safe-harbor"), as the CLI's
// --profile flag does.
//
// # What US Core leaves readable, and why
//
// USCore is built for an operational store: a leaked table or export must
// not say who each patient is, while care and analytics still read the
// clinical timeline. It encrypts the patient's direct identifiers and the
// patient's name where other resources repeat it; it is not
// de-identification, and what it writes is still PHI. Run over the test
// data (TestUSCoreLeavesTimeOfDeath and the Safe Harbor walker), it leaves
// readable:
//
//   - every clinical date and time: Encounter.period and
//     participant.period, Condition.onsetDateTime, abatementDateTime and
//     recordedDate, Observation and DiagnosticReport effective[x] and
//     issued, Claim and ExplanationOfBenefit billablePeriod, created and
//     item.servicedPeriod, DocumentReference.date and context.period,
//     Procedure.performedPeriod, Immunization.occurrenceDateTime,
//     MedicationRequest.authoredOn, CarePlan and CareTeam periods,
//     Provenance.recorded, meta.lastUpdated, and the Patient's own
//     identifier.period and contact.period. deceasedDateTime is encrypted,
//     yet the time of death is readable elsewhere: in the 10-patient bulk
//     export, each deceased patient's deceasedDateTime is, to the second,
//     the period.end (and participant.period.end) of their last Encounter;
//   - the displays of references to organizations and places:
//     managingOrganization, contact.organization (an employer),
//     generalPractitioner, identifier.assigner, serviceProvider,
//     location.location, Claim and ExplanationOfBenefit provider,
//     facility, insurer and insurance.coverage, custodian, payor. A
//     provider's name says where the patient lives;
//   - identifier.type.text (which names the kind of number), and the
//     identifier values of resources other than Patient, RelatedPerson,
//     Encounter and Coverage (Condition, Observation, DocumentReference,
//     ExplanationOfBenefit, ImagingStudy and its series and instance
//     uids, Specimen.accessionIdentifier), Claim preAuthRef and
//     businessArrangement, Coverage.class.value and dependent;
//   - device identifiers: Device.udiCarrier, distinctIdentifier,
//     serialNumber, lotNumber, url;
//   - free text outside the narrative: note (Annotation), comment,
//     description, abatementString, Communication payload strings,
//     Dosage.text and patientInstruction, CodeableConcept.text typed in
//     without a code; attachments' url, title and hash (their data is
//     encrypted); ages (onsetAge); AuditEvent.agent.network (IP
//     addresses); Location.address and position;
//   - by design, the quasi-identifiers analyses need: gender, birth sex,
//     race and ethnicity, marital status, language, multipleBirth[x], and
//     the structure (which elements exist, how many, a choice element's
//     type);
//   - resource ids, references and fullUrls, as every profile does (see
//     Safe Harbor below).
//
// # Safe Harbor
//
// SafeHarbor ("safe-harbor") encrypts the 18 identifiers of HIPAA's Safe
// Harbor de-identification method (45 CFR 164.514(b)(2)) wherever they
// appear. Paths cannot list every element of every resource type of the
// Patient compartment, so a Profile's SafeHarborRules select by the shape
// of the data, at any depth of every resource: any string that is a FHIR
// date, dateTime or instant finer than a year; the leaves of every
// HumanName, Address (below the state), ContactPoint, Identifier and
// Attachment; every reference display (Coding.display stays); narrative,
// notes and other free text; ages; network addresses. SafeHarbor lists
// every rule; a rule can be added to any profile (Profile.SafeHarbor, or
// "safeHarbor" in JSON).
//
// Safe Harbor lets the year of a date stay. With SafeHarborRules.Years,
// Encrypt writes it in an extension on the encrypted primitive, in FHIR
// JSON's own place for a primitive's extensions:
//
//	"birthDate": "phicrypt:...",
//	"_birthDate": {"extension": [{"url": "https://github.com/phicrypt/phicrypt/fhir/StructureDefinition/year", "valueInteger": 1968}]}
//
// (YearExtensionURL). Decrypt removes exactly these bytes, so the round
// trip stays byte for byte; Encrypt refuses a document that already holds
// one (ErrEncryptedInput), and Decrypt, by default, refuses one that is
// not exactly these bytes right after an encrypted date (ErrNotEncrypted;
// with Config.AllowPlaintext it stays in place). A
// primitive that has extensions of its own (a _birthDate with a birth
// time) is encrypted with them and gets no year, nor does a date inside
// an array (Timing.event). The year is outside the
// ciphertext: like every readable element, it is not authenticated, and
// Decrypt does not compare it with the date.
//
// Ages over 89 are aggregated: the years of a patient of SafeHarborAge
// (90) or more are withheld, in every resource about them. A patient's
// age is the whole years from the earliest day their birthDate allows
// ("1936" counts as 1936-01-01) to SafeHarborRules.AsOf (the day of
// encryption, UTC, when empty), or to their deceasedDateTime when that is
// later. The deceased are aged like the living: a patient born in 1930
// who died at 60 would be 96 today, and a birth year of 1930 is the
// element of a date "indicative of such age" that the rule names. A
// resource's patient is the Patient of the same document (the Patient
// itself, or the one its subject, patient, beneficiary or for reference
// names); when the document does not hold it (the Condition lines of a
// bulk export), or it has no birthDate, the age is unknown and the years
// are withheld too. Every copy of the Patient in the document must be
// under 90 (an older version next to a younger one withholds the
// years), and so must a person whose birth date a resource holds itself
// (RelatedPerson.birthDate, FamilyMemberHistory.born[x], in the resource
// or its contained resources). Withheld means: no year extension, and dates that are
// only a year are encrypted as well. To keep years in a bulk export, give
// the export's Patient file to ReadPatientDates and its result to
// SafeHarborRules.Patients (the CLI's --patients), or export one Bundle
// per patient (as Synthea does).
//
// What stays readable is a residual that the operator must handle before
// calling the output de-identified:
//
//   - Resource ids, references (subject.reference) and Bundle fullUrls
//     are identifiers under Safe Harbor ("any other unique identifying
//     number"), but every ciphertext is bound to its resource's id and
//     scopes come from references, so they cannot be encrypted. Safe
//     Harbor allows a re-identification code (164.514(c)) that is not
//     derived from information about the individual and whose mechanism
//     is not disclosed: assign resource ids as random UUIDs (never an MRN,
//     SSN, account number or a hash of one), use the same ids in
//     urn:uuid: fullUrls and relative references (a server's base URL
//     names the source), keep any map from these ids to the source
//     system's ids out of the released data, and do not release the ids
//     of a source system (Synthea's and bulk exports' are random UUIDs,
//     but a production FHIR server's may not be). Conditional references
//     of provider types ("Organization?identifier=...|NPI") name
//     providers, not the patient, and stay; those of other types
//     ("Patient?identifier=...|<SSN>"), Bundle request urls and
//     ifNoneExist with a query, and Bundle links with one are
//     encrypted, since their search parameters name the patient.
//   - The codes and quasi-identifiers analyses need: gender, race and
//     ethnicity codes, marital status, language, the state and country of
//     addresses, the years of patients under 90, diagnoses, values and
//     units, the structure of the document.
//   - Safe Harbor also requires that the covered entity have no actual
//     knowledge that what remains could identify the individual
//     (164.514(b)(2)(ii)): a rare diagnosis in a small state is the
//     operator's judgement, not this package's.
//
// Encryption is not disposal: whoever holds the keys reads everything,
// so the output is de-identified only for recipients who hold none.
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
// valueBase64Binary, ...); unlike FHIRPath, a bare value does not, so
// that a path never matches members by accident. where() keeps the items for which the
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
// a plaintext value would otherwise be believed. The extensions Encrypt
// adds, in exactly the shape it writes them, are not plaintext to it,
// even where the profile selects them (a path Patient.extension, US
// Core's _birthDate). Config.AllowPlaintext lifts that check while a
// profile grows.
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
// By default the first failed line stops the stream; with
// NDJSONOptions.Reject, a failed line (a patient whose key was destroyed,
// a damaged line) is handed to the callback and left out, the stream goes
// on, and the call ends with ErrRejected.
//
// # Errors and PHI
//
// Errors name elements by path ("Patient.identifier[1].value") and lines by
// number; they never contain values, resource ids, ciphertexts or index
// values. Encryption failures wrap envelope's errors, so errors.Is works
// across packages. Buffers that held plaintext are cleared before they are
// reused (best effort: Go's runtime may have copied them).
package fhir
