package fhir_test

import (
	"encoding/json"
	"regexp"
	"strings"
)

// This file is an independent statement of what HIPAA's Safe Harbor
// method (45 CFR 164.514(b)(2)) requires of an encrypted FHIR document,
// written over encoding/json values rather than with the package's rules.
// harborLeaks walks every element of every resource and reports each
// value that is left in plaintext although it is
//
//   - a date, dateTime or instant finer than a year, under any name;
//   - a value of one of the 18 identifier kinds: names, addresses smaller
//     than a state (and geolocations), phone and fax numbers, email
//     addresses, SSNs, MRNs and other identifier values, health plan and
//     account numbers, device identifiers and serial numbers, URLs, IP
//     addresses, photos and other attachments, ages (as the Age type);
//   - free text, which may hold any of them: narrative, notes, comments,
//     descriptions, string answers, texts typed in without a code;
//
// by the element's name and the shape around it, and by the value's own
// shape wherever it is (an SSN, email address, phone number, IP address
// or date anywhere is a leak). Resource ids, references and fullUrls are
// the documented residual and are not reported.

var (
	leakDate  = regexp.MustCompile(`^\d{4}-\d{2}(-\d{2}(T.*)?)?$`)
	leakYear  = regexp.MustCompile(`^\d{4}$`)
	leakSSN   = regexp.MustCompile(`\b\d{3}-\d{2}-\d{4}\b`)
	leakEmail = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`)
	leakPhone = regexp.MustCompile(`\(\d{3}\) ?\d{3}-\d{4}|\b555-\d{4}\b|\+\d[\d ]{8,}\d`)
	leakIPv4  = regexp.MustCompile(`(^|[^.\d])\d{1,3}(\.\d{1,3}){3}([^.\d]|$)`)
)

// Element names whose string values are identifiers wherever they are.
var leakKeys = map[string]string{
	"family": "name", "given": "name", "prefix": "name", "suffix": "name",
	"line": "address", "city": "address", "district": "address", "postalCode": "address",
	"subscriberId": "plan number", "dependent": "plan number", "preAuthRef": "account number", "businessArrangement": "account number",
	"serialNumber": "device serial", "lotNumber": "device serial", "distinctIdentifier": "device id", "deviceIdentifier": "device id",
	"carrierHRF": "device id", "carrierAIDC": "device id", "uid": "unique id",
	"data": "attachment", "div": "narrative",
	"comment": "note", "description": "note", "patientInstruction": "note",
}

type harborLeak struct{ path, kind, value string }

type leakWalker struct {
	out      []harborLeak
	years    bool // report year-only dates too (patients of 90 or more)
	resource string
}

// harborLeaks returns the plaintext identifiers of an encrypted document.
// With years, a date that is only a year is a leak too.
func harborLeaks(doc any, years bool) []harborLeak {
	w := &leakWalker{years: years}
	w.walk(doc, "", "", nil, "", "")
	return w.out
}

func (w *leakWalker) leak(path, kind, v string) {
	w.out = append(w.out, harborLeak{path, kind, v})
}

// walk visits v, member key of object parent. ctx is the kind of data v
// holds (one of the ctx constants, or ""), outer that of parent: a
// primitive is judged by its parent's, unless it is itself a whole note,
// age or geolocation.
func (w *leakWalker) walk(v any, path, key string, parent obj, ctx, outer string) {
	if ctx != ctxWhole && ctx != ctxGeolocation {
		switch v.(type) {
		case string, json.Number:
			ctx = outer
		}
	}
	switch v := v.(type) {
	case obj:
		saved := w.resource
		if rt, ok := v["resourceType"].(string); ok {
			w.resource = rt
		}
		for k, x := range v {
			w.walk(x, join(path, k), k, v, w.context(ctx, key, k, x), ctx)
		}
		w.resource = saved
	case []any:
		for i, x := range v {
			w.walk(x, idx(path, i), key, parent, ctx, outer)
		}
	case json.Number:
		if ctx == ctxWhole || ctx == ctxGeolocation {
			w.leak(path, ctx, v.String())
		}
	case string:
		w.str(v, path, key, parent, ctx)
	}
}

// Contexts: what an enclosing element holds.
const (
	ctxWhole       = "whole"       // a note, an age, a network address, a UDI: every value beneath
	ctxGeolocation = "geolocation" // numbers beneath
	ctxIdentifier  = "identifier"  // value and type.text
	ctxAttachment  = "attachment"  // url, title, hash (data everywhere)
	ctxPlan        = "plan"        // Coverage.class: value and name
)

// context returns the context of member k (value x) of object o, itself
// member key of an object with context ctx.
func (w *leakWalker) context(ctx, key, k string, x any) string {
	if ctx == ctxWhole || ctx == ctxGeolocation {
		return ctx
	}
	switch {
	case k == "note", k == "network", k == "udiCarrier",
		strings.HasSuffix(k, "Age") && k[0] >= 'a' && k[0] <= 'z':
		return ctxWhole
	case k == "position", k == "extension" && key == "address":
		return ctxGeolocation
	case k == "identifier", strings.HasSuffix(k, "Identifier"):
		return ctxIdentifier
	case k == "photo", k == "attachment", k == "presentedForm", strings.HasSuffix(k, "Attachment"):
		return ctxAttachment
	case w.resource == "Coverage" && k == "class":
		return ctxPlan
	}
	if m, ok := x.(obj); ok && k != "extension" {
		if _, ok := m["contentType"]; ok {
			return ctxAttachment
		}
	}
	if ctx == ctxIdentifier || ctx == ctxGeolocation {
		return ctx // identifier.type.text, the parts of a geolocation
	}
	return ""
}

func (w *leakWalker) str(v, path, key string, parent obj, ctx string) {
	if strings.HasPrefix(v, "phicrypt:") {
		return
	}
	// The residual: what binds ciphertexts and links resources.
	if key == "id" || key == "reference" || key == "fullUrl" || key == "resourceType" {
		return
	}
	if parent != nil {
		if _, isRequest := parent["method"]; isRequest && key == "url" {
			return // Bundle.entry.request.url: a relative URL of the server
		}
	}
	_, hasCode := parent["code"]
	_, hasSystem := parent["system"]
	_, hasCoding := parent["coding"]
	switch {
	case leakDate.MatchString(v):
		w.leak(path, "date", v)
	case w.years && leakYear.MatchString(v):
		w.leak(path, "year of a patient of 90 or more", v)
	case ctx == ctxWhole:
		w.leak(path, ctx, v)
	case leakKeys[key] != "":
		w.leak(path, leakKeys[key], v)
	case ctx == ctxIdentifier && (key == "value" || key == "text"):
		w.leak(path, "identifier", v)
	case ctx == ctxAttachment && (key == "url" || key == "title" || key == "hash"):
		w.leak(path, "attachment", v)
	case ctx == ctxPlan && (key == "value" || key == "name"):
		w.leak(path, "plan number", v)
	case key == "url" && w.resource == "Device" && parent["resourceType"] == "Device":
		w.leak(path, "device URL", v)
	case key == "value" && parent["system"] != nil && isTelecomSystem(parent["system"]):
		w.leak(path, "telecom", v)
	case key == "text" && (parent["family"] != nil || parent["given"] != nil || parent["line"] != nil || parent["city"] != nil):
		w.leak(path, "name or address", v)
	case key == "text" && !hasCoding:
		w.leak(path, "free text", v)
	case key == "display" && !hasCode && !hasSystem:
		w.leak(path, "reference display", v)
	case len(key) > 6 && key[0] >= 'a' && key[0] <= 'z' && (strings.HasSuffix(key, "String") || strings.HasSuffix(key, "Markdown")):
		w.leak(path, "free text", v)
	case key == "system" || key == "code" || key == "url":
		// Code systems, codes (OIDs look like IP addresses) and extension URLs.
	case leakSSN.MatchString(v), leakEmail.MatchString(v), leakPhone.MatchString(v), leakIPv4.MatchString(v):
		w.leak(path, "identifier-shaped value", v)
	}
}

func isTelecomSystem(v any) bool {
	switch v {
	case "phone", "fax", "email", "pager", "url", "sms", "other":
		return true
	}
	return false
}

// harborYears returns the year extensions of a document: location → year.
func harborYears(doc any) map[string]string {
	out := map[string]string{}
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch v := v.(type) {
		case obj:
			if v["url"] == "https://github.com/phicrypt/phicrypt/fhir/StructureDefinition/year" {
				out[path] = v["valueInteger"].(json.Number).String()
			}
			for k, x := range v {
				walk(x, join(path, k))
			}
		case []any:
			for i, x := range v {
				walk(x, idx(path, i))
			}
		}
	}
	walk(doc, "")
	return out
}
