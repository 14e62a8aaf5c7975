// Package loadgen drives the ehr-backend example with a bounded mix of
// requests from concurrent clients, on loopback only, and reports
// throughput, latency percentiles and errors. The mix is the one of a
// registration desk: half creates, a quarter reads of patients created
// earlier, a quarter searches by SSN.
//
// It refuses any target that is not a loopback address, and follows no
// redirect: it is a tool for measuring the example on one machine, not
// for loading a real service.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Config configures Run.
type Config struct {
	// BaseURL is the service, e.g. http://127.0.0.1:8080. Its host must
	// be a loopback IP address (a name such as localhost is refused: it
	// could resolve elsewhere).
	BaseURL string
	// Clients is the number of concurrent clients (default 16, at most
	// 1,024).
	Clients int
	// Requests is the total number of requests (default 4,000, at most
	// 1,000,000).
	Requests int
	// User is the X-User header (default "loadgen").
	User string
	// Seed makes the patients and the mix reproducible (0: a fixed seed).
	Seed uint64
	// RunID keeps the MRNs of several runs against one database apart.
	RunID string
}

// Result is what Run measured.
type Result struct {
	Requests int
	// Errors counts responses with an unexpected status and transport
	// failures; ByStatus counts every response by kind and status.
	Errors   int
	ByStatus map[string]int
	// FirstErrors holds up to 5 error descriptions (status and body).
	FirstErrors []string
	Elapsed     time.Duration
	// PerSecond is Requests / Elapsed.
	PerSecond float64
	// P50 and P99 are latency percentiles over all requests.
	P50, P99 time.Duration
}

// ErrNotLoopback means the target is not a loopback address.
var ErrNotLoopback = errors.New("loadgen: the target must be a loopback address (127.0.0.0/8 or ::1)")

// ErrOutOfBounds means a Config asks for more requests or clients than a
// run allows.
var ErrOutOfBounds = errors.New("loadgen: above the bounds of a run")

// maxRequests and maxClients bound a run: each client is a goroutine, a
// latency slice and up to one connection.
const (
	maxRequests = 1_000_000
	maxClients  = 1024
)

// Run sends cfg.Requests requests from cfg.Clients clients and reports.
func Run(ctx context.Context, cfg Config) (Result, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return Result{}, fmt.Errorf("loadgen: %w", err)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return Result{}, fmt.Errorf("%w: %q", ErrNotLoopback, u.Host)
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 16
	}
	if cfg.Requests <= 0 {
		cfg.Requests = 4000
	}
	if cfg.Requests > maxRequests {
		return Result{}, fmt.Errorf("%w: %d requests, at most %d", ErrOutOfBounds, cfg.Requests, maxRequests)
	}
	if cfg.Clients > maxClients {
		return Result{}, fmt.Errorf("%w: %d clients, at most %d", ErrOutOfBounds, cfg.Clients, maxClients)
	}
	if cfg.User == "" {
		cfg.User = "loadgen"
	}
	if cfg.RunID == "" {
		cfg.RunID = fmt.Sprint(time.Now().UnixNano())
	}
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients, MaxConnsPerHost: cfg.Clients},
		// A redirect could lead anywhere: it is an unexpected status,
		// never followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()

	r := &run{cfg: cfg, client: client, base: u.String(), byStatus: map[string]int{}}
	jobs := make(chan int)
	var wg sync.WaitGroup
	latencies := make([][]time.Duration, cfg.Clients)
	start := time.Now()
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(c)))
			for i := range jobs {
				t0 := time.Now()
				r.one(ctx, rng, i)
				latencies[c] = append(latencies[c], time.Since(t0))
			}
		}()
	}
send:
	for i := range cfg.Requests {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break send
		}
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(latencies...)
	slices.Sort(all)
	res := Result{Requests: len(all), Errors: r.errors, ByStatus: r.byStatus, FirstErrors: r.firstErrors, Elapsed: elapsed}
	if len(all) > 0 {
		res.PerSecond = float64(len(all)) / elapsed.Seconds()
		res.P50 = all[len(all)*50/100]
		res.P99 = all[min(len(all)-1, len(all)*99/100)]
	}
	return res, ctx.Err()
}

// run is the shared state of one Run.
type run struct {
	cfg    Config
	client *http.Client
	base   string

	mu          sync.Mutex
	created     []created
	byStatus    map[string]int
	errors      int
	firstErrors []string
}

type created struct{ id, ssn string }

// one sends request i: creates for i%4 in {0, 1}, else a read (i%4 == 2)
// or an SSN search (3) of a patient created earlier, or a create while
// there is none.
func (r *run) one(ctx context.Context, rng *rand.Rand, i int) {
	r.mu.Lock()
	var target created
	if n := len(r.created); n > 0 {
		target = r.created[rng.IntN(n)]
	}
	r.mu.Unlock()
	kind := "create"
	if target.id != "" {
		switch i % 4 {
		case 2:
			kind = "read"
		case 3:
			kind = "search"
		}
	}
	var (
		method, path string
		body         any
		want         = http.StatusOK
	)
	switch kind {
	case "create":
		ssn := fmt.Sprintf("9%02d-%02d-%04d", rng.IntN(100), rng.IntN(100), rng.IntN(10000))
		mrn := fmt.Sprintf("MRN-%s-%d", r.cfg.RunID, i)
		born := time.Date(1930+rng.IntN(90), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
		method, path, want = http.MethodPost, "/patients", http.StatusCreated
		body = map[string]string{"mrn": mrn, "ssn": ssn, "first": firstNames[rng.IntN(len(firstNames))],
			"last": lastNames[rng.IntN(len(lastNames))], "birth_date": born, "gender": "F"}
		r.send(ctx, kind, method, path, body, want, func(raw []byte) {
			var out struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(raw, &out) == nil && out.ID != "" {
				r.mu.Lock()
				r.created = append(r.created, created{id: out.ID, ssn: ssn})
				r.mu.Unlock()
			}
		})
		return
	case "read":
		method, path = http.MethodGet, "/patients/"+target.id
	case "search":
		method, path, body = http.MethodPost, "/patients/search", map[string]string{"ssn": target.ssn}
	}
	r.send(ctx, kind, method, path, body, want, nil)
}

func (r *run) send(ctx context.Context, kind, method, path string, body any, want int, ok func([]byte)) {
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		r.fail(kind, "request", err.Error())
		return
	}
	req.Header.Set("X-User", r.cfg.User)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		r.fail(kind, "transport", err.Error())
		return
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != want {
		r.fail(kind, fmt.Sprint(resp.StatusCode), string(raw))
		return
	}
	r.mu.Lock()
	r.byStatus[kind+" "+fmt.Sprint(resp.StatusCode)]++
	r.mu.Unlock()
	if ok != nil {
		ok(raw)
	}
}

func (r *run) fail(kind, status, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors++
	r.byStatus[kind+" "+status]++
	if len(r.firstErrors) < 5 {
		r.firstErrors = append(r.firstErrors, kind+" "+status+": "+detail)
	}
}

var (
	firstNames = []string{"Ana", "Ben", "Chloe", "Dmitri", "Eve", "Farah", "Gus", "Hana", "Ivan", "June"}
	lastNames  = []string{"Smith", "Jonsen", "Nguyen", "Garcia", "Okafor", "Müller", "Kowalski", "Rossi", "Tanaka", "Silva"}
)

// String formats the result on one line.
func (r Result) String() string {
	return fmt.Sprintf("%d requests in %.2fs: %.0f req/s, p50 %.1f ms, p99 %.1f ms, %d errors",
		r.Requests, r.Elapsed.Seconds(), r.PerSecond, float64(r.P50.Microseconds())/1000, float64(r.P99.Microseconds())/1000, r.Errors)
}
