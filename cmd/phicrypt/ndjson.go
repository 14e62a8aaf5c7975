package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

The input is FHIR R4 NDJSON (one resource or Bundle per line, as in a bulk
export). The elements of the profile (default: US Core, see package
fields/fhir) are encrypted in place; everything else is kept byte for byte.
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
	patientIndex := fs.Bool("patient-index", false, "with --per-patient, compute blind indexes under each patient's own index key: shredding the patient then makes them unmatchable, but every search must name the patient (default: the tenant's index key, searchable across the tenant)")
	profilePath := fs.String("profile", "", "a JSON profile listing the elements to encrypt (default: the built-in US Core profile)")
	var indexes listFlag
	allowPlaintext := new(bool)
	if encrypt {
		fs.Var(&indexes, "index", "add a blind index, ssn:BITS or mrn:BITS, to each Patient (repeat; needs --keys-dsn)")
	} else {
		fs.BoolVar(allowPlaintext, "allow-plaintext", false, "accept plaintext in elements the profile encrypts (documents written before the profile grew)")
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
	cfg := fhir.Config{Scope: fhir.FixedScope(*scope), AllowPlaintext: *allowPlaintext}
	if *perPatient {
		cfg.Scope = fhir.PatientScope(*scope)
	}
	if *profilePath != "" {
		data, err := os.ReadFile(*profilePath)
		if err != nil {
			return err
		}
		if cfg.Profile, err = fhir.ParseProfile(data); err != nil {
			return fmt.Errorf("%w: --profile %s: %v", errUsage, *profilePath, err)
		}
	}

	// Files first: a wrong path fails before any key is touched.
	src, size, err := e.openInput(*in)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := e.createOutput(*in, *out, *force)
	if err != nil {
		return err
	}
	defer dst.abort()
	// The key store is needed for the compact form and for blind indexes.
	var keyring *keys.Keyring
	var kek kms.KEK
	if *form == "compact" || len(ixs) > 0 {
		if c.keysDSN == "" {
			return usagef("the compact form and blind indexes need the key store: give --keys-dsn or PHICRYPT_KEYS_DSN")
		}
		s, err := e.open(ctx, c, keys.Config{Auditor: e.auditor()})
		if err != nil {
			return err
		}
		defer s.Close()
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
	opt := fhir.NDJSONOptions{Workers: *workers, MaxLineSize: *maxLine, ProgressInterval: 200 * time.Millisecond,
		Progress: func(p fhir.Progress) { bar.Set64(p.Bytes) }}
	do := enc.DecryptNDJSON
	if encrypt {
		do = enc.EncryptNDJSON
	}
	p, err := do(ctx, dst, src, opt)
	bar.Finish()
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
	fmt.Fprintf(e.stderr, "%sed %d lines (%s) in %s (%.1f MB/s) to %s\n",
		verb, p.Lines, byteSize(p.Bytes), p.Elapsed.Round(time.Millisecond), p.Rate()/1e6, dst.target)
	return nil
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
// when known (-1 otherwise), for the progress bar.
func (e *env) openInput(path string) (io.ReadCloser, int64, error) {
	if path == "-" {
		return io.NopCloser(e.stdin), -1, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	size := int64(-1)
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	return f, size, nil
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
