package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/phicrypt/phicrypt/fields"
	"github.com/phicrypt/phicrypt/fields/gormphi"
	"github.com/phicrypt/phicrypt/keys"
)

// Audited operations on PHI, next to the keyring's key operations.
const (
	OpPHIRead   keys.Op = "phi-read"   // a patient's PHI left the service
	OpPHISearch keys.Op = "phi-search" // a search ran (Use names its kind, never its terms)
	OpPHIWrite  keys.Op = "phi-write"  // a patient was created or changed
	OpPHIDelete keys.Op = "phi-delete" // a patient was deleted
)

// Errors the handlers map to HTTP statuses (see status).
var (
	errUnauthenticated = errors.New("missing X-User header")
	errNotFound        = errors.New("patient not found")
	errConflict        = errors.New("a patient with this MRN already exists")
	errBadJSON         = errors.New("malformed JSON body")
	errTooLarge        = errors.New("body too large")
	errUnknownTenant   = errors.New("unknown X-Tenant")
)

// Service is the patients API.
type Service struct {
	db      *gorm.DB // with the gormphi plugin registered
	auditor keys.Auditor
	log     *slog.Logger
	tenant  string
	tenants map[string]bool // Tenant and ServiceConfig.Tenants
}

// ServiceConfig configures a Service.
type ServiceConfig struct {
	// DB has the gormphi plugin registered and the patients table.
	DB *gorm.DB
	// Auditor receives an event for every PHI read, search, write and
	// delete. If it fails, the request fails and returns no PHI.
	Auditor keys.Auditor
	// Logger receives request logs: method, route, status, duration,
	// never a body or query.
	Logger *slog.Logger
	// Tenant is the scope of requests without an X-Tenant header.
	Tenant string
	// Tenants are the other tenants a request may name in X-Tenant. Any
	// other value is refused with 403 before anything runs: a tenant's
	// keys are created on its first use, even by a search, so that an
	// open list would let every caller create key sets (a KMS call each)
	// at will, and a mistyped tenant would silently get patients of its
	// own.
	Tenants []string
}

// NewService returns a Service.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.DB == nil || cfg.Auditor == nil || cfg.Logger == nil || cfg.Tenant == "" {
		return nil, errors.New("ehr-backend: ServiceConfig needs DB, Auditor, Logger and Tenant")
	}
	tenants := map[string]bool{cfg.Tenant: true}
	for _, t := range cfg.Tenants {
		tenants[t] = true
	}
	return &Service{db: cfg.DB, auditor: cfg.Auditor, log: cfg.Logger, tenant: cfg.Tenant, tenants: tenants}, nil
}

// Handler returns the API's routes. Searches by SSN, MRN, or name and
// birth date take their terms in a POST body, so that no SSN or name ends
// up in a URL, an access log or a proxy's cache. The front-desk search
// GET /patients?last=smi&born=1980-03..1985-06 takes a name prefix and a
// range in its query string: the service logs the route, never the query,
// and a proxy in front of it must not log query strings either.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /patients", s.handle(s.create))
	mux.HandleFunc("GET /patients/{id}", s.handle(s.get))
	mux.HandleFunc("PATCH /patients/{id}", s.handle(s.update))
	mux.HandleFunc("DELETE /patients/{id}", s.handle(s.delete))
	mux.HandleFunc("POST /patients/search", s.handle(s.search))
	mux.HandleFunc("GET /patients", s.handle(s.list))
	return mux
}

type tenantKey struct{}

func tenantOf(ctx context.Context) string { return ctx.Value(tenantKey{}).(string) }

// handle adapts a handler that returns a status, a response and an
// error: it authenticates the caller (X-User), sets the tenant, the
// principal and the purpose in the context, writes the JSON response or
// the error, and logs the request without its content.
func (s *Service) handle(h func(r *http.Request) (int, any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		status, body, err := s.serve(r, h)
		if err != nil {
			status, body = s.status(r, err)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store") // responses hold PHI
		w.WriteHeader(status)
		if body != nil {
			json.NewEncoder(w).Encode(body)
		}
		user := r.Header.Get("X-User")
		if checkHeader("X-User", user) != nil {
			user = "(invalid)"
		}
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", slog.String("method", r.Method), slog.String("route", r.Pattern),
			slog.String("user", user), slog.Int("status", status), slog.Duration("duration", time.Since(start)))
	}
}

func (s *Service) serve(r *http.Request, h func(r *http.Request) (int, any, error)) (int, any, error) {
	user := r.Header.Get("X-User")
	if user == "" {
		return 0, nil, errUnauthenticated
	}
	if err := checkHeader("X-User", user); err != nil {
		return 0, nil, err
	}
	tenant := r.Header.Get("X-Tenant")
	if tenant == "" {
		tenant = s.tenant
	}
	if !s.tenants[tenant] {
		return 0, nil, errUnknownTenant
	}
	purpose := r.Header.Get("X-Purpose")
	if purpose == "" {
		purpose = "treatment"
	}
	if err := checkHeader("X-Purpose", purpose); err != nil {
		return 0, nil, err
	}
	ctx := keys.WithPurpose(keys.WithPrincipal(r.Context(), user), purpose)
	ctx = context.WithValue(ctx, tenantKey{}, tenant)
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	return h(r.WithContext(ctx))
}

// maxHeader bounds X-User and X-Purpose, which every audit event and log
// line of the request carries.
const maxHeader = 256

// checkHeader refuses a value of header h longer than maxHeader bytes or
// with a control character: it would be copied into every audit event
// and log line of the request (up to Go's 1 MB header limit).
func checkHeader(h, v string) error {
	if len(v) > maxHeader {
		return &ValidationError{h, fmt.Sprintf("at most %d bytes", maxHeader)}
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return &ValidationError{h, "no control characters"}
		}
	}
	return nil
}

// errorBody is the JSON of an error response.
type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// status maps an error to its HTTP status and body. Server errors are
// logged (phicrypt's errors name fields and columns, never values) and
// answered with a generic message.
func (s *Service) status(r *http.Request, err error) (int, any) {
	var ve *ValidationError
	switch {
	case errors.As(err, &ve):
		return http.StatusBadRequest, errorBody{Error: ve.Rule, Field: ve.Field}
	case errors.Is(err, errBadJSON):
		return http.StatusBadRequest, errorBody{Error: err.Error()}
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge, errorBody{Error: err.Error()}
	case errors.Is(err, errUnauthenticated):
		return http.StatusUnauthorized, errorBody{Error: err.Error()}
	case errors.Is(err, errUnknownTenant):
		return http.StatusForbidden, errorBody{Error: err.Error()}
	case errors.Is(err, errNotFound), errors.Is(err, gorm.ErrRecordNotFound):
		return http.StatusNotFound, errorBody{Error: errNotFound.Error()}
	case errors.Is(err, errConflict):
		return http.StatusConflict, errorBody{Error: err.Error()}
	}
	s.log.LogAttrs(r.Context(), slog.LevelError, "request failed", slog.String("method", r.Method),
		slog.String("route", r.Pattern), slog.String("error", err.Error()))
	return http.StatusInternalServerError, errorBody{Error: "internal error"}
}

// decode reads a JSON body strictly: one value of v's type, no unknown
// field, nothing after it.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge
		}
		return fmt.Errorf("%w: %s", errBadJSON, jsonProblem(err))
	}
	// One value and nothing else: a second patient after the first
	// would be dropped without a word.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge
		}
		return fmt.Errorf("%w: data after the JSON value", errBadJSON)
	}
	return nil
}

// jsonProblem describes a JSON error without quoting the input.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	case errors.As(err, &te):
		return "wrong type for " + te.Field
	}
	return "unreadable body"
}

// audit records an operation on PHI, and fails if the event cannot be
// written. A read records its event before it answers, a write (create,
// update, delete) before its transaction: a change that commits always
// has its event, and a write that then fails (a duplicate MRN, a missing
// patient) leaves the record of an attempt. Recording inside the
// transaction would hold a database connection while the audit log waits
// for another, from the same pool on PostgreSQL.
func (s *Service) audit(ctx context.Context, op keys.Op, key, use string) error {
	err := s.auditor.Audit(ctx, keys.Event{Time: time.Now().UTC(), Op: op, Scope: tenantOf(ctx), Key: key, Use: use,
		Principal: keys.Principal(ctx), Purpose: keys.Purpose(ctx), Outcome: keys.Success})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

func (s *Service) create(r *http.Request) (int, any, error) {
	ctx := r.Context()
	var in PatientInput
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	if err := in.validate(true); err != nil {
		return 0, nil, err
	}
	born, _ := parseDate("birth_date", *in.BirthDate)
	p := &Patient{ID: newID(), TenantID: tenantOf(ctx), MRN: fields.New(*in.MRN), SSN: fields.New(*in.SSN),
		First: fields.New(*in.First), Last: fields.New(*in.Last), BirthDate: fields.New(born)}
	if in.Phone != nil && *in.Phone != "" {
		p.Phone = fields.New(*in.Phone)
	}
	if in.Gender != nil {
		p.Gender = *in.Gender
	}
	// The event first (see audit): no patient without its phi-write.
	if err := s.audit(ctx, OpPHIWrite, "patients/"+p.ID, "create"); err != nil {
		return 0, nil, err
	}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := s.checkMRN(tx, p.MRN.Get(), ""); err != nil {
			return err
		}
		return tx.Create(p).Error
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, output(p), nil
}

// checkMRN fails with errConflict when another patient of the tenant has
// the MRN. (A blind index cannot be a unique constraint, since it is
// truncated; a site that needs one in the database stores the MRN with
// deterministic encryption, which reveals equal values.) It first locks
// the MRN for the rest of tx, so that two transactions cannot both find
// it free and both write it.
func (s *Service) checkMRN(tx *gorm.DB, mrn, self string) error {
	template := &Patient{TenantID: tenantOf(tx.Statement.Context), MRN: fields.New(mrn)}
	if err := lockMRN(tx, template); err != nil {
		return mrnTermError(err)
	}
	found, err := gormphi.Find(tx, template)
	if err != nil {
		return mrnTermError(err)
	}
	for _, f := range found {
		if f.ID != self {
			return errConflict
		}
	}
	return nil
}

// mrnTermError returns err, or a 400 when it is fields.ErrEmptyTerm: an
// MRN of dashes only has no index value, so no uniqueness check.
func mrnTermError(err error) error {
	if errors.Is(err, fields.ErrEmptyTerm) {
		return &ValidationError{"mrn", "want a letter or a digit"}
	}
	return err
}

// lockMRN takes, on PostgreSQL, a transaction-scoped advisory lock on
// template's tenant and MRN. SQLite needs none: its write transactions
// begin IMMEDIATE (gormphi.SQLiteDSN) and so run one at a time. The lock
// is keyed by the MRN's blind index term, which is keyed by the index
// key, so that pg_locks shows no hash an attacker could invert by trying
// every MRN.
func lockMRN(tx *gorm.DB, template *Patient) error {
	if tx.Dialector.Name() != "postgres" {
		return nil
	}
	plugin, ok := tx.Config.Plugins[gormphi.Name].(*gormphi.Plugin)
	if !ok {
		return errors.New("ehr-backend: the gormphi plugin is not registered")
	}
	terms, err := plugin.Codec().IndexTerms(tx.Statement.Context, template, "MRNIndex")
	if err != nil {
		return err
	}
	term, err := terms[0].Value() // the active index key's
	if err != nil {
		return err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s", template.TenantID, term)
	key := int64(binary.BigEndian.Uint64(h.Sum(nil)))
	return tx.Exec("SELECT pg_advisory_xact_lock(?)", key).Error
}

// load reads a patient of the caller's tenant, opened. An update reads
// it with a row lock (see update).
func (s *Service) load(tx *gorm.DB, id string) (*Patient, error) {
	var p Patient
	if err := tx.Where("id = ? AND tenant_id = ?", id, tenantOf(tx.Statement.Context)).Take(&p).Error; err != nil {
		return nil, err
	}
	return &p, nil
}

func (s *Service) get(r *http.Request) (int, any, error) {
	ctx := r.Context()
	p, err := s.load(s.db.WithContext(ctx), r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	if err := s.audit(ctx, OpPHIRead, "patients/"+p.ID, "get"); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, output(p), nil
}

func (s *Service) update(r *http.Request) (int, any, error) {
	ctx := r.Context()
	var in PatientInput
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	if err := in.validate(false); err != nil {
		return 0, nil, err
	}
	// Only the fields present change. The record is read and opened
	// first, so the plugin can recompute a compound index (last name +
	// birth date) when only one of its sources changes.
	changes := map[string]any{}
	set := func(col string, v *string) {
		if v != nil {
			changes[col] = fields.New(*v)
		}
	}
	set("mrn", in.MRN)
	set("ssn", in.SSN)
	set("first", in.First)
	set("last", in.Last)
	if in.BirthDate != nil {
		born, _ := parseDate("birth_date", *in.BirthDate)
		changes["birth_date"] = fields.New(born)
	}
	if in.Phone != nil {
		changes["phone"] = fields.New(*in.Phone)
		if *in.Phone == "" {
			changes["phone"] = nil
		}
	}
	if in.Gender != nil {
		changes["gender"] = *in.Gender
	}
	id := r.PathValue("id")
	// The event first (see audit): no change without its phi-write.
	if len(changes) > 0 {
		if err := s.audit(ctx, OpPHIWrite, "patients/"+id, "update"); err != nil {
			return 0, nil, err
		}
	}
	var p *Patient
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// The row stays locked until the update commits (SELECT ... FOR
		// UPDATE on PostgreSQL; SQLite's write transactions run one at a
		// time): the name + birth date index is computed from the record
		// read, and a concurrent update of the other source, committed
		// between this read and this write, would leave it stale.
		var err error
		if p, err = s.load(tx.Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate}), id); err != nil {
			return err
		}
		if len(changes) == 0 {
			return nil
		}
		if in.MRN != nil {
			if err := s.checkMRN(tx, *in.MRN, p.ID); err != nil {
				return err
			}
		}
		return tx.Model(p).Updates(changes).Error
	})
	if err != nil {
		return 0, nil, err
	}
	// The response is the whole patient, not only what changed: a read.
	if err := s.audit(ctx, OpPHIRead, "patients/"+p.ID, "update"); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, output(p), nil
}

func (s *Service) delete(r *http.Request) (int, any, error) {
	ctx := r.Context()
	id := r.PathValue("id")
	// The event first (see audit): no delete without its phi-delete.
	if err := s.audit(ctx, OpPHIDelete, "patients/"+id, "delete"); err != nil {
		return 0, nil, err
	}
	res := s.db.WithContext(ctx).Where("id = ? AND tenant_id = ?", id, tenantOf(ctx)).Delete(&Patient{})
	if res.Error != nil {
		return 0, nil, res.Error
	}
	if res.RowsAffected == 0 {
		return 0, nil, errNotFound
	}
	return http.StatusNoContent, nil, nil
}

// SearchInput is the body of a search: an SSN, an MRN, or a last name and
// a birth date.
type SearchInput struct {
	SSN       string `json:"ssn"`
	MRN       string `json:"mrn"`
	Last      string `json:"last"`
	BirthDate string `json:"birth_date"`
}

// SearchOutput is the body of a search's response.
type SearchOutput struct {
	Patients []PatientOutput `json:"patients"`
}

func (s *Service) search(r *http.Request) (int, any, error) {
	ctx := r.Context()
	var in SearchInput
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	// gormphi.Find searches the indexes whose sources the template sets:
	// SSNIndex, MRNIndex, or NameDOB (with the birth year and month).
	term := &Patient{TenantID: tenantOf(ctx)}
	var kind string
	switch {
	case in.SSN != "" && in.MRN == "" && in.Last == "" && in.BirthDate == "":
		if !ssnPattern.MatchString(in.SSN) {
			return 0, nil, &ValidationError{"ssn", "want 9 digits, as NNN-NN-NNNN"}
		}
		term.SSN, kind = fields.New(in.SSN), "ssn"
	case in.MRN != "" && in.SSN == "" && in.Last == "" && in.BirthDate == "":
		if !mrnPattern.MatchString(in.MRN) {
			return 0, nil, &ValidationError{"mrn", "want 1 to 32 letters, digits or dashes"}
		}
		term.MRN, kind = fields.New(in.MRN), "mrn"
	case in.Last != "" && in.BirthDate != "" && in.SSN == "" && in.MRN == "":
		born, err := parseDate("birth_date", in.BirthDate)
		if err != nil {
			return 0, nil, err
		}
		term.Last, term.BirthDate, kind = fields.New(in.Last), fields.New(born), "name_dob"
	default:
		return 0, nil, &ValidationError{"search", "give ssn, or mrn, or last and birth_date"}
	}
	found, err := gormphi.Find(s.db.WithContext(ctx), term)
	if errors.Is(err, fields.ErrEmptyTerm) {
		// Normalized away (a blank last name, an MRN of dashes).
		field := map[string]string{"ssn": "ssn", "mrn": "mrn", "name_dob": "last"}[kind]
		return 0, nil, &ValidationError{field, "nothing to search for"}
	}
	if err != nil {
		return 0, nil, err
	}
	if err := s.audit(ctx, OpPHISearch, "patients", kind); err != nil {
		return 0, nil, err
	}
	out := SearchOutput{Patients: []PatientOutput{}}
	for i := range found {
		if err := s.audit(ctx, OpPHIRead, "patients/"+found[i].ID, "search"); err != nil {
			return 0, nil, err
		}
		out.Patients = append(out.Patients, output(&found[i]))
	}
	return http.StatusOK, out, nil
}

// maxListed is the most patients GET /patients returns.
const maxListed = 100

// ListOutput is the body of GET /patients's response.
type ListOutput struct {
	Patients []PatientOutput `json:"patients"`
	// Truncated is true when more than maxListed patients matched: the
	// caller narrows the search.
	Truncated bool `json:"truncated,omitempty"`
}

// list is GET /patients?last=smi&born=1980-03..1985-06: the patients of
// the tenant whose last name starts with last (3 characters or more,
// case and accents' composition aside) and who were born in born (YYYY,
// YYYY-MM or YYYY-MM-DD at each end, both included), either or both.
func (s *Service) list(r *http.Request) (int, any, error) {
	ctx := r.Context()
	last, born := r.URL.Query().Get("last"), r.URL.Query().Get("born")
	tmpl := &Patient{TenantID: tenantOf(ctx)}
	q := fields.NewQuery(tmpl)
	var kind []string
	if last != "" {
		if len(last) > 200 {
			return 0, nil, &ValidationError{"last", "at most 200 characters"}
		}
		tmpl.Last = fields.New(last)
		q.Prefix("Last")
		kind = append(kind, "last_prefix")
	}
	if born != "" {
		rng, err := fields.ParseDateRange(born)
		if err != nil {
			return 0, nil, &ValidationError{"born", "want a range YYYY[-MM[-DD]]..YYYY[-MM[-DD]]"}
		}
		q.DateRange("BirthDate", rng)
		kind = append(kind, "born_range")
	}
	if len(kind) == 0 {
		return 0, nil, &ValidationError{"search", "give last, or born, or both"}
	}
	found, truncated, err := s.queryFirst(s.db.WithContext(ctx), q, maxListed)
	switch {
	case errors.Is(err, fields.ErrPrefixTooShort):
		return 0, nil, &ValidationError{"last", fmt.Sprintf("at least %d characters", minLastPrefix)}
	case errors.Is(err, fields.ErrTooManyTerms):
		return 0, nil, &ValidationError{"born", "range too wide: narrow it, or give whole years"}
	case err != nil:
		return 0, nil, err
	}
	if err := s.audit(ctx, OpPHISearch, "patients", strings.Join(kind, "+")); err != nil {
		return 0, nil, err
	}
	out := ListOutput{Patients: []PatientOutput{}, Truncated: truncated}
	for i := range found {
		if err := s.audit(ctx, OpPHIRead, "patients/"+found[i].ID, "list"); err != nil {
			return 0, nil, err
		}
		out.Patients = append(out.Patients, output(&found[i]))
	}
	return http.StatusOK, out, nil
}

// errEnough stops queryFirst's batches.
var errEnough = errors.New("enough matches")

// queryFirst returns the first n patients (by id) that match q, and
// whether more match. gormphi.Query would read, decrypt and keep every
// match (a search for every birth year: the whole tenant) before the
// answer is cut to n; queryFirst reads the candidates in batches of n+1
// rows, in primary key order, and stops at the (n+1)th match, so that it
// holds at most 2n+1 patients whatever the table's size. A LIMIT alone
// would count candidates, not matches.
func (s *Service) queryFirst(db *gorm.DB, q *fields.Query, n int) ([]Patient, bool, error) {
	search, scope, err := gormphi.Prepare(db, q)
	if err != nil {
		return nil, false, err
	}
	var found, batch []Patient
	err = db.Scopes(scope).FindInBatches(&batch, n+1, func(*gorm.DB, int) error {
		for i := range batch {
			ok, err := search.Match(&batch[i])
			if err != nil {
				return err
			}
			if ok {
				found = append(found, batch[i])
			}
		}
		if len(found) > n {
			return errEnough
		}
		return nil
	}).Error
	clear(batch) // the last batch read: no decrypted PHI left behind
	if err != nil && !errors.Is(err, errEnough) {
		return nil, false, err
	}
	if len(found) > n {
		clear(found[n:])
		return found[:n], true, nil
	}
	return found, false, nil
}
