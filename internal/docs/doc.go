// Package docs holds the checks that keep the repository's documents
// honest: every test that COMPLIANCE.md and SECURITY.md name as proof of a
// safeguard must exist, and every relative link in the top-level documents
// must resolve. It has no code of its own.
package docs
