package fhir

import (
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/phicrypt/phicrypt/internal/strictjson"
)

// AnyResource is the key of Profile.Resources whose paths apply to every
// resource type.
const AnyResource = "*"

// Profile lists the elements to encrypt, per resource type. A path that
// ends at a primitive (a string, number or boolean) encrypts that value; a
// path that ends at an object (an Address, a HumanName, an Attachment)
// encrypts the whole object as one value. Arrays on the way are traversed,
// so "name.given" encrypts every given name of every name.
//
// Profiles are plain data: build one in Go, or load one from JSON with
// ParseProfile:
//
//	{"name": "clinic", "resources": {"Patient": ["name.family", "birthDate"], "*": ["text.div"]}}
type Profile struct {
	// Name identifies the profile in errors and documentation.
	Name string `json:"name"`
	// Resources maps a resource type ("Patient") to the paths of its
	// elements to encrypt. AnyResource ("*") applies to every type.
	// A path may start with its resource type ("Patient.birthDate").
	//
	// The types listed are the types the profile knows: a type listed
	// with no paths ("Organization": []) says that it was reviewed and
	// needs nothing beyond the "*" paths. Resources of other types
	// follow Config.UnknownTypes; Bundle, a container whose entries are
	// resources of their own, is always known.
	Resources map[string][]string `json:"resources"`
	// SafeHarbor, when set, adds the HIPAA Safe Harbor rules, which
	// select identifiers by the shape of the data in every resource type
	// (see SafeHarbor and SafeHarborRules), to the paths of Resources.
	SafeHarbor *SafeHarborRules `json:"safeHarbor,omitempty"`
}

// ParseProfile reads a profile from JSON and checks its paths. Unknown
// fields are refused, so a misspelt key is not silently ignored.
func ParseProfile(data []byte) (*Profile, error) {
	var p Profile
	if err := strictjson.Decode(data, &p); err != nil {
		return nil, fmt.Errorf("fhir: profile: %w", err)
	}
	if _, err := p.compile(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks every path of the profile. Its errors are *PathError.
func (p *Profile) Validate() error {
	_, err := p.compile()
	return err
}

// Merge returns a profile named name with the paths of every profile given,
// per resource type, without duplicates, and the Safe Harbor rules of the
// first profile that has them. It knows every type that one of them knows.
func Merge(name string, profiles ...*Profile) *Profile {
	out := &Profile{Name: name, Resources: map[string][]string{}}
	for _, p := range profiles {
		if out.SafeHarbor == nil && p.SafeHarbor != nil {
			r := *p.SafeHarbor
			out.SafeHarbor = &r
		}
		for typ, paths := range p.Resources {
			if _, ok := out.Resources[typ]; !ok {
				out.Resources[typ] = []string{}
			}
			for _, path := range paths {
				if !slices.Contains(out.Resources[typ], path) {
					out.Resources[typ] = append(out.Resources[typ], path)
				}
			}
		}
	}
	return out
}

// compiled is a profile ready to evaluate.
type compiled struct {
	byType map[string][]*Path
	any    []*Path
	known  map[string]bool
	harbor *harbor // nil without Safe Harbor rules
}

// paths returns the paths that apply to resource type typ.
func (c *compiled) paths(typ string) (own, any []*Path) {
	return c.byType[typ], c.any
}

// knows reports whether the profile knows resource type typ.
func (c *compiled) knows(typ string) bool {
	// The Safe Harbor rules select by shape in every resource type.
	return typ == "Bundle" || c.known[typ] || c.harbor != nil
}

func (p *Profile) compile() (*compiled, error) {
	if p == nil {
		return nil, fmt.Errorf("fhir: nil profile")
	}
	c := &compiled{byType: map[string][]*Path{}, known: map[string]bool{}}
	if p.SafeHarbor != nil {
		h, err := p.SafeHarbor.compile()
		if err != nil {
			return nil, err
		}
		c.harbor = h
	}
	types := slices.Collect(maps.Keys(p.Resources))
	sort.Strings(types) // report errors deterministically
	for _, typ := range types {
		if typ != AnyResource && !isResourceType(typ) {
			return nil, &PathError{Resource: typ, Reason: "not a resource type (letters, starting with an upper-case one) or \"*\""}
		}
		if typ != AnyResource {
			c.known[typ] = true
		}
		for _, s := range p.Resources[typ] {
			path, err := ParsePath(s)
			if err != nil {
				err.(*PathError).Resource = typ
				return nil, err
			}
			if err := checkProfilePath(typ, s, path); err != nil {
				return nil, err
			}
			path = withExtensions(path)
			if typ == AnyResource {
				c.any = append(c.any, path)
			} else {
				c.byType[typ] = append(c.byType[typ], path)
			}
		}
	}
	return c, nil
}

// withExtensions returns p, made to select also the primitive extensions
// _name of the element name it ends at, or _nameType for a choice
// element name[x]. The extensions of a selected value travel with it
// anyway (see companion); selecting _name too covers extensions without a
// value (FHIR allows "_birthDate" without "birthDate") and more extension
// items than values, which would otherwise stay in clear.
func withExtensions(p *Path) *Path {
	last := p.steps[len(p.steps)-1]
	if last.kind != stepChild && last.kind != stepChoice {
		return p
	}
	steps := slices.Clone(p.steps)
	steps[len(steps)-1].ext = "_" + last.name
	return &Path{typ: p.typ, steps: steps}
}

// checkProfilePath refuses paths a profile cannot use: one for another
// resource type, and the elements that identify the resource, which
// every ciphertext is bound to.
func checkProfilePath(typ, s string, p *Path) error {
	switch {
	case p.typ != "" && typ == AnyResource:
		return &PathError{Resource: typ, Path: s, Reason: "a path under \"*\" cannot start with a resource type"}
	case p.typ != "" && p.typ != typ:
		return &PathError{Resource: typ, Path: s, Reason: "the path starts with another resource type"}
	}
	if first := p.steps[0]; first.kind == stepChild && (first.name == "id" || first.name == "resourceType") {
		return &PathError{Resource: typ, Path: s, Reason: "resourceType and id identify the resource and are never encrypted"}
	}
	return nil
}

func isResourceType(s string) bool {
	if s == "" || !isUpper(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLetter(s[i]) {
			return false
		}
	}
	return true
}
