package fhir_test

import (
	"encoding/json"
	"slices"
	"strconv"
)

// This file is an independent statement of what the built-in profile
// (fhir.USCore) encrypts, written as plain Go over encoding/json values
// instead of paths, so that the path engine is checked against it. It
// returns the locations from the document's root ("entry[3].resource.
// name[0].family"), the same form the package's errors use.

type obj = map[string]any

type phiWalker struct {
	locs map[string]bool // PHI locations
}

func phiLocations(doc any) map[string]bool {
	w := &phiWalker{locs: map[string]bool{}}
	if r, ok := doc.(obj); ok {
		w.resource(r, "")
	}
	return w.locs
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func idx(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// add marks value v at path (in parent object p, under key k) as PHI,
// with its primitive extension _k (or _k[i]).
func (w *phiWalker) add(p obj, k, path string, v any) {
	switch v := v.(type) {
	case nil:
	case []any:
		for i, e := range v {
			if e == nil {
				continue
			}
			w.locs[idx(path, i)] = true
			if c, ok := p["_"+k].([]any); ok && i < len(c) && c[i] != nil {
				w.locs[idx(pathOfSibling(path, "_"+k), i)] = true
			}
		}
	default:
		w.locs[path] = true
		if c, ok := p["_"+k]; ok && c != nil {
			if _, isObj := v.(obj); !isObj {
				w.locs[pathOfSibling(path, "_"+k)] = true
			}
		}
	}
}

// pathOfSibling replaces the last member name of path by name.
func pathOfSibling(path, name string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '.' {
			return path[:i+1] + name
		}
	}
	return name
}

// leaf marks member k of every object in v (an object or an array of
// objects at path).
func (w *phiWalker) leaf(v any, path, k string) {
	each(v, path, func(o obj, p string) {
		if x, ok := o[k]; ok {
			w.add(o, k, join(p, k), x)
		}
	})
}

// each calls f for v, or each element of v, that is an object.
func each(v any, path string, f func(obj, string)) {
	switch v := v.(type) {
	case obj:
		f(v, path)
	case []any:
		for i, e := range v {
			if o, ok := e.(obj); ok {
				f(o, idx(path, i))
			}
		}
	}
}

// choice marks every member of o named base + a type (value[x]).
func (w *phiWalker) choice(o obj, path, base string) {
	for k, v := range o {
		if len(k) > len(base) && k[:len(base)] == base && k[len(base)] >= 'A' && k[len(base)] <= 'Z' {
			w.add(o, k, join(path, k), v)
		}
	}
}

// extensions calls f for each extension of o with that url.
func extensions(o obj, path, url string, f func(obj, string)) {
	each(o["extension"], join(path, "extension"), func(e obj, p string) {
		if e["url"] == url {
			f(e, p)
		}
	})
}

// hasCode reports whether o.code.coding has code c.
func hasCode(o obj, c string) bool {
	found := false
	if code, ok := o["code"].(obj); ok {
		each(code["coding"], "", func(cd obj, _ string) {
			if cd["code"] == c {
				found = true
			}
		})
	}
	return found
}

var displayed = []string{
	"subject", "patient", "beneficiary", "subscriber", "policyHolder", "requester",
	"performer", "asserter", "recorder", "author", "informationSource",
	"for", "sender", "recipient", "source", "expressedBy",
}

func (w *phiWalker) resource(r obj, path string) {
	typ, _ := r["resourceType"].(string)

	// Every resource: narrative and the displays of references to people.
	if t, ok := r["text"].(obj); ok {
		w.leaf(t, join(path, "text"), "div")
	}
	for _, k := range displayed {
		w.leaf(r[k], join(path, k), "display")
	}
	for _, pair := range [][2]string{{"performer", "actor"}, {"participant", "individual"}, {"participant", "member"},
		{"participant", "actor"}, {"agent", "who"}, {"agent", "onBehalfOf"}, {"payee", "party"}} {
		each(r[pair[0]], join(path, pair[0]), func(o obj, p string) {
			w.leaf(o[pair[1]], join(p, pair[1]), "display")
		})
	}

	switch typ {
	case "Patient", "RelatedPerson":
		w.person(r, path)
	case "DocumentReference":
		each(r["content"], join(path, "content"), func(c obj, p string) { w.leaf(c["attachment"], join(p, "attachment"), "data") })
	case "DiagnosticReport":
		w.leaf(r["presentedForm"], join(path, "presentedForm"), "data")
	case "Media":
		w.leaf(r["content"], join(path, "content"), "data")
	case "Binary":
		w.leaf(r, path, "data")
	case "Observation":
		if hasCode(r, "56799-0") {
			w.choice(r, path, "value")
		}
		each(r["component"], join(path, "component"), func(c obj, p string) {
			if hasCode(c, "56799-0") {
				w.choice(c, p, "value")
			}
		})
	case "Encounter":
		w.leaf(r["identifier"], join(path, "identifier"), "value")
	case "Coverage":
		w.leaf(r["identifier"], join(path, "identifier"), "value")
		w.leaf(r, path, "subscriberId")
	case "Provenance":
		w.leaf(r["target"], join(path, "target"), "display")
	}

	each(r["contained"], join(path, "contained"), func(c obj, p string) { w.resource(c, p) })
	if typ == "Bundle" {
		each(r["entry"], join(path, "entry"), func(e obj, p string) {
			if res, ok := e["resource"].(obj); ok {
				w.resource(res, join(p, "resource"))
			}
		})
	}
}

func (w *phiWalker) person(r obj, path string) {
	w.leaf(r["identifier"], join(path, "identifier"), "value")
	for _, k := range []string{"text", "family", "given", "prefix", "suffix", "period"} {
		w.leaf(r["name"], join(path, "name"), k)
	}
	for _, k := range []string{"value", "period"} {
		w.leaf(r["telecom"], join(path, "telecom"), k)
	}
	w.leaf(r, path, "birthDate")
	for _, k := range []string{"text", "line", "city", "district", "state", "postalCode", "country", "period"} {
		w.leaf(r["address"], join(path, "address"), k)
	}
	each(r["address"], join(path, "address"), func(a obj, p string) {
		extensions(a, p, "http://hl7.org/fhir/StructureDefinition/geolocation", func(g obj, gp string) {
			for _, part := range []string{"latitude", "longitude"} {
				extensions(g, gp, part, func(x obj, xp string) { w.choice(x, xp, "value") })
			}
		})
	})
	if photo, ok := r["photo"].([]any); ok {
		for i, p := range photo {
			if p != nil {
				w.locs[idx(join(path, "photo"), i)] = true
			}
		}
	}
	if r["resourceType"] != "Patient" {
		return
	}
	w.choice(r, path, "deceased")
	for _, url := range []string{"http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
		"http://hl7.org/fhir/StructureDefinition/patient-birthPlace"} {
		extensions(r, path, url, func(x obj, xp string) { w.choice(x, xp, "value") })
	}
	each(r["contact"], join(path, "contact"), func(c obj, p string) {
		for _, k := range []string{"name", "telecom", "address"} {
			switch v := c[k].(type) {
			case obj:
				w.locs[join(p, k)] = true
			case []any:
				for i, e := range v {
					if e != nil {
						w.locs[idx(join(p, k), i)] = true
					}
				}
			}
		}
	})
	each(r["link"], join(path, "link"), func(l obj, p string) { w.leaf(l["other"], join(p, "other"), "display") })
}

// phiValues returns the texts of every string and number at or under the
// locations: what must not show in an encrypted document.
func phiValues(doc any, locs map[string]bool) []string {
	var out []string
	var walk func(v any, path string, in bool)
	walk = func(v any, path string, in bool) {
		in = in || locs[path]
		switch v := v.(type) {
		case obj:
			for k, x := range v {
				walk(x, join(path, k), in)
			}
		case []any:
			for i, x := range v {
				walk(x, idx(path, i), in)
			}
		case string:
			if in && !slices.Contains(out, v) {
				out = append(out, v)
			}
		case json.Number:
			if in && !slices.Contains(out, v.String()) {
				out = append(out, v.String())
			}
		}
	}
	walk(doc, "", false)
	return out
}
