package fhir

// WithoutSafeHarborRule returns a copy of p with one Safe Harbor rule
// turned off, so that a test can prove the rule matters.
func WithoutSafeHarborRule(p *Profile, rule string) *Profile {
	q := Merge(p.Name, p)
	q.SafeHarbor.off = append(q.SafeHarbor.off, rule)
	return q
}
