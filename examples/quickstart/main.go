// Command quickstart encrypts the PHI of a sample patient (a synthetic
// Synthea record) with a local KEK that it creates on first run, prints the
// ciphertexts a database would store, decrypts them back, and shows that a
// value copied to another patient's row fails to decrypt.
//
//	go run ./examples/quickstart
//	go run ./examples/quickstart -kek /path/to/kek.json
//
// The KEK file is created with mode 0600 under .phicrypt/ in the current
// directory unless -kek says otherwise, and reused by later runs. It needs
// no server: production sites keep their KEK in Vault, a cloud KMS or an
// HSM instead (see package kms).
package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"

	"sync/atomic"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/local"
)

// patientCSV is the first patient of Synthea's sample export (see
// LICENSE-patient-csv).
//
//go:embed patient.csv
var patientCSV []byte

// phiColumns are the columns of the Synthea CSV that identify a patient.
var phiColumns = []string{"SSN", "DRIVERS", "PASSPORT", "PREFIX", "FIRST", "LAST", "BIRTHDATE", "BIRTHPLACE", "ADDRESS", "CITY", "ZIP", "LAT", "LON"}

func main() {
	kekPath := flag.String("kek", filepath.Join(".phicrypt", "quickstart-kek.json"), "local KEK file, created if missing")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *kekPath); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer, kekPath string) error {
	kek, created, err := openOrCreateKEK(kekPath)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(w, "created local KEK %s in %s (mode 0600)\n", kek.KeyID(), kekPath)
	} else {
		fmt.Fprintf(w, "using local KEK %s from %s (version %d)\n", kek.KeyID(), kekPath, kek.Version())
	}

	header, record, err := readPatient()
	if err != nil {
		return err
	}
	id := record["Id"]

	// Count KMS calls: the whole record needs one wrap, not one per field.
	counted := &countingKEK{KEK: kek}
	sc, err := envelope.NewSelfContained(envelope.SelfContainedConfig{KEK: counted, Encoding: envelope.Text})
	if err != nil {
		return err
	}
	binding := func(column, recordID string) envelope.Binding {
		return envelope.Binding{Scope: "tenant:quickstart", Table: "patients", Column: column, RecordID: recordID}
	}

	fmt.Fprintf(w, "\npatient %s, as stored (PHI columns encrypted):\n", id)
	stored := map[string][]byte{}
	for _, col := range header {
		v := record[col]
		if !isPHI(col) {
			fmt.Fprintf(w, "  %-20s %s\n", col, v)
			continue
		}
		ct, err := sc.Encrypt(ctx, []byte(v), binding(col, id))
		if err != nil {
			return fmt.Errorf("encrypt %s: %w", col, err)
		}
		stored[col] = ct
		fmt.Fprintf(w, "  %-20s %s… (%d bytes)\n", col, ct[:64], len(ct))
	}
	fmt.Fprintf(w, "KMS calls to encrypt %d fields: %d\n", len(stored), counted.calls.Load())

	fmt.Fprintf(w, "\ndecrypted back:\n")
	for _, col := range phiColumns {
		pt, err := sc.Decrypt(ctx, stored[col], binding(col, id))
		if err != nil {
			return fmt.Errorf("decrypt %s: %w", col, err)
		}
		if !bytes.Equal(pt, []byte(record[col])) {
			return fmt.Errorf("decrypt %s: round trip mismatch", col)
		}
		fmt.Fprintf(w, "  %-20s %s\n", col, pt)
	}
	fmt.Fprintf(w, "KMS calls in all: %d\n", counted.calls.Load())

	// The SSN ciphertext pasted into another patient's row does not decrypt.
	_, err = sc.Decrypt(ctx, stored["SSN"], binding("SSN", "another-patient"))
	if !errors.Is(err, envelope.ErrDecrypt) {
		return fmt.Errorf("moved ciphertext: got %v, want ErrDecrypt", err)
	}
	fmt.Fprintf(w, "\nSSN ciphertext moved to another patient's row: %v\n", err)
	return nil
}

// countingKEK counts the calls that reach the KMS.
type countingKEK struct {
	kms.KEK
	calls atomic.Int64
}

func (c *countingKEK) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	c.calls.Add(1)
	return c.KEK.Wrap(ctx, dek, aad)
}

func (c *countingKEK) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	c.calls.Add(1)
	return c.KEK.Unwrap(ctx, wk, aad)
}

func isPHI(col string) bool {
	for _, c := range phiColumns {
		if c == col {
			return true
		}
	}
	return false
}

// openOrCreateKEK opens the key file at path, creating it (and its
// directory, mode 0700) if it does not exist.
func openOrCreateKEK(path string) (*local.KEK, bool, error) {
	kek, err := local.New(local.Config{Path: path})
	if err == nil {
		return kek, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	kek, err = local.Create(path, local.Options{KeyID: "local:quickstart"})
	return kek, err == nil, err
}

func readPatient() ([]string, map[string]string, error) {
	rows, err := csv.NewReader(bytes.NewReader(patientCSV)).ReadAll()
	if err != nil {
		return nil, nil, err
	}
	if len(rows) < 2 {
		return nil, nil, errors.New("patient.csv has no patient")
	}
	record := map[string]string{}
	for i, col := range rows[0] {
		record[col] = rows[1][i]
	}
	return rows[0], record, nil
}
