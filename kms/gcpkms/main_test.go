package gcpkms_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestMain points Application Default Credentials at a throwaway service
// account file, so that no test ever looks for credentials on the network
// (the GCE metadata server) or in the user's gcloud configuration. Its
// token endpoint is on the loopback interface and is never reached:
// service accounts sign their own JWTs for Cloud KMS.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "phicrypt-gcpkms")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "service-account.json")
	if err := writeServiceAccount(path); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Setenv("GOOGLE_APPLICATION_CREDENTIALS", path)
	return m.Run()
}

func writeServiceAccount(path string) error {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	b, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "phicrypt-test",
		"private_key_id": "0",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   "phicrypt-test@phicrypt-test.iam.gserviceaccount.com",
		"client_id":      "0",
		"token_uri":      "http://127.0.0.1:1/token",
	})
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}
