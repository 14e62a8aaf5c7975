package testsvc_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phicrypt/phicrypt/internal/testsvc"
)

func TestMain(m *testing.M) { os.Exit(testsvc.RunMain(m)) }

// recorder is a testing.TB that records Skipf and Fatalf instead of
// stopping the test.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Skipf(format string, args ...any)  { r.skipped = fmt.Sprintf(format, args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestMissing(t *testing.T) {
	for _, tc := range []struct {
		env               string
		wantSkip, wantErr bool
	}{
		{env: "", wantSkip: true},
		{env: "0", wantSkip: true},
		{env: "1", wantErr: true},
	} {
		t.Run("require="+tc.env, func(t *testing.T) {
			t.Setenv(testsvc.EnvRequireIntegration, tc.env)
			r := &recorder{TB: t}
			report := filepath.Join(t.TempDir(), "report")
			t.Setenv(testsvc.EnvReport, report)
			testsvc.Missing(r, "Thing", "need %s: %s", "thing", "apt-get install -y thing")
			if got := r.skipped != ""; got != tc.wantSkip {
				t.Errorf("skipped = %q, want skip %v", r.skipped, tc.wantSkip)
			}
			if got := r.failed != ""; got != tc.wantErr {
				t.Errorf("failed = %q, want failure %v", r.failed, tc.wantErr)
			}
			if msg := r.skipped + r.failed; !strings.Contains(msg, "need thing: apt-get install -y thing") {
				t.Errorf("message %q does not say what to install", msg)
			}
			lines, err := testsvc.ReadReport(report)
			if err != nil {
				t.Fatal(err)
			}
			want := testsvc.Report{Service: "Thing", Package: "internal/testsvc", Outcome: testsvc.OutcomeSkipped, Why: "need thing: apt-get install -y thing"}
			if tc.wantErr {
				want.Outcome = testsvc.OutcomeFailed
			}
			if len(lines) != 1 || lines[0] != want {
				t.Errorf("report = %+v, want %+v", lines, want)
			}
		})
	}
}

func TestRepoRootAndCacheDir(t *testing.T) {
	root, err := testsvc.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "vaultserver", "main.go")); err != nil {
		t.Errorf("RepoRoot() = %s, which has no internal/vaultserver: %v", root, err)
	}
	t.Setenv(testsvc.EnvCacheDir, "")
	t.Setenv("XDG_CACHE_HOME", "/tmp/xdg-cache")
	if dir, err := testsvc.CacheDir(); err != nil || dir != "/tmp/xdg-cache/phicrypt" {
		t.Errorf("CacheDir() = %q, %v; want /tmp/xdg-cache/phicrypt", dir, err)
	}
	t.Setenv(testsvc.EnvCacheDir, "/tmp/phicrypt-cache")
	if dir, err := testsvc.CacheDir(); err != nil || dir != "/tmp/phicrypt-cache" {
		t.Errorf("CacheDir() with %s = %q, %v", testsvc.EnvCacheDir, dir, err)
	}
}

func TestBinaryOverrideMustExist(t *testing.T) {
	t.Setenv(testsvc.EnvVaultBin, filepath.Join(t.TempDir(), "no-vault"))
	if _, err := testsvc.NewVault(t.Context()); err == nil || !strings.Contains(err.Error(), testsvc.EnvVaultBin) {
		t.Errorf("NewVault with a missing %s: err = %v, want one naming the variable", testsvc.EnvVaultBin, err)
	}
}

// TestTestsNeverBuild checks that a test that finds no Vault or local-kms
// is told the command that provides it, and that nothing was built or
// installed on its behalf.
func TestTestsNeverBuild(t *testing.T) {
	cache := t.TempDir()
	t.Setenv(testsvc.EnvCacheDir, cache)
	t.Setenv(testsvc.EnvVaultBin, "")
	t.Setenv(testsvc.EnvLocalKMSBin, "")
	for name, start := range map[string]func() error{
		"vault":     func() error { _, err := testsvc.NewVault(t.Context()); return err },
		"local-kms": func() error { _, err := testsvc.NewLocalKMS(t.Context()); return err },
	} {
		err := start()
		if !errors.Is(err, testsvc.ErrUnavailable) {
			t.Errorf("%s with an empty cache: err = %v, want ErrUnavailable", name, err)
			continue
		}
		if want := testsvc.InstallCommand + " " + name; !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q does not name the command %q", name, err, want)
		}
	}
	entries, err := os.ReadDir(cache)
	if err != nil || len(entries) != 0 {
		t.Errorf("the cache folder holds %v (%v): a test built or installed something", entries, err)
	}
}

func TestPostgres(t *testing.T) {
	start := time.Now()
	p := testsvc.StartPostgres(t)
	t.Logf("StartPostgres: %v", time.Since(start))
	if p.Host != "127.0.0.1" || p.User != "postgres" || p.Port == 0 {
		t.Errorf("Postgres = %+v", p)
	}
	if want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port); p.DSN != want {
		t.Errorf("DSN = %q, want %q", p.DSN, want)
	}
	out, err := p.Psql(t.Context(), "postgres", "-tAc", "show server_version_num")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server_version_num %s", strings.TrimSpace(out))
	for setting, want := range map[string]string{"listen_addresses": "127.0.0.1", "fsync": "off", "server_encoding": "UTF8"} {
		out, err := p.Psql(t.Context(), "postgres", "-tAc", "show "+setting)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(out); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
}

func TestSharedPostgres(t *testing.T) {
	start := time.Now()
	p := testsvc.SharedPostgres(t)
	t.Logf("SharedPostgres, first call: %v", time.Since(start))
	if again := testsvc.SharedPostgres(t); again != p {
		t.Fatal("SharedPostgres returned two clusters")
	}
	start = time.Now()
	dsn := p.CreateDatabase(t, "testsvc_check")
	t.Logf("CreateDatabase: %v", time.Since(start))
	if want := p.DatabaseDSN("testsvc_check"); dsn != want {
		t.Errorf("CreateDatabase DSN = %q, want %q", dsn, want)
	}
	// The DSN works as given to a client.
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("no psql in PATH")
	}
	out, err := exec.CommandContext(t.Context(), psql, "-X", "-tA", dsn, "-c", "select current_database(), 1").CombinedOutput()
	if err != nil {
		t.Fatalf("psql %s: %v: %s", dsn, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "testsvc_check|1" {
		t.Errorf("psql said %q", got)
	}
	if _, err := p.NewDatabase(t.Context(), "Robert'); drop table x;--"); err == nil {
		t.Error("NewDatabase accepted a name that needs quoting")
	}
}

func TestSharedPostgresDropsDatabases(t *testing.T) {
	p := testsvc.SharedPostgres(t)
	t.Run("create", func(t *testing.T) { p.CreateDatabase(t, "testsvc_dropped") })
	out, err := p.Psql(t.Context(), "postgres", "-tAc", "select count(*) from pg_database where datname = 'testsvc_dropped'")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != "0" {
		t.Error("the database outlived its test")
	}
}

func TestVault(t *testing.T) {
	home, _ := os.UserHomeDir()
	tokenFile := filepath.Join(home, ".vault-token")
	_, statErr := os.Stat(tokenFile)
	hadToken := statErr == nil

	start := time.Now()
	v := testsvc.SharedVault(t)
	t.Logf("SharedVault, first call: %v", time.Since(start))
	if !strings.HasPrefix(v.Addr, "http://127.0.0.1:") || v.Token == "" {
		t.Errorf("Vault = %+v", v)
	}

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, v.Addr+"/v1/sys/mounts", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", v.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var mounts struct {
		Data map[string]struct {
			Type string `json:"type"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&mounts); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/sys/mounts: %d, %v", resp.StatusCode, err)
	}
	if got := mounts.Data["transit/"].Type; got != "transit" {
		t.Errorf("transit/ mount type = %q, want transit (mounts: %v)", got, mounts.Data)
	}
	if _, err := os.Stat(tokenFile); !hadToken && err == nil {
		t.Errorf("the dev server wrote %s", tokenFile)
	}
}

func TestLocalKMS(t *testing.T) {
	start := time.Now()
	k := testsvc.StartLocalKMS(t)
	t.Logf("StartLocalKMS: %v", time.Since(start))
	if !strings.HasPrefix(k.Endpoint, "http://127.0.0.1:") || k.Region == "" || k.AccountID == "" {
		t.Errorf("LocalKMS = %+v", k)
	}
	call := func(target, body string) map[string]any {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, k.Endpoint+"/", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Amz-Target", "TrentService."+target)
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d, %v, %v", target, resp.StatusCode, err, out)
		}
		return out
	}
	call("ListKeys", "{}")
	created := call("CreateKey", "{}")
	arn, _ := created["KeyMetadata"].(map[string]any)["Arn"].(string)
	if want := "arn:aws:kms:" + k.Region + ":" + k.AccountID + ":key/"; !strings.HasPrefix(arn, want) {
		t.Errorf("key ARN %q, want prefix %q", arn, want)
	}
}

func TestSoftHSM(t *testing.T) {
	start := time.Now()
	h := testsvc.StartSoftHSM(t)
	t.Logf("StartSoftHSM: %v", time.Since(start))
	if got := os.Getenv("SOFTHSM2_CONF"); got != h.ConfPath {
		t.Errorf("SOFTHSM2_CONF = %q, want %q", got, h.ConfPath)
	}
	if _, err := os.Stat(h.ModulePath); err != nil {
		t.Error(err)
	}
	out, err := exec.CommandContext(t.Context(), "softhsm2-util", "--show-slots").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --show-slots: %v: %s", err, out)
	}
	if !strings.Contains(string(out), h.TokenLabel) {
		t.Errorf("--show-slots does not list token %q:\n%s", h.TokenLabel, out)
	}
}
