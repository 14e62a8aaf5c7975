// Package otelphi reports phicrypt's key operations to OpenTelemetry:
// a span around each KMS call, metrics of KMS calls, key caches, rotations
// and crypto-shredding, and audit events as span events, none of them
// carrying PHI.
//
// It is a module of its own (github.com/phicrypt/phicrypt/otelphi), so that
// an application that does not use OpenTelemetry does not pay for it in its
// go.mod. Without OpenTelemetry, keys.Keyring.Stats returns the same
// counters.
//
// # Traces
//
// [Telemetry.KEK] wraps a KEK so that each call runs in a span of its own,
// "phicrypt.kms.wrap", "phicrypt.kms.unwrap" or "phicrypt.kms.rewrap"
// (span kind client). The span starts before the call, through
// kms.ObserverConfig.Start, and the KEK gets its context: the spans that the
// backend's SDK makes for its own HTTP or gRPC requests (Vault's client,
// the AWS, Google Cloud and Azure SDKs when instrumented) are children of
// the KMS span. Under kms.Resilient, pass [Telemetry.Observer] as the
// ResilientConfig's Observer instead, and each attempt is a span with its
// number:
//
//	tel, err := otelphi.New(otelphi.Config{})
//	kek = kms.Resilient(backend, kms.ResilientConfig{Observer: tel.Observer()})
//
// A failed call's span has status Error with the error's kind ("kms:
// throttled", "kms: unwrap failed") as description and the attribute
// error.type; the error's text, which may hold a KMS's own message, is not
// recorded.
//
// # Metrics
//
// From the KEK wrapper, per call: phicrypt.kms.calls (counter) and
// phicrypt.kms.call.duration (histogram, seconds), with the attributes
// phicrypt.kms.operation, phicrypt.kms.outcome and phicrypt.kms.key_id.
// The outcome is "success", "throttled", "unavailable",
// "permission_denied", "key_not_found", "unwrap_failed", "invalid_input",
// "canceled" or "deadline_exceeded".
//
// From keys.Keyring.Stats, through an observable callback that
// [Telemetry.ObserveKeyring] registers, with the attribute
// phicrypt.keyring (the name given): phicrypt.keyring.cache.hits,
// .cache.misses, .cache.loads, .cache.load_errors,
// phicrypt.keyring.kms.calls (by operation and outcome, as above),
// phicrypt.keyring.keys.created, phicrypt.keyring.rotations,
// phicrypt.keyring.shreds, phicrypt.keyring.keys.destroyed and
// phicrypt.keyring.denials. All are monotonic counters.
//
// # Audit events
//
// [Telemetry.Auditor] is a keys.Auditor that adds each audit event to the
// span of its context as a span event named "phicrypt.key.<op>" (for
// example "phicrypt.key.unwrap"), then passes it on to the next Auditor,
// which should be the durable audit log: a span event is sampled, batched
// and dropped like any telemetry, so it is no audit trail of its own.
//
// # PHI
//
// Nothing recorded holds key material, plaintext, ciphertext, AAD, or an
// error's text. Scopes name whose key it is, typically a patient or a
// tenant, and a patient identifier is PHI: the scope is left out of span
// events unless [Config.AuditScope] maps it to something safe to export
// (the tenant part of "tenant:42/patient:7", say). The principal is left out
// unless [Config.AuditPrincipal] is set. Key set names ("data",
// "index:patients.ssn"), versions, KEK ids, uses, outcomes, error classes
// and purposes are recorded. Metrics carry no scope at all.
//
// # Tests
//
// The package's tests run against the OpenTelemetry SDK's in-memory span
// recorder (sdk/trace/tracetest) and a metric ManualReader, with local
// KEKs: they need no collector.
package otelphi

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/phicrypt/phicrypt/otelphi"

// Attribute keys.
const (
	AttrKMSOperation = attribute.Key("phicrypt.kms.operation")
	AttrKMSOutcome   = attribute.Key("phicrypt.kms.outcome")
	AttrKMSKeyID     = attribute.Key("phicrypt.kms.key_id")
	AttrKMSAttempt   = attribute.Key("phicrypt.kms.attempt")
	AttrKMSKeys      = attribute.Key("phicrypt.kms.keys")
	AttrKeyring      = attribute.Key("phicrypt.keyring")
	AttrErrorType    = attribute.Key("error.type")

	AttrKeyOp         = attribute.Key("phicrypt.key.op")
	AttrKeyScope      = attribute.Key("phicrypt.key.scope")
	AttrKeyName       = attribute.Key("phicrypt.key.name")
	AttrKeyVersion    = attribute.Key("phicrypt.key.version")
	AttrKeyKEKID      = attribute.Key("phicrypt.key.kek_id")
	AttrKeyUse        = attribute.Key("phicrypt.key.use")
	AttrKeyFrom       = attribute.Key("phicrypt.key.from")
	AttrKeyTo         = attribute.Key("phicrypt.key.to")
	AttrKeyOutcome    = attribute.Key("phicrypt.key.outcome")
	AttrKeyErrorClass = attribute.Key("phicrypt.key.error_class")
	AttrKeyPrincipal  = attribute.Key("phicrypt.key.principal")
	AttrKeyPurpose    = attribute.Key("phicrypt.key.purpose")
)

// Config configures New.
type Config struct {
	// TracerProvider makes the tracer; otel.GetTracerProvider() when nil.
	TracerProvider trace.TracerProvider
	// MeterProvider makes the meter; otel.GetMeterProvider() when nil.
	MeterProvider metric.MeterProvider

	// AuditScope, when set, maps an audit event's scope to the value of
	// its span event's phicrypt.key.scope attribute; an empty result
	// leaves the attribute out. When nil, scopes are never recorded: they
	// usually name a patient. Never return the scope itself when it may
	// hold a patient identifier.
	AuditScope func(scope string) string
	// AuditPrincipal records the principal of audit events
	// (keys.WithPrincipal) in their span events.
	AuditPrincipal bool
}

// Telemetry makes spans and metrics of phicrypt's key operations. Make one
// per application with New; it is safe for concurrent use.
type Telemetry struct {
	cfg      Config
	tracer   trace.Tracer
	meter    metric.Meter
	calls    metric.Int64Counter
	duration metric.Float64Histogram

	// Instruments of ObserveKeyring.
	cacheHits, cacheMisses, cacheLoads, cacheLoadErrors metric.Int64ObservableCounter
	keyringKMS                                          metric.Int64ObservableCounter
	created, rotations, shreds, destroyed, denials      metric.Int64ObservableCounter
}

// New returns the Telemetry of cfg, with its instruments made.
func New(cfg Config) (*Telemetry, error) {
	tp, mp := cfg.TracerProvider, cfg.MeterProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	t := &Telemetry{cfg: cfg, tracer: tp.Tracer(ScopeName), meter: mp.Meter(ScopeName)}
	var errs []error
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := t.meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	var err error
	t.calls, err = t.meter.Int64Counter("phicrypt.kms.calls", metric.WithUnit("{call}"),
		metric.WithDescription("KMS calls (attempts) by operation and outcome"))
	errs = append(errs, err)
	t.duration, err = t.meter.Float64Histogram("phicrypt.kms.call.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of KMS calls (attempts)"))
	errs = append(errs, err)
	t.cacheHits = counter("phicrypt.keyring.cache.hits", "{lookup}", "Key lookups answered from a keyring's cache")
	t.cacheMisses = counter("phicrypt.keyring.cache.misses", "{lookup}", "Key lookups that missed a keyring's cache")
	t.cacheLoads = counter("phicrypt.keyring.cache.loads", "{load}", "Key loads (store read, KMS unwrap) that cache misses started")
	t.cacheLoadErrors = counter("phicrypt.keyring.cache.load_errors", "{load}", "Key loads that failed")
	t.keyringKMS = counter("phicrypt.keyring.kms.calls", "{call}", "KMS calls of a keyring by operation and outcome")
	t.created = counter("phicrypt.keyring.keys.created", "{key}", "Key versions generated and wrapped")
	t.rotations = counter("phicrypt.keyring.rotations", "{rotation}", "Key rotations, automatic and requested")
	t.shreds = counter("phicrypt.keyring.shreds", "{scope}", "Scopes crypto-shredded")
	t.destroyed = counter("phicrypt.keyring.keys.destroyed", "{key}", "Key versions destroyed")
	t.denials = counter("phicrypt.keyring.denials", "{use}", "Key uses refused for the key's state")
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("otelphi: %w", err)
	}
	return t, nil
}

// Outcome names the outcome of a KMS call for metrics and spans: "success"
// for a nil err, "throttled" for kms.ErrThrottled, else kms.KindOf's kind
// ("unavailable", "permission_denied", "key_not_found", "unwrap_failed",
// "invalid_input", "canceled", "deadline_exceeded").
func Outcome(err error) string {
	if err == nil {
		return "success"
	}
	if errors.Is(err, kms.ErrThrottled) {
		return "throttled"
	}
	return kindName(kms.KindOf(err))
}

func kindName(kind error) string {
	switch kind {
	case nil:
		return "success"
	case kms.ErrPermissionDenied:
		return "permission_denied"
	case kms.ErrKeyNotFound:
		return "key_not_found"
	case kms.ErrUnwrapFailed:
		return "unwrap_failed"
	case kms.ErrInvalidInput:
		return "invalid_input"
	case context.Canceled:
		return "canceled"
	case context.DeadlineExceeded:
		return "deadline_exceeded"
	}
	return "unavailable"
}

// KEK returns kek with each call in a span and counted (see the package
// documentation). The result has the optional interfaces of kek
// (kms.Identifier, kms.Rewrapper, io.Closer).
func (t *Telemetry) KEK(kek kms.KEK) kms.KEK {
	return kms.WithObserver(kek, t.Observer())
}

// Observer returns the hooks that KEK uses, for kms.WithObserver or the
// Observer of a kms.ResilientConfig: a span starts before each call (or
// attempt) and ends after it, and the call is counted.
func (t *Telemetry) Observer() kms.ObserverConfig {
	return kms.ObserverConfig{Start: t.start, Observe: t.observe}
}

func (t *Telemetry) start(ctx context.Context, e kms.Event) context.Context {
	attrs := []attribute.KeyValue{AttrKMSOperation.String(e.Op), AttrKMSAttempt.Int(e.Attempt)}
	if e.KeyID != "" {
		attrs = append(attrs, AttrKMSKeyID.String(e.KeyID))
	}
	if e.Keys != 1 {
		attrs = append(attrs, AttrKMSKeys.Int(e.Keys))
	}
	ctx, _ = t.tracer.Start(ctx, "phicrypt.kms."+e.Op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx
}

func (t *Telemetry) observe(ctx context.Context, e kms.Event) {
	outcome := Outcome(e.Err)
	if e.Err == nil && e.Kind != nil {
		outcome = kindName(e.Kind)
	}
	attrs := metric.WithAttributes(AttrKMSOperation.String(e.Op), AttrKMSOutcome.String(outcome), AttrKMSKeyID.String(e.KeyID))
	t.calls.Add(ctx, 1, attrs)
	t.duration.Record(ctx, e.Duration.Seconds(), attrs)

	span := trace.SpanFromContext(ctx)
	if e.KeyID != "" {
		span.SetAttributes(AttrKMSKeyID.String(e.KeyID))
	}
	span.SetAttributes(AttrKMSOutcome.String(outcome))
	if outcome != "success" {
		desc := "kms: " + outcome
		if e.Kind != nil {
			desc = e.Kind.Error()
		}
		if outcome == "throttled" {
			desc = kms.ErrThrottled.Error()
		}
		span.SetAttributes(AttrErrorType.String(outcome))
		span.SetStatus(codes.Error, desc)
	}
	span.End()
}

// StatsSource is what ObserveKeyring reads: *keys.Keyring.
type StatsSource interface {
	Stats() keys.Stats
}

// ObserveKeyring reports kr's Stats as the phicrypt.keyring.* metrics with
// the attribute phicrypt.keyring=name, read at each collection. Give each
// keyring of the application its own name (not a scope or anything that
// may name a patient). Unregister the result when the keyring is gone.
func (t *Telemetry) ObserveKeyring(name string, kr StatsSource) (metric.Registration, error) {
	if kr == nil {
		return nil, errors.New("otelphi: ObserveKeyring needs a keyring")
	}
	ring := AttrKeyring.String(name)
	set := metric.WithAttributes(ring)
	reg, err := t.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := kr.Stats()
		o.ObserveInt64(t.cacheHits, clamp(s.CacheHits), set)
		o.ObserveInt64(t.cacheMisses, clamp(s.CacheMisses), set)
		o.ObserveInt64(t.cacheLoads, clamp(s.CacheLoads), set)
		o.ObserveInt64(t.cacheLoadErrors, clamp(s.CacheLoadErrors), set)
		o.ObserveInt64(t.created, clamp(s.Created), set)
		o.ObserveInt64(t.rotations, clamp(s.Rotations), set)
		o.ObserveInt64(t.shreds, clamp(s.Shreds), set)
		o.ObserveInt64(t.destroyed, clamp(s.VersionsDestroyed), set)
		o.ObserveInt64(t.denials, clamp(s.Denied), set)
		for _, op := range []struct {
			name string
			c    keys.KMSCounts
		}{{"wrap", s.Wrap}, {"unwrap", s.Unwrap}, {"rewrap", s.Rewrap}} {
			for outcome, n := range byOutcome(op.c) {
				o.ObserveInt64(t.keyringKMS, clamp(n), metric.WithAttributes(ring, AttrKMSOperation.String(op.name), AttrKMSOutcome.String(outcome)))
			}
		}
		return nil
	}, t.cacheHits, t.cacheMisses, t.cacheLoads, t.cacheLoadErrors, t.keyringKMS,
		t.created, t.rotations, t.shreds, t.destroyed, t.denials)
	if err != nil {
		return nil, fmt.Errorf("otelphi: %w", err)
	}
	return reg, nil
}

// byOutcome returns c's counts by outcome name.
func byOutcome(c keys.KMSCounts) map[string]uint64 {
	return map[string]uint64{
		"success": c.Success, "throttled": c.Throttled, "unavailable": c.Unavailable,
		"permission_denied": c.PermissionDenied, "key_not_found": c.KeyNotFound,
		"unwrap_failed": c.UnwrapFailed, "invalid_input": c.InvalidInput,
		"canceled": c.Canceled, "deadline_exceeded": c.DeadlineExceeded,
	}
}

func clamp(n uint64) int64 { return int64(min(n, 1<<63-1)) }

// Auditor returns a keys.Auditor that adds each event to the span of its
// context as a span event without PHI (see the package documentation),
// then passes it to next, if not nil, and returns next's error. Use it as
// keys.Config.Auditor in front of the durable audit log.
func (t *Telemetry) Auditor(next keys.Auditor) keys.Auditor {
	return &auditor{t: t, next: next}
}

type auditor struct {
	t    *Telemetry
	next keys.Auditor
}

var _ keys.Auditor = (*auditor)(nil)

func (a *auditor) Audit(ctx context.Context, e keys.Event) error {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("phicrypt.key."+string(e.Op), trace.WithTimestamp(e.Time), trace.WithAttributes(a.t.auditAttrs(e)...))
	}
	if a.next == nil {
		return nil
	}
	return a.next.Audit(ctx, e)
}

// kekID returns the KEK id of an audit event as an attribute may carry it.
// A key wrapped under a parent key names it by version and scope
// (keys.ParentWrapPrefix): the scope goes as AuditScope maps it, or not at
// all, as the event's own scope does.
func (t *Telemetry) kekID(id string) string {
	rest, ok := strings.CutPrefix(id, keys.ParentWrapPrefix)
	if !ok {
		return id
	}
	version, parent, _ := strings.Cut(rest, ":")
	out := keys.ParentWrapPrefix + version
	if t.cfg.AuditScope != nil && parent != "" {
		if s := t.cfg.AuditScope(parent); s != "" {
			out += ":" + s
		}
	}
	return out
}

// auditAttrs returns the attributes of e's span event: never the scope
// unless AuditScope maps it (the parent scope in a KEK id included), never
// the principal unless AuditPrincipal.
func (t *Telemetry) auditAttrs(e keys.Event) []attribute.KeyValue {
	attrs := []attribute.KeyValue{AttrKeyOp.String(string(e.Op)), AttrKeyOutcome.String(string(e.Outcome))}
	if t.cfg.AuditScope != nil {
		if s := t.cfg.AuditScope(e.Scope); s != "" {
			attrs = append(attrs, AttrKeyScope.String(s))
		}
	}
	if e.Version != 0 {
		attrs = append(attrs, AttrKeyVersion.Int64(int64(e.Version)))
	}
	if e.From != 0 || e.To != 0 {
		attrs = append(attrs, AttrKeyFrom.String(e.From.String()), AttrKeyTo.String(e.To.String()))
	}
	if t.cfg.AuditPrincipal && e.Principal != "" {
		attrs = append(attrs, AttrKeyPrincipal.String(e.Principal))
	}
	for _, kv := range []struct {
		k attribute.Key
		v string
	}{{AttrKeyName, e.Key}, {AttrKeyKEKID, t.kekID(e.KEKID)}, {AttrKeyUse, e.Use}, {AttrKeyErrorClass, e.ErrorClass}, {AttrKeyPurpose, e.Purpose}} {
		if kv.v != "" {
			attrs = append(attrs, kv.k.String(kv.v))
		}
	}
	return attrs
}
