// Package fhir encrypts the PHI inside FHIR R4 JSON resources, element by
// element, so that the rest stays readable for analytics.
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
package fhir
