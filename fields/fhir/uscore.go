package fhir

// Extension URLs the built-in profiles select.
const (
	urlGeolocation      = "http://hl7.org/fhir/StructureDefinition/geolocation"
	urlMothersMaiden    = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName"
	urlBirthPlace       = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
	loincAddressAnswer  = "56799-0" // LOINC "What address do you live at?" (PRAPARE)
	whereAddressAnswer  = "where(code.coding.code = '" + loincAddressAnswer + "')"
	geolocationExtPath  = "address.extension('" + urlGeolocation + "')"
	mothersMaidenNameEx = "extension('" + urlMothersMaiden + "').value[x]"
	birthPlaceEx        = "extension('" + urlBirthPlace + "').value[x]"
)

// person lists the PHI of a person resource (Patient, RelatedPerson): the
// values of names, contact points and addresses, leaf by leaf, so that
// their use, system and type stay readable; identifiers' values; dates of
// birth; photos and the narrative whole.
func person() []string {
	return []string{
		"identifier.value",
		"name.text", "name.family", "name.given", "name.prefix", "name.suffix", "name.period",
		"telecom.value", "telecom.period",
		"birthDate",
		"address.text", "address.line", "address.city", "address.district", "address.state",
		"address.postalCode", "address.country", "address.period",
		geolocationExtPath + ".extension('latitude').value[x]",
		geolocationExtPath + ".extension('longitude').value[x]",
		"photo",
		"text.div",
	}
}

// USCorePatient returns the built-in profile of the PHI in Patient and
// RelatedPerson resources, after US Core's Patient profile and HIPAA's
// list of identifiers:
//
//   - every identifier's value (SSN, MRN, driver's licence, passport, and
//     any other), leaving its system and type readable;
//   - names (text, family, given, prefix, suffix, period), telecom values
//     and periods, and addresses (text, line, city, district, state,
//     postalCode, country, period, and the latitude and longitude of the
//     geolocation extension), each leaf apart, so that name.use,
//     telecom.system and .use, and address.use and .type stay readable;
//   - birthDate (with its _birthDate extensions, such as the birth time)
//     and deceased[x];
//   - the mother's maiden name and birthplace extensions' values (the
//     birthplace's valueAddress whole);
//   - contact[].name, .telecom and .address, each whole: nothing in a
//     contact's name or address serves analysis;
//   - photo whole; link.other.display;
//   - text.div whole: the narrative repeats the name, address, phone and
//     MRN.
//
// Gender, birth sex, race, ethnicity, marital status, language and
// multipleBirth[x] stay readable: analyses need them, and they are
// quasi-identifiers, not identifiers. A choice element's member name shows
// its type: deceasedDateTime, even encrypted, says that the patient died.
func USCorePatient() *Profile {
	patient := append(person(),
		"deceased[x]",
		mothersMaidenNameEx,
		birthPlaceEx,
		"contact.name", "contact.telecom", "contact.address",
		"link.other.display",
	)
	related := append(person(), "patient.display")
	return &Profile{Name: "us-core-patient", Resources: map[string][]string{
		"Patient":       patient,
		"RelatedPerson": related,
	}}
}

// PatientReferences returns the built-in profile of the patient's PHI
// repeated in other resources:
//
//   - on every resource type, the narrative (text.div) and the display of
//     each reference element that may point to a Patient or RelatedPerson
//     (subject, patient, beneficiary, subscriber, policyHolder, requester,
//     performer, performer.actor, asserter, recorder, author,
//     informationSource, for, sender, recipient, source, expressedBy,
//     participant.individual, .member and .actor, agent.who and
//     .onBehalfOf, payee.party). These elements may also name
//     practitioners, whose names are then encrypted too;
//   - clinical notes: DocumentReference.content.attachment.data,
//     DiagnosticReport.presentedForm.data, Media.content.data, Binary.data;
//   - the answer to "What address do you live at?" (LOINC 56799-0, asked
//     by the PRAPARE survey that Synthea fills in), in Observation.value[x]
//     or component.value[x];
//   - business identifiers that single out a patient's visit or policy:
//     Encounter.identifier.value, Coverage.identifier.value and
//     Coverage.subscriberId;
//   - Provenance.target.display.
//
// References themselves (subject.reference) stay readable: they link
// resources and choose per-patient scopes. Clinical dates stay readable
// too; this is encryption of identifiers, not HIPAA Safe Harbor
// de-identification (SafeHarbor is; the package documentation lists what
// US Core leaves readable).
func PatientReferences() *Profile {
	display := []string{"text.div"}
	for _, ref := range []string{
		"subject", "patient", "beneficiary", "subscriber", "policyHolder", "requester",
		"performer", "performer.actor", "asserter", "recorder", "author", "informationSource",
		"for", "sender", "recipient", "source", "expressedBy",
		"participant.individual", "participant.member", "participant.actor",
		"agent.who", "agent.onBehalfOf", "payee.party",
	} {
		display = append(display, ref+".display")
	}
	p := &Profile{Name: "patient-references", Resources: map[string][]string{
		AnyResource:         display,
		"DocumentReference": {"content.attachment.data"},
		"DiagnosticReport":  {"presentedForm.data"},
		"Media":             {"content.data"},
		"Binary":            {"data"},
		"Observation": {
			whereAddressAnswer + ".value[x]",
			"component." + whereAddressAnswer + ".value[x]",
		},
		"Encounter":  {"identifier.value"},
		"Coverage":   {"identifier.value", "subscriberId"},
		"Provenance": {"target.display"},
	}}
	for _, typ := range reviewedTypes {
		p.Resources[typ] = []string{}
	}
	return p
}

// reviewedTypes are the resource types of a Synthea bulk export (and the
// ServiceRequest its claims contain) for which PatientReferences' "*"
// paths (narrative, reference displays) are all the patient's PHI they
// hold. PatientReferences lists them as known, with no paths of their
// own.
var reviewedTypes = []string{
	"AllergyIntolerance", "CarePlan", "CareTeam", "Claim", "Condition", "Device",
	"ExplanationOfBenefit", "Goal", "ImagingStudy", "Immunization", "Location",
	"Medication", "MedicationAdministration", "MedicationRequest", "Organization",
	"Practitioner", "PractitionerRole", "Procedure", "ServiceRequest", "SupplyDelivery",
}

// USCore returns the default profile: USCorePatient and PatientReferences
// merged. It knows the resource types they name and those of a Synthea
// bulk export (AllergyIntolerance, CarePlan, CareTeam, Claim, Condition,
// Device, ExplanationOfBenefit, Goal, ImagingStudy, Immunization,
// Location, Medication, MedicationAdministration, MedicationRequest,
// Organization, Practitioner, PractitionerRole, Procedure,
// ServiceRequest, SupplyDelivery), whose PHI is in the "*" paths; other
// types follow Config.UnknownTypes.
func USCore() *Profile {
	return Merge("us-core", USCorePatient(), PatientReferences())
}
