// Command ehr-backend is a small HTTP JSON service for patient records
// whose PHI is encrypted with phicrypt through GORM (package
// fields/gormphi): create, read, update and delete patients, and find
// them by SSN, by MRN, or by last name and date of birth through blind
// indexes, without decrypting the table. Every response that carries PHI,
// and every search, write and delete, is recorded in a tamper-evident
// audit log (keys.AuditLog) with the caller from the X-User header.
//
//	go run ./examples/ehr-backend                          # SQLite in a temporary folder
//	go run ./examples/ehr-backend -dsn postgres://...      # or EHR_DSN=postgres://...
//
// Without a DSN, the patients are in a SQLite file in -dir (by default a
// folder in the system's temporary directory), the keys and the audit log
// in another, next to a local KEK file created on first run. With a PostgreSQL DSN, the patients, the wrapped
// keys and the audit log live in that database; the KEK stays in -dir.
// Production sites keep their KEK in Vault, a cloud KMS or an HSM (see
// package kms). See README.md for the API and curl calls.
package main

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	_ "modernc.org/sqlite" // database/sql driver "sqlite", pure Go

	"github.com/phicrypt/phicrypt/examples/ehr-backend/loadgen"
	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/fields/gormphi"
	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/local"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	dsn := flag.String("dsn", os.Getenv("EHR_DSN"), "PostgreSQL URL (postgres://...); empty for SQLite in -dir (env EHR_DSN)")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "phicrypt-ehr-backend"), "folder for the KEK file and the SQLite database")
	tenant := flag.String("tenant", "tenant:default", "tenant of requests without an X-Tenant header")
	tenants := flag.String("tenants", "", "comma-separated other tenants that requests may name in X-Tenant (any other is refused with 403)")
	audit := flag.String("audit", "log", "where audit events go: log (the tamper-evident audit log) or discard (measurements only)")
	load := flag.Int("load", 0, "measure instead of serving: run this many requests (half creates, a quarter reads, a quarter SSN searches) against the service on a loopback port, -runs times, and print the results")
	clients := flag.Int("clients", 16, "concurrent clients for -load, at most 1024")
	runs := flag.Int("runs", 3, "runs for -load, at most 100; the median run is printed last")
	flag.Parse()

	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o := Options{Dir: *dir, DSN: *dsn, Tenant: *tenant, Logger: log}
	if *tenants != "" {
		o.Tenants = strings.Split(*tenants, ",")
	}
	switch *audit {
	case "log":
	case "discard":
		o.Auditor = &keys.SlogAuditor{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	default:
		fmt.Fprintln(os.Stderr, "ehr-backend: -audit must be log or discard")
		os.Exit(2)
	}
	if *load > 0 {
		// Request logs would dominate a measurement.
		o.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	app, err := Open(ctx, o)
	if err != nil {
		log.Error("start", "error", err.Error())
		os.Exit(1)
	}
	defer app.Close()
	if *load > 0 {
		if err := measure(ctx, app, os.Stdout, loadgen.Config{Clients: *clients, Requests: *load}, *runs); err != nil {
			fmt.Fprintln(os.Stderr, "ehr-backend:", err)
			os.Exit(1)
		}
		return
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Error("listen", "error", err.Error())
		os.Exit(1)
	}
	srv := &http.Server{Handler: app.Handler, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Info("listening", "addr", ln.Addr().String(), "database", app.Database)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "error", err.Error())
		os.Exit(1)
	}
}

// maxRuns bounds -runs.
const maxRuns = 100

// measure serves app on a loopback port and runs the load generator
// against it runs times (1 to maxRuns), printing each result and then the
// median run (by requests per second). It fails if any request failed.
func measure(ctx context.Context, app *App, out io.Writer, cfg loadgen.Config, runs int) error {
	if runs > maxRuns {
		return fmt.Errorf("%w: %d runs, at most %d", loadgen.ErrOutOfBounds, runs, maxRuns)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: app.Handler, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	cfg.BaseURL = "http://" + ln.Addr().String()
	var results []loadgen.Result
	for i := range max(runs, 1) {
		cfg.RunID = fmt.Sprint(time.Now().UnixNano())
		r, err := loadgen.Run(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "run %d: %v\n", i+1, r)
		for _, e := range r.FirstErrors {
			fmt.Fprintln(out, "  ", e)
		}
		results = append(results, r)
	}
	slices.SortFunc(results, func(a, b loadgen.Result) int { return cmp.Compare(a.PerSecond, b.PerSecond) })
	median := results[len(results)/2]
	fmt.Fprintf(out, "median (%s, %d clients): %v\n", app.Database, cfg.Clients, median)
	for _, r := range results {
		if r.Errors > 0 {
			return fmt.Errorf("%d requests failed", r.Errors)
		}
	}
	return nil
}

// Options configure Open.
type Options struct {
	// Dir holds the local KEK file and, without DSN, the SQLite database.
	Dir string
	// DSN is a PostgreSQL URL; empty for SQLite.
	DSN string
	// Tenant is the scope of requests without an X-Tenant header.
	Tenant string
	// Tenants are the other tenants requests may name in X-Tenant (see
	// ServiceConfig.Tenants).
	Tenants []string
	// Logger receives request logs.
	Logger *slog.Logger
	// KEK replaces the local KEK file (tests use it to count calls).
	KEK kms.KEK
	// Auditor replaces the database audit log (tests use it to see the
	// events).
	Auditor keys.Auditor
}

// App is a ready service: its HTTP handler and what to close.
type App struct {
	Handler  http.Handler
	Database string // "sqlite FILE" or "postgres"
	DB       *gorm.DB
	Audit    *keys.AuditLog // nil when Options.Auditor replaced it
	sqlDB    *sql.DB        // the patients
	keysDB   *sql.DB        // the keys and the audit log: sqlDB on PostgreSQL
}

// Close closes the databases.
func (a *App) Close() error {
	var err error
	if a.keysDB != nil && a.keysDB != a.sqlDB {
		err = a.keysDB.Close()
	}
	if a.sqlDB != nil {
		err = errors.Join(a.sqlDB.Close(), err)
	}
	return err
}

// Open opens (and creates on first run) the KEK, the database, the key
// store, the audit log and the patients table, and returns the service.
func Open(ctx context.Context, o Options) (*App, error) {
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	kek := o.KEK
	if kek == nil {
		var err error
		if kek, err = openOrCreateKEK(filepath.Join(o.Dir, "kek.json")); err != nil {
			return nil, err
		}
	}
	app := &App{}
	var (
		dialector gorm.Dialector
		dialect   keys.Dialect
		err       error
	)
	fail := func(err error) (*App, error) {
		app.Close()
		return nil, err
	}
	switch {
	case o.DSN == "":
		// The keys and the audit log get a database file of their own:
		// SQLite has one writer at a time, and the audit log writes on
		// every request. gormphi.SQLiteDSN makes GORM's transactions,
		// which read before they write (the duplicate-MRN check, the
		// update's load), take the write lock up front: without it they
		// fail under load with SQLITE_BUSY_SNAPSHOT.
		path := filepath.Join(o.Dir, "ehr.db")
		if app.sqlDB, err = sql.Open("sqlite", gormphi.SQLiteDSN(path)); err != nil {
			return nil, err
		}
		if app.keysDB, err = sql.Open("sqlite", gormphi.SQLiteDSN(filepath.Join(o.Dir, "keys.db"))); err != nil {
			return fail(err)
		}
		dialector, dialect, app.Database = sqlite.Dialector{DriverName: "sqlite", Conn: app.sqlDB}, keys.SQLite, "sqlite "+path
	case strings.HasPrefix(o.DSN, "postgres://") || strings.HasPrefix(o.DSN, "postgresql://"):
		if app.sqlDB, err = sql.Open("pgx", o.DSN); err != nil {
			return nil, err
		}
		// database/sql keeps 2 idle connections by default: under
		// concurrent requests every other query would open a connection
		// (a PostgreSQL backend process, several milliseconds) and close
		// it again. The pool keeps as many idle connections as the
		// service uses at once, and bounds them well below PostgreSQL's
		// default max_connections (100).
		app.sqlDB.SetMaxOpenConns(64)
		app.sqlDB.SetMaxIdleConns(64)
		app.sqlDB.SetConnMaxIdleTime(5 * time.Minute)
		app.keysDB = app.sqlDB
		dialector, dialect, app.Database = postgres.New(postgres.Config{Conn: app.sqlDB}), keys.Postgres, "postgres"
	default:
		return nil, fmt.Errorf("ehr-backend: -dsn must be a postgres:// URL")
	}
	store, err := keys.NewSQLStore(ctx, app.keysDB, dialect)
	if err != nil {
		return fail(err)
	}
	auditor := o.Auditor
	if auditor == nil {
		if app.Audit, err = keys.NewAuditLog(ctx, app.keysDB, dialect, kek); err != nil {
			return fail(err)
		}
		auditor = app.Audit
	}
	keyring, err := keys.New(keys.Config{KEK: kek, Store: store, Auditor: auditor})
	if err != nil {
		return fail(err)
	}
	// The blind index planner checks the indexes of Patient together
	// against the table the service is sized for (10 million patients),
	// knowing the domains of the indexed fields: about 2^17.3 US last
	// names, and 2^15.7 birth dates (150 years of days). NewCodec refuses
	// a tag set that would single out patients.
	codec, err := fields.NewCodec(fields.Config{Keyring: keyring, Types: []any{&Patient{}},
		ExpectedRows: 10_000_000, SourceBits: map[string]float64{"Last": 17.3, "BirthDate": 15.7}})
	if err != nil {
		return fail(err)
	}
	// GORM's logger would print SQL with its arguments: ciphertexts and
	// blind index values. It stays silent. Timestamps are kept to the
	// microsecond, PostgreSQL's precision, so responses match the rows.
	db, err := gorm.Open(dialector, &gorm.Config{Logger: logger.Discard,
		NowFunc: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }})
	if err != nil {
		return fail(err)
	}
	plugin, err := gormphi.New(gormphi.Config{Codec: codec, Models: []any{&Patient{}}})
	if err != nil {
		return fail(err)
	}
	if err := db.Use(plugin); err != nil {
		return fail(err)
	}
	if err := db.WithContext(ctx).AutoMigrate(&Patient{}); err != nil {
		return fail(err)
	}
	svc, err := NewService(ServiceConfig{DB: db, Auditor: auditor, Logger: o.Logger, Tenant: o.Tenant, Tenants: o.Tenants})
	if err != nil {
		return fail(err)
	}
	app.Handler, app.DB = svc.Handler(), db
	return app, nil
}

// openOrCreateKEK opens the key file at path, creating it (mode 0600) if
// it does not exist.
func openOrCreateKEK(path string) (*local.KEK, error) {
	kek, err := local.New(local.Config{Path: path})
	if errors.Is(err, fs.ErrNotExist) {
		kek, err = local.Create(path, local.Options{KeyID: "local:ehr-backend"})
	}
	return kek, err
}
