package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/fields/fhir"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmsopen"
)

const ndjsonExamples = `  phicrypt encrypt --kek local:///etc/phicrypt/kek.json --keys-dsn sqlite:/var/lib/ehr/keys.db \
      --scope tenant:st-mary --per-patient --index ssn:16 --index mrn:16 \
      --in Patient.ndjson --out Patient.enc.ndjson
  phicrypt decrypt --kek local:///etc/phicrypt/kek.json --keys-dsn sqlite:/var/lib/ehr/keys.db \
      --scope tenant:st-mary --per-patient --in Patient.enc.ndjson --out Patient.ndjson
  phicrypt encrypt --form self-contained --kek aws-kms:alias/exports --scope tenant:st-mary \
      < Observation.ndjson > Observation.enc.ndjson
  phicrypt encrypt --profile safe-harbor --form self-contained --kek aws-kms:alias/exports \
      --scope study:42 --in bundles.ndjson --out bundles.enc.ndjson

  phicrypt decrypt --kek local:///etc/phicrypt/kek.json --keys-dsn sqlite:/var/lib/ehr/keys.db \
      --scope tenant:st-mary --per-patient --in Patient.enc.ndjson --out Patient.ndjson \
      --rejects Patient.rejects.ndjson --report Patient.report.json

The input is FHIR R4 NDJSON (one resource or Bundle per line, as in a bulk
export). The elements of the profile (default: US Core, see package
fields/fhir) are encrypted in place; everything else is kept byte for byte.
An element of the profile with an odd JSON type ("name": "..."), an invalid
resourceType and, unless --unknown-types says otherwise, a resource type
the profile does not know fail their line. With decrypt --rejects, the
lines that fail are left out and listed, and the others are written.
--profile names a built-in profile (us-core, safe-harbor, us-core-patient,
patient-references) or a JSON profile file; decrypt with the same one.
safe-harbor encrypts the 18 HIPAA Safe Harbor identifiers in every resource
(it knows every resource type) and keeps the year of dates readable for
patients under 90 whose Patient is on the same line (a Bundle per patient)
or in the --patients file (the Patient NDJSON of the same bulk export),
counting ages at --as-of.
On failure the error names the line; an --out file is not created, while
standard output has received every line before the failed one.
`

func runEncrypt(ctx context.Context, e *env, args []string) error {
	return runNDJSON(ctx, e, "encrypt", args)
}

func runDecrypt(ctx context.Context, e *env, args []string) error {
	return runNDJSON(ctx, e, "decrypt", args)
}

// runNDJSON encrypts or decrypts a FHIR NDJSON file.
func runNDJSON(ctx context.Context, e *env, verb string, args []string) error {
	encrypt := verb == "encrypt"
	fs := e.flags(verb, "--kek URI --scope SCOPE [--keys-dsn DSN] [--in FILE] [--out FILE] [flags]", ndjsonExamples)
	c := e.commonFlags(fs)
	form := fs.String("form", "compact", "the ciphertext form: compact (data keys from the key store, --keys-dsn) or self-contained (each value carries its data key wrapped by the KEK: for exports)")
	scope := fs.String("scope", "", "the scope (tenant) of the resources; with --per-patient, the prefix of each patient's scope")
	perPatient := fs.Bool("per-patient", false, `give each patient a scope of their own, SCOPE/patient/ID, so that "keys shred" crypto-shreds one patient (compact form only)`)
	profilePath := fs.String("profile", "", "the elements to encrypt: a built-in profile ("+strings.Join(fhir.BuiltinProfileNames(), ", ")+") or a JSON profile file (default: us-core)")
	asOf := fs.String("as-of", "", "with a Safe Harbor profile, the date (YYYY-MM-DD) at which patients' ages are counted (default: today, UTC)")
	patients := ""
	if encrypt {
		fs.StringVar(&patients, "patients", "", "with a Safe Harbor profile, the Patient NDJSON file of the bulk export, whose birth and death dates let the other files keep the years of patients under 90")
	}
	patientIndex := fs.Bool("patient-index", false, "with --per-patient, compute blind indexes under each patient's own index key: shredding the patient then makes them unmatchable, but every search must name the patient (default: the tenant's index key, searchable across the tenant)")
	var indexes listFlag
	allowPlaintext := new(bool)
	if encrypt {
		// Not createFlag: encrypt creates the keys of the patients it
		// meets; --create is for the scope itself (see scopeExists).
		fs.BoolVar(&c.create, "create", false, "encrypt into a new scope: without it, a --scope that has no keys, and no scope under it that has any, is an error (a typo never creates keys); patients' scopes under an existing one are created as they come")
		fs.Var(&indexes, "index", "add a blind index, ssn:BITS or mrn:BITS, to each Patient (repeat; needs --keys-dsn)")
	} else {
		fs.BoolVar(allowPlaintext, "allow-plaintext", false, "accept plaintext in elements the profile encrypts (documents written before the profile grew)")
	}
	unknownTypes := fs.String("unknown-types", "refuse", "resources of a type the profile does not know: refuse (fail the line), encrypt (every string value) or pass (leave them, counted)")
	reportPath := fs.String("report", "", "write to FILE, as JSON, the element paths "+verb+"ed per resource type with counts, and the resources with nothing "+verb+"ed")
	var rejectsPath *string
	if !encrypt {
		rejectsPath = fs.String("rejects", "", "decrypt every line that can be: leave out each line that fails and list it in FILE (NDJSON: line number, error class, element path; never a value); exit 1 if any")
	} else {
		rejectsPath = new(string)
	}
	workers := fs.Int("workers", 0, "lines processed at once (default: the number of CPUs)")
	maxLine := fs.Int("max-line", fhir.DefaultMaxLineSize, "the longest line accepted, in bytes")
	in := fs.String("in", "-", "the NDJSON input (- for standard input)")
	out := fs.String("out", "-", "the output (- for standard output); a file is written under a temporary name and renamed when complete")
	force := fs.Bool("force", false, "replace --out if it exists")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *scope == "" {
		return usagef("--scope is required")
	}
	if *workers < 0 || *maxLine < 1 || *maxLine > fhir.MaxDocumentSize {
		return usagef("--workers must be at least 0 and --max-line from 1 to %d", fhir.MaxDocumentSize)
	}
	if c.kek == "" {
		return usagef("no KEK: give --kek or PHICRYPT_KEK")
	}
	if *form != "compact" && *form != "self-contained" {
		return usagef("--form must be compact or self-contained")
	}
	if *perPatient && *form == "self-contained" {
		// Self-contained values carry their data key wrapped by the KEK:
		// keys shred cannot reach them, and --per-patient would promise
		// a shredding that does not happen.
		return usagef("--per-patient needs --form compact: self-contained values carry their own wrapped data key, which keys shred cannot destroy")
	}
	if *patientIndex && !*perPatient {
		return usagef("--patient-index needs --per-patient")
	}
	ixs, err := parseFHIRIndexes(indexes)
	if err != nil {
		return err
	}
	policy, err := fhir.ParseUnknownPolicy(*unknownTypes)
	if err != nil {
		return usagef("--unknown-types must be refuse, encrypt or pass")
	}
	cfg := fhir.Config{Scope: fhir.FixedScope(*scope), AllowPlaintext: *allowPlaintext, UnknownTypes: policy}
	if *perPatient {
		cfg.Scope = fhir.PatientScope(*scope)
	}
	if cfg.Profile, err = loadProfile(ctx, *profilePath, *asOf, patients); err != nil {
		return err
	}

	// Files first: a wrong path fails before any key is touched.
	if *rejectsPath == "-" {
		return usagef("--rejects needs a file of its own")
	}
	if *reportPath == "-" {
		return usagef("--report needs a file of its own")
	}
	if err := distinctOutputs([][2]string{{"--out", *out}, {"--rejects", *rejectsPath}, {"--report", *reportPath}, {"--audit-file", e.auditFile}}); err != nil {
		return err
	}
	src, size, err := e.openInput(ctx, *in)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := e.createOutput(*in, *out, *force)
	if err != nil {
		return err
	}
	defer dst.abort()
	var rejects, report *output
	if *rejectsPath != "" {
		if rejects, err = e.createOutput(*in, *rejectsPath, *force); err != nil {
			return err
		}
		defer rejects.abort()
	}
	if *reportPath != "" {
		if report, err = e.createOutput(*in, *reportPath, *force); err != nil {
			return err
		}
		defer report.abort()
	}
	// The key store is needed for the compact form and for blind indexes.
	var keyring *keys.Keyring
	var kek kms.KEK
	if *form == "compact" || len(ixs) > 0 {
		if c.keysDSN == "" {
			return usagef("the compact form and blind indexes need the key store: give --keys-dsn or PHICRYPT_KEYS_DSN")
		}
		s, err := e.open(ctx, c, openOptions{audit: true})
		if err != nil {
			return err
		}
		defer s.Close()
		if encrypt && !c.create {
			if err := s.scopeExists(ctx, *scope); err != nil {
				return err
			}
		}
		keyring, kek = s.keyring, s.kek
	} else {
		if kek, err = kmsopen.Open(ctx, c.kek); err != nil {
			return fmt.Errorf("open KEK: %w", err)
		}
		if cl, ok := kek.(io.Closer); ok {
			defer cl.Close()
		}
	}
	if *form == "compact" {
		cfg.Cipher, err = envelope.NewCompact(envelope.CompactConfig{Keyring: keyring, Encoding: envelope.Text})
	} else {
		cfg.Cipher, err = envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: kek, Encoding: envelope.Text})
	}
	if err != nil {
		return err
	}
	if len(ixs) > 0 {
		if cfg.Codec, err = fields.NewCodec(fields.Config{Keyring: keyring}); err != nil {
			return err
		}
		cfg.Indexes, cfg.IndexScope = ixs, fhir.FixedScope(*scope)
		if *patientIndex {
			cfg.IndexScope = fhir.PatientScope(*scope)
		}
	}
	enc, err := fhir.NewEncryptor(cfg)
	if err != nil {
		return err
	}

	bar := e.bar(size, verb+"ing", "bytes")
	var rep fhir.Report
	opt := fhir.NDJSONOptions{Workers: *workers, MaxLineSize: *maxLine, ProgressInterval: 200 * time.Millisecond,
		Progress: func(p fhir.Progress) { bar.Set64(p.Bytes) }, Report: &rep}
	do := enc.DecryptNDJSON
	var rj *rejecter
	if encrypt {
		do = enc.EncryptNDJSON
	} else {
		// The other scope choice, to tell a file written with(out)
		// --per-patient from a damaged one.
		other := cfg
		other.Scope = fhir.PatientScope(*scope)
		if *perPatient {
			other.Scope = fhir.FixedScope(*scope)
		}
		alt, err := fhir.NewEncryptor(other)
		if err != nil {
			return err
		}
		rj = &rejecter{ctx: ctx, alt: alt, perPatient: *perPatient}
		if rejects != nil {
			rj.w = rejects
		}
		opt.Reject = rj.reject
	}
	p, err := do(ctx, dst, src, opt)
	bar.Finish()
	if errors.Is(err, fhir.ErrRejected) && rejects != nil {
		// Skip-and-report: the output holds every other line.
		for _, o := range []*output{dst, rejects, report} {
			if o == nil {
				continue
			}
			if o == report {
				if err := writeReport(report, &rep); err != nil {
					return err
				}
			}
			if err := o.commit(); err != nil {
				return err
			}
		}
		e.summary(verb, p, dst.target, &rep, policy)
		return fmt.Errorf("%d of %d lines rejected (%s), listed in %s; the other lines are in %s",
			p.Rejected, p.Rejected+p.Lines, rj.classes(), rejects.target, dst.target)
	}
	if err != nil {
		// Nothing is left under --out: a partial file would pass for a
		// complete one. The error names the failed line.
		if dst.tmp == nil {
			return fmt.Errorf("output stopped after %d complete lines: %w", p.Lines, err)
		}
		return fmt.Errorf("%s not written: %w", dst.target, err)
	}
	if err := dst.commit(); err != nil {
		return err
	}
	if rejects != nil {
		if err := rejects.commit(); err != nil { // empty: nothing was rejected
			return err
		}
	}
	if report != nil {
		if err := writeReport(report, &rep); err != nil {
			return err
		}
		if err := report.commit(); err != nil {
			return err
		}
	}
	e.summary(verb, p, dst.target, &rep, policy)
	return nil
}

// summary prints what a run did: lines, bytes, speed, then the resources
// in which nothing was encrypted (decrypted) and those of unknown types,
// by type.
func (e *env) summary(verb string, p fhir.Progress, target string, rep *fhir.Report, policy fhir.UnknownPolicy) {
	e.summaryf("%sed %s (%s) in %s (%.1f MB/s) to %s\n",
		verb, plural(p.Lines, "line"), byteSize(p.Bytes), p.Elapsed.Round(time.Millisecond), p.Rate()/1e6, target)
	var untouched, unknown []string
	var nUntouched, nUnknown int64
	for _, typ := range rep.TypeNames() {
		t := rep.Types[typ]
		if t.Untouched > 0 {
			untouched = append(untouched, fmt.Sprintf("%s %d", typ, t.Untouched))
			nUntouched += t.Untouched
		}
		if t.Unknown > 0 {
			unknown = append(unknown, fmt.Sprintf("%s %d", typ, t.Unknown))
			nUnknown += t.Unknown
		}
	}
	if nUntouched > 0 {
		e.summaryf("nothing %sed in %s: %s\n", verb, plural(nUntouched, "resource"), strings.Join(untouched, ", "))
	}
	if nUnknown > 0 {
		how := "every string value encrypted"
		if policy == fhir.PassUnknown {
			how = "passed through"
		}
		e.summaryf("%s of types the profile does not know, %s: %s\n", plural(nUnknown, "resource"), how, strings.Join(unknown, ", "))
	}
}

// writeReport writes rep as indented JSON.
func writeReport(o *output, rep *fhir.Report) error {
	if rep.Types == nil {
		rep.Types = map[string]*fhir.TypeReport{}
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	_, err = o.Write(append(b, '\n'))
	return err
}

// rejecter handles the lines that fail to decrypt: it tells a file
// decrypted with the wrong --per-patient choice by decrypting the line
// under the other choice, and, with --rejects, lists the line in w and
// lets the stream go on.
type rejecter struct {
	ctx        context.Context
	alt        *fhir.Encryptor // the other --per-patient choice
	perPatient bool
	probed     bool
	w          *output // nil: stop at the first failure
	counts     map[string]int64
}

// reject is the fhir.NDJSONOptions.Reject of a decryption.
func (r *rejecter) reject(le *fhir.LineError, line []byte) error {
	class := errorClass(le)
	if !r.probed && (class == "authentication-failed" || class == "key-not-found") {
		// The binding of a value holds its scope, which the header does
		// not show: only a decryption under the other scope tells.
		r.probed = true
		if _, err := r.alt.Decrypt(r.ctx, line); err == nil {
			return &scopeHintError{line: le, perPatient: !r.perPatient}
		}
	}
	if r.w == nil {
		return le
	}
	rec := struct {
		Line  int64  `json:"line"`
		Class string `json:"class"`
		Path  string `json:"path,omitempty"`
	}{Line: le.Line, Class: class}
	var ee *fhir.ElementError
	if errors.As(le, &ee) {
		rec.Path = ee.Path
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := r.w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("--rejects: %w", err)
	}
	if r.counts == nil {
		r.counts = map[string]int64{}
	}
	r.counts[class]++
	return nil
}

// classes sums up the rejected lines by class: "2 key-destroyed, 1
// invalid-json".
func (r *rejecter) classes() string {
	var out []string
	for _, c := range slices.Sorted(maps.Keys(r.counts)) {
		out = append(out, fmt.Sprintf("%d %s", r.counts[c], c))
	}
	return strings.Join(out, ", ")
}

// scopeHintError is a decryption that failed because the file was
// written with the other --per-patient choice.
type scopeHintError struct {
	line       *fhir.LineError
	perPatient bool // the file was encrypted with --per-patient
}

func (e *scopeHintError) Error() string {
	if e.perPatient {
		return fmt.Sprintf("line %d: this file was encrypted with --per-patient (each patient has a scope of their own): decrypt it with --per-patient", e.line.Line)
	}
	return fmt.Sprintf("line %d: this file was encrypted without --per-patient (one scope for all): decrypt it without --per-patient", e.line.Line)
}

func (e *scopeHintError) Unwrap() error { return e.line }

// errorClass names the kind of a line's failure, for the rejects file:
// a stable word, never a value.
func errorClass(err error) string {
	var fe *envelope.FormatError
	for _, c := range []struct {
		err   error
		class string
	}{
		{fhir.ErrLineTooLong, "line-too-long"},
		{fhir.ErrSyntax, "invalid-json"},
		{fhir.ErrInvalidResourceType, "invalid-resource-type"},
		{fhir.ErrUnknownResourceType, "unknown-resource-type"},
		{fhir.ErrUnexpectedShape, "unexpected-shape"},
		{fhir.ErrNotResource, "not-a-resource"},
		{fhir.ErrMissingID, "missing-id"},
		{fhir.ErrNotEncrypted, "not-encrypted"},
		{fhir.ErrMalformedValue, "malformed-value"},
		{keys.ErrKeyDestroyed, "key-destroyed"},
		{keys.ErrKeyUnusable, "key-unusable"},
		{envelope.ErrKeyNotFound, "key-not-found"},
		{envelope.ErrDecrypt, "authentication-failed"},
		{envelope.ErrUnsupportedVersion, "unsupported-version"},
	} {
		if errors.Is(err, c.err) {
			return c.class
		}
	}
	if errors.As(err, &fe) {
		return "malformed-ciphertext"
	}
	return "other"
}

// parseFHIRIndexes reads --index ssn:BITS and mrn:BITS.
func parseFHIRIndexes(specs []string) ([]fhir.Index, error) {
	var ixs []fhir.Index
	seen := map[string]bool{}
	for _, s := range specs {
		name, b, ok := strings.Cut(s, ":")
		bits, err := strconv.Atoi(b)
		if !ok || err != nil || seen[name] {
			return nil, usagef("--index %q: want ssn:BITS or mrn:BITS, each once", s)
		}
		seen[name] = true
		var ix fhir.Index
		switch name {
		case "ssn":
			ix = fhir.SSNIndex(bits)
		case "mrn":
			ix = fhir.MRNIndex(bits)
		default:
			return nil, usagef("--index %q: the built-in indexes are ssn and mrn", s)
		}
		if err := ix.Spec.Validate(); err != nil {
			return nil, fmt.Errorf("%w: --index %q: %v", errUsage, s, err)
		}
		ixs = append(ixs, ix)
	}
	return ixs, nil
}

// openInput opens path, or standard input for "-", and returns its size
// when known (-1 otherwise), for the progress bar. Files that are not
// regular (a named pipe, a terminal) are read through a ctxReader, as
// standard input is (see run): their reads may wait for ever, and an
// interrupt must still stop the command.
func (e *env) openInput(ctx context.Context, path string) (io.ReadCloser, int64, error) {
	if path == "-" {
		return io.NopCloser(e.stdin), -1, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		return f, fi.Size(), nil
	}
	return struct {
		io.Reader
		io.Closer
	}{&ctxReader{ctx: ctx, r: f}, f}, -1, nil
}

// ctxReader reads r in a goroutine, so that a Read returns ctx's error
// as soon as ctx is done even while r's Read blocks (a terminal, a pipe
// whose writer is idle), which the NDJSON pipeline waits for before it
// returns. The goroutine reads into a buffer of its own: after ctx is
// done, a Read still blocked in it writes nothing the caller holds.
type ctxReader struct {
	ctx  context.Context
	r    io.Reader
	buf  []byte
	rest []byte // read, not yet returned
	err  error  // the error that ends the stream: r's, or ctx's
	res  chan ctxRead
}

// ctxRead is the result of one Read of ctxReader.r.
type ctxRead struct {
	n   int
	err error
}

// Read implements io.Reader.
func (c *ctxReader) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	if c.err != nil {
		return 0, c.err
	}
	if err := c.ctx.Err(); err != nil {
		c.err = err
		return 0, err
	}
	if c.res == nil {
		c.res = make(chan ctxRead, 1)
		c.buf = make([]byte, 64<<10)
	}
	go func() {
		n, err := c.r.Read(c.buf)
		c.res <- ctxRead{n, err}
	}()
	select {
	case <-c.ctx.Done():
		c.err = c.ctx.Err() // c.buf stays the blocked Read's
		return 0, c.err
	case r := <-c.res:
		n := copy(p, c.buf[:r.n])
		c.rest, c.err = c.buf[n:r.n], r.err
		if len(c.rest) > 0 {
			return n, nil
		}
		return n, r.err
	}
}

// output is a command's result file: standard output, or a temporary file
// in the target's folder that commit renames over the target, so that the
// target never holds a partial result.
type output struct {
	io.Writer
	tmp    *os.File // nil for standard output
	target string
	done   bool
}

// createOutput prepares the output path ("-" for standard output). It
// refuses to overwrite the input, and an existing file unless force.
func (e *env) createOutput(in, path string, force bool) (*output, error) {
	if path == "-" {
		// Redirected to the input file (>> in, 1<> in), standard output
		// would append to the input, or overwrite it while it is read.
		if f, ok := e.stdout.(*os.File); ok && in != "-" {
			a, errA := os.Stat(in)
			b, errB := f.Stat()
			if errA == nil && errB == nil && os.SameFile(a, b) {
				return nil, usagef("standard output is the input file: give --out another file")
			}
		}
		return &output{Writer: e.stdout, target: "standard output"}, nil
	}
	if in != "-" {
		a, errA := os.Stat(in)
		b, errB := os.Stat(path)
		if errA == nil && errB == nil && os.SameFile(a, b) {
			return nil, usagef("--out is the input file: write elsewhere, then rename")
		}
	}
	if _, err := os.Lstat(path); err == nil && !force {
		return nil, usagef("%s exists: give --force to replace it", path)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, err
	}
	return &output{Writer: tmp, tmp: tmp, target: path}, nil
}

// distinctOutputs fails with a usage error if two of outs (flag, path
// pairs; an empty path is no file) name one file: the same path however
// it is spelled (./out, dir/../out), or, for files that exist, the same
// file under another name (a hard link). Each output is renamed over its
// target when complete, so two under one name would replace each other,
// and the run would report a file written that holds something else.
func distinctOutputs(outs [][2]string) error {
	for i, a := range outs {
		for _, b := range outs[i+1:] {
			if a[1] != "" && b[1] != "" && sameFile(a[1], b[1]) {
				return usagef("%s and %s name the same file: %s needs a file of its own", a[0], b[0], b[0])
			}
		}
	}
	return nil
}

// sameFile reports whether paths a and b name one file. "-" is no file:
// standard output for --out, standard error for --audit-file.
func sameFile(a, b string) bool {
	if a == "-" || b == "-" {
		return false
	}
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	if errA == nil && errB == nil && absA == absB {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// commit makes the output durable and gives it its name.
func (o *output) commit() error {
	if o.tmp == nil {
		o.done = true
		return nil
	}
	if err := o.tmp.Sync(); err != nil {
		return err
	}
	if err := o.tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(o.tmp.Name(), o.target); err != nil {
		return err
	}
	o.done = true
	return nil
}

// abort removes the temporary file unless commit succeeded.
func (o *output) abort() {
	if o.tmp != nil && !o.done {
		o.tmp.Close()
		os.Remove(o.tmp.Name())
	}
}

// byteSize formats n bytes for people.
func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// loadProfile returns the profile that --profile names, a built-in one or
// a JSON file (nil: the default), with --as-of and --patients applied. A
// built-in name wins over a file of that name in the working directory;
// write ./safe-harbor for the file.
func loadProfile(ctx context.Context, name, asOf, patients string) (*fhir.Profile, error) {
	var p *fhir.Profile
	switch {
	case name == "":
	case slices.Contains(fhir.BuiltinProfileNames(), name):
		var err error
		if p, err = fhir.ProfileByName(name); err != nil {
			return nil, err
		}
	default:
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		if p, err = fhir.ParseProfile(data); err != nil {
			return nil, fmt.Errorf("%w: --profile %s: %v", errUsage, name, err)
		}
	}
	if asOf == "" && patients == "" {
		return p, nil
	}
	if p == nil || p.SafeHarbor == nil {
		return nil, usagef("--as-of and --patients need a profile with Safe Harbor rules (--profile safe-harbor)")
	}
	if asOf != "" {
		p.SafeHarbor.AsOf = asOf
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("%w: --as-of: %v", errUsage, err)
		}
	}
	if patients != "" {
		f, err := os.Open(patients)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if p.SafeHarbor.Patients, err = fhir.ReadPatientDates(ctx, f); err != nil {
			return nil, fmt.Errorf("--patients %s: %w", patients, err)
		}
	}
	return p, nil
}
