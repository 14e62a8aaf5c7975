package awskms_test

import (
	"context"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sdk "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/internal/testsvc"
	"github.com/phicrypt/phicrypt/kms/awskms"
)

func TestMain(m *testing.M) {
	// Under GODEBUG=fips140=only this process stays in FIPS-only mode (the
	// setting is latched at start); local-kms, a separate program outside
	// our FIPS boundary, does not inherit it.
	if v, ok := os.LookupEnv("GODEBUG"); ok {
		var keep []string
		for _, kv := range strings.Split(v, ",") {
			if !strings.HasPrefix(strings.TrimSpace(kv), "fips140=") {
				keep = append(keep, kv)
			}
		}
		os.Setenv("GODEBUG", strings.Join(keep, ","))
	}
	// local-kms does not authenticate the key ARN in its ciphertext blobs
	// and crashes on some truncated ones, so kmstest's Tamper check cannot
	// pass against it (AWS KMS authenticates the whole blob). kmstest has
	// no way to skip one check, so skip it by name unless -skip was given;
	// TestTamper checks what local-kms authenticates.
	flag.Parse()
	if f := flag.Lookup("test.skip"); f != nil && f.Value.String() == "" {
		f.Value.Set("^TestConformance$/^Tamper$")
	}
	os.Exit(m.Run())
}

// dummy are the static credentials local-kms accepts (it accepts any).
var dummy = credentials.NewStaticCredentialsProvider("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "")

// server is a local-kms for one test and an SDK client to manage it.
type server struct {
	*testsvc.LocalKMS
	admin *sdk.Client
}

func startServer(t testing.TB) server {
	t.Helper()
	k := testsvc.StartLocalKMS(t)
	admin := sdk.New(sdk.Options{
		Region:       k.Region,
		BaseEndpoint: aws.String(k.Endpoint),
		Credentials:  dummy,
	})
	return server{LocalKMS: k, admin: admin}
}

// createKey creates a symmetric encryption key (or another spec and
// usage) and returns its ARN.
func (s server) createKey(t testing.TB, spec types.KeySpec, usage types.KeyUsageType) string {
	t.Helper()
	out, err := s.admin.CreateKey(context.Background(), &sdk.CreateKeyInput{KeySpec: spec, KeyUsage: usage})
	require.NoError(t, err)
	return *out.KeyMetadata.Arn
}

func (s server) symmetricKey(t testing.TB) string {
	return s.createKey(t, types.KeySpecSymmetricDefault, types.KeyUsageTypeEncryptDecrypt)
}

func (s server) config(key string) awskms.Config {
	return awskms.Config{Key: key, Region: s.Region, Endpoint: s.Endpoint, Credentials: dummy}
}

func (s server) open(t testing.TB, key string) *awskms.KEK {
	t.Helper()
	k, err := awskms.New(context.Background(), s.config(key))
	require.NoError(t, err)
	return k
}
