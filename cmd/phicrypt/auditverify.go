package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/phicrypt/phicrypt/keys"
)

// errTampered means audit verify found the audit log altered (exit 3).
var errTampered = errors.New("audit log altered")

func runAudit(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "verify" {
		return auditVerify(ctx, e, args[1:])
	}
	fmt.Fprint(e.stderr, `Usage: phicrypt audit SUBCOMMAND [flags]

Subcommands:
  verify  check the key store's tamper-evident audit log (exit 3 if it was altered)
`)
	return subcommandError(args)
}

func auditVerify(ctx context.Context, e *env, args []string) error {
	fs := e.flags("audit verify", "[--anchor SEQ:MAC]... [--anchor-file FILE]", `  phicrypt audit verify --keys-dsn postgres://ehr@db/ehr --anchor 1042:6f1c…
  phicrypt audit verify --anchor-file /mnt/worm/phicrypt-anchors

Verify reads the whole log and checks its chain of MACs: an edited, inserted
or deleted event is reported. Deleting the newest events and rewinding the
log's head leaves a shorter chain that is intact: only an anchor shows it.
Keep the head this command prints where the database's administrators cannot
write (a WORM bucket, a log shipper, a ticket) and pass it back as --anchor.

A log that holds events whose chain key was deleted from the key store is
altered too (none of its events can be checked).

Exit codes: 0 intact, 3 altered, 1 the log could not be read, 2 usage.
`)
	c := e.storeFlags(fs)
	var anchorFlags listFlag
	fs.Var(&anchorFlags, "anchor", "a head printed by an earlier verify, SEQ:MAC, that the log must still hold (repeat: each is checked; one per chain)")
	anchorFile := fs.String("anchor-file", "", "read anchors from FILE, one SEQ:MAC per line (blank lines and # comments are skipped; a file without one is a usage error)")
	if err := parse(fs, args); err != nil {
		return err
	}
	anchors, err := parseAnchors(anchorFlags, *anchorFile)
	if err != nil {
		return err
	}
	s, err := e.openStore(ctx, c)
	if err != nil {
		return err
	}
	defer s.Close()
	log, err := keys.OpenAuditLog(ctx, s.db, s.dialect, s.kek)
	switch {
	case errors.Is(err, keys.ErrNoAuditLog):
		return fmt.Errorf("%s has no audit log (keys init creates one): %w", redactDSN(c.keysDSN), err)
	case errors.Is(err, keys.ErrAuditTampered):
		// The log holds events, but its chain key was deleted: none of
		// them can be checked.
		fmt.Fprintf(e.stdout, "ALTERED: %v\n", err)
		return errTampered
	case err != nil:
		return err
	}

	// The log is one chain: the first pass checks it with the first
	// anchor, each further anchor takes a pass of its own.
	first := keys.VerifyOptions{}
	if len(anchors) > 0 {
		first.Anchor = &anchors[0]
	}
	report, err := log.Verify(ctx, first)
	if err != nil && !errors.Is(err, keys.ErrAuditTampered) {
		return err
	}
	for i := 1; i < len(anchors); i++ {
		r, err := log.Verify(ctx, keys.VerifyOptions{Anchor: &anchors[i]})
		if err != nil && !errors.Is(err, keys.ErrAuditTampered) {
			return err
		}
		for _, p := range r.Problems {
			if p.Kind == "anchor" {
				report.Problems = append(report.Problems, p)
			}
		}
	}

	if len(report.Problems) == 0 {
		fmt.Fprintf(e.stdout, "intact: %s, %s held\n", plural(report.Events, "event"), plural(len(anchors), "anchor"))
		if report.Events > 0 {
			fmt.Fprintf(e.stdout, "head: %s\n", formatAnchor(report.Head))
			fmt.Fprintln(e.stdout, "keep the head outside the database and pass it as --anchor next time: a truncated tail shows only against an anchor")
		}
		return nil
	}
	kinds := map[string]int{}
	for _, p := range report.Problems {
		kinds[p.Kind]++
	}
	fmt.Fprintf(e.stdout, "ALTERED: %s in %s read: %d modified, %d inserted, %d deleted, %d of %s missing\n",
		plural(len(report.Problems), "problem"), plural(report.Events, "event"),
		kinds["modified"], kinds["inserted"], kinds["deleted"], kinds["anchor"], plural(len(anchors), "anchor"))
	for _, p := range report.Problems {
		fmt.Fprintf(e.stdout, "  event %d: %s\n", p.Seq, problemText(p.Kind))
	}
	return errTampered
}

// problemText explains a keys.AuditProblem kind.
func problemText(kind string) string {
	switch kind {
	case "modified":
		return "modified (its MAC does not match its content)"
	case "inserted":
		return "inserted (not part of the chain)"
	case "deleted":
		return "deleted (the first missing event of a gap, or of a removed tail)"
	case "anchor":
		return "anchor not found (the log was truncated or rewritten after the anchor was kept)"
	}
	return kind
}

// formatAnchor writes a checkpoint as SEQ:MAC (hex).
func formatAnchor(c keys.Checkpoint) string {
	return strconv.FormatInt(c.Seq, 10) + ":" + hex.EncodeToString(c.MAC)
}

// parseAnchor reads SEQ:MAC.
func parseAnchor(s string) (keys.Checkpoint, error) {
	seq, mac, ok := strings.Cut(strings.TrimSpace(s), ":")
	n, err := strconv.ParseInt(seq, 10, 64)
	if !ok || err != nil || n < 1 {
		return keys.Checkpoint{}, usagef("anchor %q: want SEQ:MAC, as audit verify prints its head", s)
	}
	b, err := hex.DecodeString(mac)
	if err != nil || len(b) != 32 {
		return keys.Checkpoint{}, usagef("anchor %q: the MAC must be 64 hex digits", s)
	}
	return keys.Checkpoint{Seq: n, MAC: b}, nil
}

// parseAnchors reads the --anchor flags and the --anchor-file.
func parseAnchors(flags []string, file string) ([]keys.Checkpoint, error) {
	lines := append([]string(nil), flags...)
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("%w: --anchor-file: %v", errUsage, err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		n := 0
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
				lines = append(lines, l)
				n++
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("--anchor-file: %w", err)
		}
		if n == 0 {
			// Like a missing file: an anchor file that was never
			// written, or was emptied, must not pass for one whose
			// anchors all held (a truncated tail shows only against one).
			return nil, usagef("--anchor-file %s holds no anchor", file)
		}
	}
	var out []keys.Checkpoint
	for _, l := range lines {
		c, err := parseAnchor(l)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
