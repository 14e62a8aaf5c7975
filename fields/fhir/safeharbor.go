package fhir

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/phicrypt/phicrypt/envelope"
)

// YearExtensionURL is the extension that the Safe Harbor profile adds to
// an encrypted date to keep its year readable (see SafeHarborRules.Years):
//
//	"birthDate": "phicrypt:...",
//	"_birthDate": {"extension": [{"url": "https://github.com/phicrypt/phicrypt/fhir/StructureDefinition/year", "valueInteger": 1968}]}
//
// Decrypt removes it, so the round trip gives back the original bytes.
const YearExtensionURL = "https://github.com/phicrypt/phicrypt/fhir/StructureDefinition/year"

// SafeHarborAge is the age from which Safe Harbor aggregates patients into
// one category, "90 or older": no year of theirs stays readable.
const SafeHarborAge = 90

// ErrUnknownProfile means ProfileByName was given a name that no built-in
// profile has.
var ErrUnknownProfile = errors.New("fhir: unknown built-in profile")

// ErrInvalidProfile means a profile's Safe Harbor rules are invalid (an
// AsOf that is not a date).
var ErrInvalidProfile = errors.New("fhir: invalid profile")

// SafeHarborRules turns on, in a Profile, the rules that select the 18
// identifiers of HIPAA's Safe Harbor method (45 CFR 164.514(b)(2)) by the
// shape of the data rather than by path, in every element of every
// resource type. SafeHarbor documents each rule.
type SafeHarborRules struct {
	// Years keeps the year of each encrypted date readable, in a
	// YearExtensionURL extension on the primitive (FHIR JSON's _name
	// member), for resources whose patient is known to be under
	// SafeHarborAge. Without it, or when the age is 90 or more or cannot
	// be told, no year is written and dates that are only a year are
	// encrypted too.
	Years bool `json:"years,omitempty"`
	// AsOf is the date (YYYY-MM-DD) at which ages are counted; when
	// empty, the day of each Encrypt call (UTC). A patient's age is the
	// whole years from the earliest day their birthDate allows to AsOf,
	// or to their date of death when it is later.
	AsOf string `json:"asOf,omitempty"`
	// Patients gives the dates of patients whose Patient resource is not
	// in the document being encrypted, by Patient id: the Patient file of
	// a bulk export, read by ReadPatientDates, for the export's other
	// files. A Patient in the document wins. NewEncryptor copies it.
	Patients map[string]PatientDates `json:"-"`

	off []string // rules turned off, for tests that prove each one matters
}

// PatientDates are the elements of a Patient that its age is counted
// from, as FHIR writes them.
type PatientDates struct {
	BirthDate        string // Patient.birthDate
	DeceasedDateTime string // Patient.deceasedDateTime, "" if none
}

// ReadPatientDates reads the birth and death dates of the Patients of an
// NDJSON file (other resource types are skipped), by id, for
// SafeHarborRules.Patients. Each line is parsed as Encrypt parses
// documents (strict JSON, duplicate member names refused, names matched
// exactly), so that the dates it reads are the ones Encrypt sees. A line
// that is not a JSON object, or whose resourceType, id, birthDate or
// deceasedDateTime is not a string, fails with a *SyntaxError that gives
// its offset. A Patient id that comes twice with different dates gets no
// birth date: its age is unknown, and its years are withheld.
func ReadPatientDates(ctx context.Context, r io.Reader) (map[string]PatientDates, error) {
	out := map[string]PatientDates{}
	twice := map[string]bool{} // ids seen with different dates
	br := bufio.NewReaderSize(r, readBufferSize)
	var (
		t    tree
		line []byte
		off  int64
	)
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		line = line[:0]
		var err error
		for {
			var chunk []byte
			chunk, err = br.ReadSlice('\n')
			if len(line)+len(chunk) > DefaultMaxLineSize+1 {
				return nil, &SyntaxError{Offset: off, Reason: fmt.Sprintf("line longer than %d bytes", DefaultMaxLineSize)}
			}
			line = append(line, chunk...)
			if err != bufio.ErrBufferFull {
				break
			}
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		start := off
		off += int64(len(line))
		if body := bytes.TrimSuffix(line, []byte{'\n'}); !isBlank(body) {
			id, d, err := t.patientDates(body, start)
			if err != nil {
				return nil, err
			}
			if prev, seen := out[id]; seen && prev != d {
				twice[id] = true
			}
			if id != "" {
				out[id] = d
				if twice[id] {
					out[id] = PatientDates{}
				}
			}
		}
		if err == io.EOF {
			return out, nil
		}
	}
}

// patientDates parses one line of ReadPatientDates, found at offset off
// of the input, and returns the id and dates of a Patient ("" for
// another resource type).
func (t *tree) patientDates(line []byte, off int64) (string, PatientDates, error) {
	if err := t.parse(line); err != nil {
		if se, ok := err.(*SyntaxError); ok {
			return "", PatientDates{}, &SyntaxError{Offset: off + se.Offset, Reason: se.Reason}
		}
		return "", PatientDates{}, err
	}
	if t.nodes[0].kind != kindObject {
		return "", PatientDates{}, &SyntaxError{Offset: off, Reason: "not a JSON resource"}
	}
	var v [4]string
	for i, k := range [...]string{"resourceType", "id", "birthDate", "deceasedDateTime"} {
		m := t.member(0, k)
		switch {
		case m == none || t.nodes[m].kind == kindNull:
		case t.nodes[m].kind == kindString:
			v[i] = string(t.text(nil, m))
		default:
			return "", PatientDates{}, &SyntaxError{Offset: off + int64(t.nodes[m].start), Reason: k + " is not a string"}
		}
	}
	if v[0] != "Patient" {
		return "", PatientDates{}, nil
	}
	return v[1], PatientDates{BirthDate: v[2], DeceasedDateTime: v[3]}, nil
}

// Names of the Safe Harbor rules, in the order SafeHarbor documents them.
const (
	ruleDates       = "dates"
	ruleNames       = "names"
	ruleAddresses   = "addresses"
	ruleTelecom     = "telecom"
	ruleIdentifiers = "identifiers"
	ruleReferences  = "reference-displays"
	ruleAttachments = "attachments"
	ruleNarrative   = "narrative"
	ruleFreeText    = "free-text"
	ruleAges        = "ages"
	ruleNetwork     = "network"
)

// SafeHarborRuleNames lists the rules of SafeHarborRules.
func SafeHarborRuleNames() []string {
	return []string{ruleDates, ruleNames, ruleAddresses, ruleTelecom, ruleIdentifiers, ruleReferences,
		ruleAttachments, ruleNarrative, ruleFreeText, ruleAges, ruleNetwork}
}

// SafeHarbor returns the built-in profile "safe-harbor": it encrypts the 18
// identifiers of HIPAA's Safe Harbor de-identification method (45 CFR
// 164.514(b)(2)) wherever they appear, in every resource type (those of
// the Patient compartment, and any other in the document), keeping the
// year of dates readable for patients under 90. Its rules select by the
// shape of the data, at any depth, contained resources and extensions
// included:
//
//   - dates: every string that is a FHIR date, dateTime or instant finer
//     than a year (birthDate, deceasedDateTime, Encounter.period,
//     Condition.onsetDateTime and recordedDate, Claim and
//     ExplanationOfBenefit billablePeriod, created and servicedPeriod,
//     identifier and name periods, meta.lastUpdated, ...); their year
//     goes into a YearExtensionURL extension when the patient is under 90
//     (see SafeHarborRules). For patients of 90 or more, or whose age the
//     document does not tell, dates that are only a year are encrypted
//     too and no year is written. A value that is not a FHIR date where
//     FHIR has one ("birthDate": "03/12/1980", a period's "start":
//     "1980-03-12 10:00", a number) is encrypted whole, with no year;
//   - names: text, family, given, prefix and suffix of every HumanName
//     (an object-valued name, contact.name, value[x] of type HumanName),
//     and the relative's name FamilyMemberHistory.name, a string.
//     A primitive where FHIR has a HumanName, ContactPoint, Identifier
//     or Attachment ("name": "..." in a Patient, RelatedPerson,
//     Practitioner, Person or contact; "telecom": ["..."]) is encrypted
//     whole;
//   - addresses: text, line, city, district and postalCode of every
//     Address (address, birthplace and other valueAddress), the latitude
//     and longitude of the geolocation extension, Location.position, and
//     string-valued address elements (an electronic address). State,
//     country, use and type stay readable: Safe Harbor allows the state;
//   - telecom: the value of every ContactPoint (phone, fax, email, URL);
//   - the value[x] of every extension of a HumanName, Address (but the
//     geolocation extension, which has its own rule), ContactPoint or
//     Identifier, whole, whatever its type: HL7's iso21090-TEL-address
//     writes the phone number as a valueUrl;
//   - identifiers: the value and type.text of every Identifier
//     (identifier, and members whose name ends in Identifier), and the
//     identifying strings subscriberId, serialNumber, lotNumber, uid,
//     preAuthRef, businessArrangement, and udiCarrier whole; and search
//     parameters, which name the patient: a reference or url with a query
//     (a conditional reference "Patient?identifier=...|<SSN>", a Bundle
//     request's url, a Bundle link) and a request's ifNoneExist, whole,
//     but those of provider types (Organization, Practitioner,
//     PractitionerRole, Location, HealthcareService, Endpoint);
//   - reference-displays: the display of every reference (an object with a
//     display but neither a code nor a system, which keeps
//     Coding.display readable): the patient's, a relative's or an
//     employer's name (contact.organization), the managing organization
//     and the provider, whose name tells where the patient lives;
//   - attachments: every data string (Attachment.data, Binary.data: photos,
//     scanned documents, clinical notes in base64), and the url, title and
//     hash of attachments (photo, content.attachment, presentedForm,
//     Media.content, valueAttachment);
//   - narrative: every div (text.div repeats names, addresses, MRNs);
//   - free-text: notes and comments (note, the Annotation, whole;
//     comment, description, patientInstruction, DiagnosticReport.conclusion,
//     ClinicalImpression.summary, the disposition of claim responses,
//     OperationOutcome.issue.diagnostics), every string-typed choice
//     element (valueString, abatementString, contentString, valueMarkdown:
//     the mother's maiden name, survey answers such as an address), and
//     the text of every object that has no coding (Dosage.text,
//     CodeableConcept.text typed in by hand);
//   - ages: every value[x] of type Age (onsetAge, abatementAge, ageAge),
//     whole;
//   - network: AuditEvent.agent.network (IP addresses and host names),
//     whole.
//
// In an AuditEvent, whose agent or entity may be the patient, the names
// of agents and entities (names), agent.altId and entity.query (the
// search parameters, in base64) (identifiers) are encrypted too.
//
// A primitive's extensions (FHIR JSON's _name member) travel with it:
// where a rule selects an element by its name and place (family, given,
// line, postalCode, a ContactPoint's or Identifier's value, display, a
// date element), its _name member is encrypted whole, or item by item
// for an array (_given), even when the value is absent or has fewer
// items: an extension there (humanname-own-name, rendered-value) may
// spell the identifier.
//
// On top of the rules, its paths encrypt Device.url, Coverage.class.value
// and .name, and Coverage.dependent.
//
// What it leaves readable, by design: codes and their displays, values
// and units, statuses, gender, race and ethnicity codes, marital status,
// the state and country of addresses, the use and system of telecom and
// identifiers, the years of dates (patients under 90), and, as the
// residual that binding needs, resource ids, references and Bundle
// fullUrls (see the package documentation, "Safe Harbor").
func SafeHarbor() *Profile {
	return &Profile{
		Name: "safe-harbor",
		Resources: map[string][]string{
			"Device":   {"url"},
			"Coverage": {"class.value", "class.name", "dependent"},
		},
		SafeHarbor: &SafeHarborRules{Years: true},
	}
}

// ProfileByName returns the built-in profile called name: "us-core"
// (USCore, the default), "us-core-patient" (USCorePatient),
// "patient-references" (PatientReferences) or "safe-harbor" (SafeHarbor).
// An unknown name fails with ErrUnknownProfile.
func ProfileByName(name string) (*Profile, error) {
	for _, f := range []func() *Profile{USCore, USCorePatient, PatientReferences, SafeHarbor} {
		if p := f(); p.Name == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w: %q (built-in: %s)", ErrUnknownProfile, name, strings.Join(BuiltinProfileNames(), ", "))
}

// BuiltinProfileNames returns the names ProfileByName knows.
func BuiltinProfileNames() []string {
	return []string{"us-core", "us-core-patient", "patient-references", "safe-harbor"}
}

// harbor is SafeHarborRules compiled.
type harbor struct {
	years    bool
	asOf     civilDate // zero: the day of each call
	patients map[string]PatientDates
	off      []string
}

func (r *SafeHarborRules) compile() (*harbor, error) {
	h := &harbor{years: r.Years, patients: maps.Clone(r.Patients), off: slices.Clone(r.off)}
	if r.AsOf != "" {
		d, ok := parseCivil(r.AsOf)
		if !ok || len(r.AsOf) != len("2006-01-02") {
			return nil, fmt.Errorf("%w: safeHarbor.asOf is not a date (YYYY-MM-DD)", ErrInvalidProfile)
		}
		h.asOf = d
	}
	return h, nil
}

func (h *harbor) on(rule string) bool { return !slices.Contains(h.off, rule) }

// civilDate is a day of the Gregorian calendar.
type civilDate struct{ y, m, d int }

func (c civilDate) isZero() bool { return c.y == 0 }

// yearsTo returns the whole years from c to end.
func (c civilDate) yearsTo(end civilDate) int {
	n := end.y - c.y
	if end.m < c.m || end.m == c.m && end.d < c.d {
		n--
	}
	return n
}

func (c civilDate) after(o civilDate) bool {
	return c.y > o.y || c.y == o.y && (c.m > o.m || c.m == o.m && c.d > o.d)
}

// parseCivil reads the date part of a FHIR date, dateTime or instant,
// filling a missing month or day with the earliest one (1): the oldest
// the patient can be.
func parseCivil(s string) (civilDate, bool) {
	y, prec, ok := fhirDate(s)
	if !ok {
		return civilDate{}, false
	}
	c := civilDate{y: y, m: 1, d: 1}
	if prec >= precMonth {
		c.m, _ = strconv.Atoi(s[5:7])
	}
	if prec >= precDay {
		c.d, _ = strconv.Atoi(s[8:10])
	}
	return c, true
}

// Precisions of FHIR dates.
const (
	precYear = iota + 1
	precMonth
	precDay // a day, with or without a time
)

// fhirDate reports whether s is a FHIR date, dateTime or instant
// (YYYY, YYYY-MM, YYYY-MM-DD, or YYYY-MM-DDThh:mm... with anything after
// the T), with its year and precision. It errs on the side of seeing a
// date: what it accepts gets encrypted.
func fhirDate(s string) (year, prec int, ok bool) {
	digits := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		}
		return true
	}
	if len(s) < 4 || !digits(s[:4]) {
		return 0, 0, false
	}
	year, _ = strconv.Atoi(s[:4])
	switch {
	case len(s) == 4:
		return year, precYear, true
	case len(s) < 7 || s[4] != '-' || !digits(s[5:7]) || s[5:7] < "01" || s[5:7] > "12":
		return 0, 0, false
	case len(s) == 7:
		return year, precMonth, true
	case len(s) < 10 || s[7] != '-' || !digits(s[8:10]) || s[8:10] < "01" || s[8:10] > "31":
		return 0, 0, false
	case len(s) == 10 || s[10] == 'T':
		return year, precDay, true
	}
	return 0, 0, false
}

// isDateKey reports whether member k is one that FHIR types as a date,
// dateTime, instant or Period: birthDate, deceasedDateTime, recordedDate,
// occurrenceDateTime, date, issued, start and end (of a Period),
// authored, sent, received, dateTime, dateAsserted, when, whenHandedOver,
// lastOccurrence, onset, creation, Timing.event, ... A
// value there that is not a FHIR date ("03/12/1980", "1980-03-12 10:00",
// a number) is a date all the same, whose year cannot be told: it is
// encrypted whole.
func isDateKey(k string) bool {
	switch k {
	case "date", "start", "end", "issued", "recorded", "authoredOn", "created", "lastUpdated", "lastModified", "timestamp", "period",
		"authored", "sent", "received", "lastOccurrence", "onset", "creation", "event":
		return true
	}
	for _, suffix := range [...]string{"Date", "DateTime", "Instant", "Period"} {
		if strings.HasSuffix(k, suffix) {
			return true
		}
	}
	// dateTime, dateAsserted; when, whenPrepared, whenHandedOver.
	return strings.HasPrefix(k, "date") || strings.HasPrefix(k, "when")
}

// harborWalk is the state of one Safe Harbor selection.
type harborWalk struct {
	w        *work
	h        *harbor
	withhold bool   // the resource's years are withheld: select year-only dates too
	top      int32  // the resource walked
	typ      string // its type
	buf      []byte
}

// Object hints: what kind of FHIR data type an object is, from its name
// and shape.
type hint uint8

const (
	hintNone hint = iota
	hintHumanName
	hintAddress
	hintContactPoint
	hintIdentifier
	hintAttachment
	hintGeolocation
	hintGeoPart
	hintIdentifierType // the type of an Identifier, whose text names the kind of number
	hintDatatypeExt    // an extension of a HumanName, Address, ContactPoint or Identifier
)

// selectHarbor appends to w.sel the nodes the Safe Harbor rules select in
// every resource of the document.
func (w *work) selectHarbor(h *harbor) {
	hw := &harborWalk{w: w, h: h}
	w.years = w.harborYears(h)
	for i := range w.res {
		root := w.rootOf(w.res[i].node)
		hw.withhold = w.encrypting && !w.years[root]
		// A contained resource's own contained member (FHIR forbids it)
		// gets no profile of its own: it is walked as part of it.
		hw.top, hw.typ = w.res[i].node, w.res[i].typ
		hw.object(hw.top, hintNone, root == i)
	}
}

func (hw *harborWalk) add(n int32) {
	if hw.w.t.nodes[n].kind != kindNull {
		hw.w.sel = append(hw.w.sel, n)
	}
}

// object applies the rules to the members of object n, of hint h;
// resource tells that n is a resource, whose contained resources and
// Bundle entries are resources of their own.
func (hw *harborWalk) object(n int32, h hint, resource bool) {
	t := &hw.w.t
	top := n == hw.top
	for m := t.nodes[n].first; m != none; m = t.nodes[m].next {
		hw.buf = t.key(hw.buf[:0], m)
		k := string(hw.buf)
		if top && (k == "resourceType" || k == "id") {
			continue
		}
		if resource {
			switch k {
			case "contained":
				continue
			case "entry":
				if hw.w.isBundle(n) {
					hw.entries(m)
					continue
				}
			}
		}
		hw.member(n, m, k, h)
	}
}

func (w *work) isBundle(n int32) bool { return w.t.textIs(w.t.member(n, "resourceType"), "Bundle") }

// entries walks a Bundle's entries but for their resources.
func (hw *harborWalk) entries(m int32) {
	t := &hw.w.t
	if t.nodes[m].kind != kindArray {
		return
	}
	for e := t.nodes[m].first; e != none; e = t.nodes[e].next {
		if t.nodes[e].kind != kindObject {
			continue
		}
		for c := t.nodes[e].first; c != none; c = t.nodes[c].next {
			if t.keyIs(c, "resource") && t.nodes[c].kind == kindObject {
				continue
			}
			hw.buf = t.key(hw.buf[:0], c)
			hw.member(e, c, string(hw.buf), hintNone)
		}
	}
}

// member applies the rules to member m, named k, of object obj of hint h.
// An array member is the same member repeated: each element is seen with
// its name.
func (hw *harborWalk) member(obj, m int32, k string, h hint) {
	t := &hw.w.t
	if hw.ownExtensions(k, h, obj) {
		// The extensions of a primitive the rules select (_family,
		// _given, _value, _birthDate), selected even without the value
		// or beyond its items: FHIR allows both, and an extension
		// (humanname-own-name, rendered-value) may spell the identifier.
		if t.nodes[m].kind == kindArray {
			for e := t.nodes[m].first; e != none; e = t.nodes[e].next {
				hw.add(e)
			}
			return
		}
		hw.add(m)
		return
	}
	if t.nodes[m].kind == kindArray {
		if hw.whole(k, h) {
			for e := t.nodes[m].first; e != none; e = t.nodes[e].next {
				hw.add(e)
			}
			return
		}
		for e := t.nodes[m].first; e != none; e = t.nodes[e].next {
			hw.value(obj, e, k, h)
		}
		return
	}
	if hw.whole(k, h) {
		hw.add(m)
		return
	}
	hw.value(obj, m, k, h)
}

// ownExtensions reports whether member k of object obj, of hint h, is
// the _name member that holds the extensions of a primitive name that
// the rules select by its name and place, or of a date element.
func (hw *harborWalk) ownExtensions(k string, h hint, obj int32) bool {
	name, ok := strings.CutPrefix(k, "_")
	if !ok || name == "" {
		return false
	}
	return hw.leaf(obj, name, h) || hw.whole(name, h) || hw.h.on(ruleDates) && isDateKey(name)
}

// whole reports whether member k of an object of hint h is encrypted
// whole, whatever it holds.
func (hw *harborWalk) whole(k string, h hint) bool {
	on := hw.h.on
	switch {
	case on(ruleFreeText) && k == "note":
		return true
	case on(ruleAges) && isChoiceOf(k, "Age"):
		return true
	case on(ruleNetwork) && k == "network":
		return true
	case on(ruleIdentifiers) && k == "udiCarrier":
		return true
	case on(ruleAddresses) && k == "position":
		return true
	case h == hintGeoPart && on(ruleAddresses) && strings.HasPrefix(k, "value"):
		return true
	case h == hintDatatypeExt && strings.HasPrefix(k, "value"):
		return true // iso21090-TEL-address: the phone number as a valueUrl
	}
	return false
}

// value applies the rules to value n, of member k of object obj (of hint
// h), and walks into it. A primitive is selected by its name and place
// whatever its JSON type, so that a number where FHIR has a string (a
// postalCode written 1970) is not left out.
func (hw *harborWalk) value(obj, n int32, k string, h hint) {
	t := &hw.w.t
	on := hw.h.on
	switch t.nodes[n].kind {
	case kindNull:
	case kindObject:
		hw.object(n, hw.hintOf(n, k, h), false)
	case kindArray:
		for e := t.nodes[n].first; e != none; e = t.nodes[e].next {
			hw.value(obj, e, k, h)
		}
	default:
		if hw.leaf(obj, k, h) || hw.h.on(ruleIdentifiers) && hw.isQuery(obj, n, k) {
			hw.add(n)
			return
		}
		if !on(ruleDates) {
			return
		}
		switch t.nodes[n].kind {
		case kindString:
			hw.buf = t.text(hw.buf[:0], n)
			if _, prec, ok := fhirDate(string(hw.buf)); ok && (prec > precYear || hw.withhold) || !ok && isDateKey(k) {
				hw.add(n)
			}
		case kindNumber:
			if isDateKey(k) {
				hw.add(n) // 19800312
			}
		}
	}
}

// leaf reports whether a primitive in member k of object obj, of hint h,
// is one that the rules select by its name and place (dates aside).
func (hw *harborWalk) leaf(obj int32, k string, h hint) bool {
	t := &hw.w.t
	on := hw.h.on
	return h == hintHumanName && on(ruleNames) && (k == "text" || k == "family" || k == "given" || k == "prefix" || k == "suffix") ||
		h == hintAddress && on(ruleAddresses) && (k == "text" || k == "line" || k == "city" || k == "district" || k == "postalCode") ||
		h == hintContactPoint && on(ruleTelecom) && k == "value" ||
		h == hintIdentifier && on(ruleIdentifiers) && k == "value" ||
		h == hintAttachment && on(ruleAttachments) && (k == "url" || k == "title" || k == "hash") ||
		on(ruleAttachments) && k == "data" ||
		on(ruleNarrative) && k == "div" ||
		on(ruleAddresses) && isAddressKey(k) || // an electronic address
		on(ruleIdentifiers) && isIdentifierString(k) ||
		on(ruleReferences) && k == "display" && t.member(obj, "code") == none && t.member(obj, "system") == none ||
		on(ruleFreeText) && isFreeText(k) ||
		on(ruleFreeText) && k == "text" && t.member(obj, "coding") == none && h != hintIdentifierType ||
		on(ruleIdentifiers) && h == hintIdentifierType && k == "text" ||
		hw.heldWhole(obj, k)
}

// isQuery reports whether string n, member k of object obj, holds search
// parameters, which may name the patient ("Patient?identifier=...|<SSN>",
// "birthdate=1980-03-12"): a reference or url with a query (a
// conditional reference, a Bundle request's url, a Bundle link), or a
// Bundle request's ifNoneExist. The queries of provider types
// (isProviderType) stay, as the residual the package documentation
// describes.
func (hw *harborWalk) isQuery(obj, n int32, k string) bool {
	t := &hw.w.t
	if t.nodes[n].kind != kindString || k != "reference" && k != "url" && k != "ifNoneExist" {
		return false
	}
	var path []byte
	if k == "ifNoneExist" {
		// The query of a conditional create, of the type of the request's url.
		if u := t.member(obj, "url"); u != none && t.nodes[u].kind == kindString {
			path, _, _ = bytes.Cut(t.text(hw.buf[:0], u), []byte("?"))
		}
	} else {
		// (Every reference comes here: no allocation.)
		hw.buf = t.text(hw.buf[:0], n)
		var ok bool
		if path, _, ok = bytes.Cut(hw.buf, []byte("?")); !ok {
			return false
		}
	}
	return !isProviderType(string(path[bytes.LastIndexByte(path, '/')+1:]))
}

// isProviderType reports whether resources of type typ describe
// providers, whose conditional references ("Organization?identifier=...")
// name no patient.
func isProviderType(typ string) bool {
	switch typ {
	case "Organization", "Practitioner", "PractitionerRole", "Location", "HealthcareService", "Endpoint":
		return true
	}
	return false
}

// heldWhole reports whether a primitive (or an item of an array of them)
// in member k of object obj stands where FHIR has a HumanName,
// ContactPoint, Identifier or Attachment, whose leaves a rule selects:
// "name": "...", "telecom": ["..."]. Its text may be the identifier
// itself, so it is selected whole. A string name is a HumanName only
// in a contact or in the resource types whose name is one; elsewhere it
// is another element (Organization.name, Coverage.class.name), which
// stays.
func (hw *harborWalk) heldWhole(obj int32, k string) bool {
	on := hw.h.on
	switch {
	case k == "name":
		return on(ruleNames) && (obj == hw.top && humanNamed(hw.typ) || hw.w.memberKeyIs(obj, "contact") ||
			hw.typ == "AuditEvent" && (hw.w.memberKeyIs(obj, "agent") || hw.w.memberKeyIs(obj, "entity")))
	case k == "altId" || k == "query":
		// AuditEvent.agent.altId (the user's identity) and entity.query
		// (the search parameters, in base64).
		return on(ruleIdentifiers) && hw.typ == "AuditEvent"
	case strings.HasSuffix(k, "HumanName"):
		return on(ruleNames)
	case k == "telecom" || strings.HasSuffix(k, "ContactPoint"):
		return on(ruleTelecom)
	case k == "identifier":
		return on(ruleIdentifiers)
	case k == "photo" || k == "attachment" || k == "presentedForm" || strings.HasSuffix(k, "Attachment"):
		return on(ruleAttachments)
	}
	return false
}

// memberKeyIs reports whether object n is member k of its parent, or an
// item of the array member k.
func (w *work) memberKeyIs(n int32, k string) bool {
	t := &w.t
	m := t.nodes[n].parent
	if m == none {
		return false
	}
	if t.nodes[m].kind != kindArray {
		m = n
	}
	return t.nodes[m].parent != none && t.nodes[t.nodes[m].parent].kind == kindObject && t.keyIs(m, k)
}

// humanNamed reports whether the name of resources of type typ is a
// person's: a HumanName, or the string FamilyMemberHistory.name (the
// relative's name).
func humanNamed(typ string) bool {
	switch typ {
	case "Patient", "RelatedPerson", "Practitioner", "Person", "FamilyMemberHistory":
		return true
	}
	return false
}

// hintOf returns the hint of object n, member k of an object of hint
// parent.
func (hw *harborWalk) hintOf(n int32, k string, parent hint) hint {
	t := &hw.w.t
	switch {
	case parent == hintIdentifier && k == "type":
		return hintIdentifierType
	case parent == hintGeolocation && k == "extension":
		return hintGeoPart
	case k == "extension" && t.textIs(t.member(n, "url"), urlGeolocation):
		return hintGeolocation
	case k == "extension" && (parent == hintHumanName || parent == hintAddress || parent == hintContactPoint || parent == hintIdentifier || parent == hintDatatypeExt):
		return hintDatatypeExt
	case k == "name" || strings.HasSuffix(k, "HumanName"):
		return hintHumanName
	case isAddressKey(k):
		return hintAddress
	case k == "telecom" || strings.HasSuffix(k, "ContactPoint"):
		return hintContactPoint
	case k == "identifier" || strings.HasSuffix(k, "Identifier"):
		return hintIdentifier
	case k == "photo" || k == "attachment" || k == "presentedForm" || strings.HasSuffix(k, "Attachment"):
		return hintAttachment
	}
	for _, a := range [...]string{"contentType", "data", "hash", "size", "creation"} {
		if k != "extension" && t.member(n, a) != none {
			return hintAttachment
		}
	}
	return hintNone
}

func isAddressKey(k string) bool { return k == "address" || strings.HasSuffix(k, "Address") }

// isIdentifierString reports whether member k holds an identifying
// number as a string.
func isIdentifierString(k string) bool {
	switch k {
	case "subscriberId", "serialNumber", "lotNumber", "uid", "preAuthRef", "businessArrangement":
		return true
	}
	return strings.HasSuffix(k, "Identifier")
}

// isFreeText reports whether member k holds free text.
func isFreeText(k string) bool {
	switch k {
	case "comment", "description", "patientInstruction", "conclusion", "summary", "disposition", "diagnostics":
		return true
	}
	return isChoiceOf(k, "String") || isChoiceOf(k, "Markdown")
}

// isChoiceOf reports whether k is a choice element of type typ: a
// lower-case name followed by typ (valueString, onsetAge).
func isChoiceOf(k, typ string) bool {
	return len(k) > len(typ) && strings.HasSuffix(k, typ) && k[0] >= 'a' && k[0] <= 'z'
}

// harborYears tells, for each resource of the document (by index in
// w.res), whether the years of its dates may stay readable: the rules
// keep years, the resource's patient is in the document (or in
// SafeHarborRules.Patients) and under SafeHarborAge, and so is every
// person the resource holds a birth date of. Every copy of a Patient in
// the document must be under the age: an older version of the patient
// next to a younger one withholds the years. A resource with a birth date
// of its own (the birthDate of a Patient or RelatedPerson, the born[x] of
// a FamilyMemberHistory), and its contained resources', must be under
// the age too, whoever its patient is. Contained resources follow their
// container (see selectHarbor).
func (w *work) harborYears(h *harbor) []bool {
	years := make([]bool, len(w.res))
	if !h.years || !w.encrypting {
		return years
	}
	asOf := h.asOf
	if asOf.isZero() {
		now := time.Now().UTC()
		asOf = civilDate{now.Year(), int(now.Month()), now.Day()}
	}
	t := &w.t
	inDoc := map[string]bool{} // Patient id: every copy is under the age
	for _, r := range w.res {
		if r.typ != "Patient" || !r.hasID {
			continue
		}
		var d PatientDates
		if b := t.member(r.node, "birthDate"); b != none && t.nodes[b].kind == kindString {
			d.BirthDate = string(t.text(nil, b))
		}
		if dd := t.member(r.node, "deceasedDateTime"); dd != none && t.nodes[dd].kind == kindString {
			d.DeceasedDateTime = string(t.text(nil, dd))
		}
		ok, seen := inDoc[r.id]
		inDoc[r.id] = d.under(asOf) && (ok || !seen)
	}
	under := func(id string) bool {
		if ok, seen := inDoc[id]; seen {
			return ok
		}
		d, ok := h.patients[id]
		return ok && d.under(asOf)
	}
	for i := range w.res {
		r := &w.res[i]
		if r.typ == "Patient" {
			years[i] = r.hasID && under(r.id)
			continue
		}
		for _, k := range [...]string{"subject", "patient", "beneficiary", "for"} {
			ref := t.member(t.member(r.node, k), "reference")
			if ref != none && t.nodes[ref].kind == kindString {
				years[i] = under(patientID(string(t.text(nil, ref))))
				break
			}
		}
	}
	for i := range w.res {
		if !w.ownBirthUnder(w.res[i].node, asOf) {
			years[i] = false
			years[w.rootOf(w.res[i].node)] = false
		}
	}
	return years
}

// ownBirthUnder reports whether resource node r holds no birth date of
// its own (birthDate, born[x]), or one of a person under SafeHarborAge on
// asOf. A birth date that is not a date string (a bornPeriod, a
// bornString "about 1920") is not known to be under.
func (w *work) ownBirthUnder(r int32, asOf civilDate) bool {
	t := &w.t
	for c := t.nodes[r].first; c != none; c = t.nodes[c].next {
		if !t.keyIs(c, "birthDate") && !t.isChoice(c, "born") {
			continue
		}
		if t.nodes[c].kind == kindNull {
			continue
		}
		if t.nodes[c].kind != kindString || !(PatientDates{BirthDate: string(t.text(nil, c))}).under(asOf) {
			return false
		}
	}
	return true
}

// under reports whether the patient is known to be under SafeHarborAge on
// asOf: a birth date, and a date of death if any, that parse.
func (d PatientDates) under(asOf civilDate) bool {
	b, ok := parseCivil(d.BirthDate)
	if !ok {
		return false
	}
	end := asOf
	if d.DeceasedDateTime != "" {
		dd, ok := parseCivil(d.DeceasedDateTime)
		if !ok {
			return false
		}
		if dd.after(end) {
			end = dd
		}
	}
	return b.yearsTo(end) < SafeHarborAge
}

// addYears checks that doc holds no year extension (ErrEncryptedInput)
// and, with Safe Harbor years on, adds the edits that insert one after
// each selected date that is finer than a year, a member of an object
// (not an array element) without extensions of its own, in a resource
// whose years may stay readable.
func (w *work) addYears() error {
	t := &w.t
	for i := range t.nodes {
		if t.isYearURL(int32(i)) {
			return &ElementError{Path: w.docPath(int32(i)), Err: ErrEncryptedInput}
		}
	}
	h := w.e.profile.harbor
	if h == nil || !h.years {
		return nil
	}
	years := w.years // computed by selectHarbor, once per document
	var buf []byte
	for _, n := range w.sel {
		nd := &t.nodes[n]
		if nd.kind != kindString || nd.parent == none || t.nodes[nd.parent].kind != kindObject || w.companion(n) != none {
			continue
		}
		buf = t.text(buf[:0], n)
		y, prec, ok := fhirDate(string(buf))
		if !ok || prec == precYear || !years[w.rootOf(n)] {
			continue
		}
		from := int32(len(w.ext))
		w.ext = append(w.ext, `,"_`...)
		w.ext = append(w.ext, t.src[nd.keyStart:nd.keyEnd]...)
		w.ext = append(w.ext, `":{"extension":[{"url":"`+YearExtensionURL+`","valueInteger":`...)
		w.ext = strconv.AppendInt(w.ext, int64(y), 10)
		w.ext = append(w.ext, "}]}"...)
		w.edits = append(w.edits, edit{start: nd.end, end: nd.end, kind: editInsert, from: from, to: int32(len(w.ext))})
	}
	return nil
}

// isYearURL reports whether node n is the url member of a year extension.
func (t *tree) isYearURL(n int32) bool {
	nd := &t.nodes[n]
	return nd.kind == kindString && nd.parent != none && t.nodes[nd.parent].kind == kindObject &&
		t.keyIs(n, "url") && t.textIs(n, YearExtensionURL)
}

// findYears, on decryption, finds the year extensions that Encrypt
// wrote (see addYears) and maps each member to the encrypted date before
// it, in w.yearExts, for removeYears. Every url of a year extension must
// be in one that is exactly what addYears writes, right after an
// encrypted date: "date":"phicrypt:...","_date":{"extension":[{"url":
// YearExtensionURL,"valueInteger":1968}]}. Any other (a member added, a
// string year, one next to a plaintext element) fails with
// ErrNotEncrypted, unless Config.AllowPlaintext, which leaves it in place.
func (w *work) findYears() error {
	t := &w.t
	var cand []int32 // the _date members around year urls
	for i := range t.nodes {
		u := int32(i)
		if !t.isYearURL(u) {
			continue
		}
		c := int32(none)
		if e := t.nodes[u].parent; t.nodes[e].parent != none {
			if a := t.nodes[e].parent; t.nodes[a].kind == kindArray && t.nodes[a].parent != none {
				c = t.nodes[a].parent
			}
		}
		if c == none || t.nodes[c].parent == none || t.nodes[t.nodes[c].parent].kind != kindObject {
			if !w.e.allowPlaintext {
				return &ElementError{Path: w.docPath(u), Err: ErrNotEncrypted}
			}
			continue
		}
		cand = append(cand, c)
	}
	if len(cand) == 0 {
		return nil
	}
	if w.yearExts == nil {
		w.yearExts = map[int32]int32{}
	}
	// The member before each candidate, in one pass over their objects.
	prevOf := map[int32]int32{}
	for _, c := range cand {
		prevOf[c] = none
	}
	done := map[int32]bool{}
	for _, c := range cand {
		obj := t.nodes[c].parent
		if done[obj] {
			continue
		}
		done[obj] = true
		prev := int32(none)
		for m := t.nodes[obj].first; m != none; m = t.nodes[m].next {
			if _, ok := prevOf[m]; ok {
				prevOf[m] = prev
			}
			prev = m
		}
	}
	for _, c := range cand {
		if p := prevOf[c]; w.isOwnYear(c, p) {
			w.yearExts[c] = p
		} else if !w.e.allowPlaintext {
			return &ElementError{Path: w.docPath(c), Err: ErrNotEncrypted}
		}
	}
	return nil
}

// isOwnYear reports whether member c, after member date (or none), is
// byte for byte a year extension that addYears inserted after the
// encrypted date.
func (w *work) isOwnYear(c, date int32) bool {
	t := &w.t
	if date == none || !t.hasPrefix(date, envelope.ArmorPrefix) {
		return false
	}
	dn, cn := &t.nodes[date], &t.nodes[c]
	key := t.src[dn.keyStart:dn.keyEnd]
	head := `,"_` + string(key) + `":{"extension":[{"url":"` + YearExtensionURL + `","valueInteger":`
	const tail = "}]}"
	b := t.src[dn.end:cn.end]
	if len(b) < len(head)+1+len(tail) || string(b[:len(head)]) != head || string(b[len(b)-len(tail):]) != tail {
		return false
	}
	year := b[len(head) : len(b)-len(tail)]
	if len(year) > 4 || year[0] == '0' && len(year) > 1 {
		return false
	}
	for _, d := range year {
		if !isDigit(d) {
			return false
		}
	}
	return true
}

// removeYears adds the edits that delete the year extensions findYears
// found, with the separator Encrypt inserted before each.
func (w *work) removeYears() {
	t := &w.t
	for c, date := range w.yearExts {
		w.edits = append(w.edits, edit{start: t.nodes[date].end, end: t.nodes[c].end, kind: editDelete})
	}
}

// inOwnExtension reports whether node n is, or is inside, an extension
// that Encrypt adds and Decrypt removes: a year extension findYears
// found, or a blind index extension of the shape addIndexes writes in a
// resource's extension array. A profile that selects them (a path
// Patient.extension, US Core's _birthDate) finds them in clear.
func (w *work) inOwnExtension(n int32) bool {
	t := &w.t
	for m := n; m != none; m = t.nodes[m].parent {
		if _, ok := w.yearExts[m]; ok {
			return true
		}
		a := t.nodes[m].parent
		if a == none || t.nodes[a].kind != kindArray || t.nodes[a].parent == none || !t.keyIs(a, "extension") {
			continue
		}
		if w.isRootNode(t.nodes[a].parent) && t.isIndexShape(m) {
			return true
		}
	}
	return false
}

// isRootNode reports whether node n is a binding root resource.
func (w *work) isRootNode(n int32) bool {
	_, ok := slices.BinarySearchFunc(w.roots, n, func(ri int32, n int32) int { return int(w.res[ri].node - n) })
	return ok
}

// isIndexShape reports whether node e is a blind index extension as
// addIndexes writes it: {"url":IndexExtensionURL,"extension":[{"url":
// name,"valueBase64Binary":value}, ...]}, strings where strings are.
func (t *tree) isIndexShape(e int32) bool {
	if t.nodes[e].kind != kindObject {
		return false
	}
	url := t.nodes[e].first
	if url == none || !t.keyIs(url, "url") || !t.textIs(url, IndexExtensionURL) {
		return false
	}
	subs := t.nodes[url].next
	if subs == none || t.nodes[subs].next != none || !t.keyIs(subs, "extension") || t.nodes[subs].kind != kindArray || t.nodes[subs].first == none {
		return false
	}
	for s := t.nodes[subs].first; s != none; s = t.nodes[s].next {
		if t.nodes[s].kind != kindObject {
			return false
		}
		name := t.nodes[s].first
		if name == none || !t.keyIs(name, "url") || t.nodes[name].kind != kindString {
			return false
		}
		v := t.nodes[name].next
		if v == none || t.nodes[v].next != none || !t.keyIs(v, "valueBase64Binary") || t.nodes[v].kind != kindString {
			return false
		}
	}
	return true
}
