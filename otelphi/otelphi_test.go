package otelphi_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/kmstest"
	"github.com/phicrypt/phicrypt/kms/local"
	"github.com/phicrypt/phicrypt/otelphi"
)

// setup returns a Telemetry over an in-memory span recorder and a manual
// metric reader.
func setup(t *testing.T, cfg otelphi.Config) (*otelphi.Telemetry, *tracetest.SpanRecorder, *sdkmetric.ManualReader, trace.Tracer) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	cfg.TracerProvider, cfg.MeterProvider = tp, mp
	tel, err := otelphi.New(cfg)
	require.NoError(t, err)
	return tel, rec, reader, tp.Tracer("app")
}

func newLocal(t *testing.T, id string) kms.KEK {
	t.Helper()
	kek, err := local.Create(filepath.Join(t.TempDir(), "kek.json"), local.Options{KeyID: id})
	require.NoError(t, err)
	return kek
}

// sdkKEK stands for a backend whose SDK traces its own HTTP requests: it
// starts a span from the context it is given, as otelhttp does.
type sdkKEK struct {
	kms.KEK
	tracer trace.Tracer
	fail   error
}

func (k *sdkKEK) KeyID() string { return k.KEK.(kms.Identifier).KeyID() }

func (k *sdkKEK) Wrap(ctx context.Context, dek, aad []byte) (kms.WrappedKey, error) {
	_, span := k.tracer.Start(ctx, "HTTP POST", trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	if k.fail != nil {
		return kms.WrappedKey{}, kms.NewError(ctx, "wrap", k.KeyID(), k.fail, errors.New("HTTP 429 from the KMS"))
	}
	return k.KEK.Wrap(ctx, dek, aad)
}

func (k *sdkKEK) Unwrap(ctx context.Context, wk kms.WrappedKey, aad []byte) ([]byte, error) {
	_, span := k.tracer.Start(ctx, "HTTP POST", trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	return k.KEK.Unwrap(ctx, wk, aad)
}

func spansNamed(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func attrOf(attrs []attribute.KeyValue, k attribute.Key) (attribute.Value, bool) {
	for _, kv := range attrs {
		if kv.Key == k {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// TestKEKSpans checks that a KMS call's span is the parent of the SDK's
// own span (a start hook, not an after-the-fact observer), and is a child
// of the caller's span.
func TestKEKSpans(t *testing.T) {
	ctx := context.Background()
	tel, rec, _, app := setup(t, otelphi.Config{})
	inner := &sdkKEK{KEK: newLocal(t, "local:otel"), tracer: app}
	kek := tel.KEK(inner)
	_, isID := kek.(kms.Identifier)
	assert.True(t, isID, "the wrapper keeps the optional interfaces")

	ctx, req := app.Start(ctx, "GET /patients/7")
	wk, err := kek.Wrap(ctx, make([]byte, 32), []byte("patient=7"))
	require.NoError(t, err)
	_, err = kek.Unwrap(ctx, wk, []byte("patient=8"))
	require.ErrorIs(t, err, kms.ErrUnwrapFailed)
	req.End()

	wraps, unwraps, https := spansNamed(rec, "phicrypt.kms.wrap"), spansNamed(rec, "phicrypt.kms.unwrap"), spansNamed(rec, "HTTP POST")
	require.Len(t, wraps, 1)
	require.Len(t, unwraps, 1)
	require.Len(t, https, 2)
	for i, kmsSpan := range []sdktrace.ReadOnlySpan{wraps[0], unwraps[0]} {
		assert.Equal(t, trace.SpanKindClient, kmsSpan.SpanKind())
		assert.Equal(t, req.SpanContext().SpanID(), kmsSpan.Parent().SpanID(), "the KMS span is the request's child")
		assert.Equal(t, kmsSpan.SpanContext().SpanID(), https[i].Parent().SpanID(), "the SDK's span is the KMS span's child")
		v, ok := attrOf(kmsSpan.Attributes(), otelphi.AttrKMSKeyID)
		require.True(t, ok)
		assert.Equal(t, "local:otel", v.AsString())
	}
	assert.Equal(t, codes.Unset, wraps[0].Status().Code)
	assert.Equal(t, codes.Error, unwraps[0].Status().Code)
	assert.Equal(t, "kms: unwrap failed", unwraps[0].Status().Description)
	v, _ := attrOf(unwraps[0].Attributes(), otelphi.AttrErrorType)
	assert.Equal(t, "unwrap_failed", v.AsString())
}

// TestResilientAttemptSpans checks that, as the Observer of
// kms.Resilient, each attempt is a span with its number, and throttling is
// told apart.
func TestResilientAttemptSpans(t *testing.T) {
	ctx := context.Background()
	tel, rec, reader, app := setup(t, otelphi.Config{})
	inner := &sdkKEK{KEK: newLocal(t, "local:throttled"), tracer: app, fail: kms.ErrThrottled}
	kek := kms.Resilient(inner, kms.ResilientConfig{
		Retry:    kms.RetryConfig{MaxAttempts: 3, Jitter: func(time.Duration) time.Duration { return 0 }},
		Observer: tel.Observer(),
	})
	_, err := kek.Wrap(ctx, make([]byte, 32), nil)
	require.ErrorIs(t, err, kms.ErrThrottled)
	wraps := spansNamed(rec, "phicrypt.kms.wrap")
	require.Len(t, wraps, 3)
	for i, s := range wraps {
		v, _ := attrOf(s.Attributes(), otelphi.AttrKMSAttempt)
		assert.Equal(t, int64(i+1), v.AsInt64())
		v, _ = attrOf(s.Attributes(), otelphi.AttrKMSOutcome)
		assert.Equal(t, "throttled", v.AsString())
		assert.Equal(t, codes.Error, s.Status().Code)
		assert.NotContains(t, s.Status().Description, "429", "the error's text is not recorded")
	}

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	calls := sumOf(t, rm, "phicrypt.kms.calls")
	assert.Equal(t, map[string]int64{"wrap/throttled/local:throttled": 3}, calls)
	assert.NotNil(t, find(rm, "phicrypt.kms.call.duration"))
}

func find(rm metricdata.ResourceMetrics, name string) *metricdata.Metrics {
	for _, sm := range rm.ScopeMetrics {
		for i := range sm.Metrics {
			if sm.Metrics[i].Name == name {
				return &sm.Metrics[i]
			}
		}
	}
	return nil
}

// sumOf returns an Int64 sum's points keyed by the values of their
// attributes, joined with "/" in the order operation, outcome, key id or
// keyring.
func sumOf(t *testing.T, rm metricdata.ResourceMetrics, name string) map[string]int64 {
	t.Helper()
	m := find(rm, name)
	require.NotNil(t, m, name)
	sum, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is a sum", name)
	assert.True(t, sum.IsMonotonic, "%s is a counter", name)
	out := map[string]int64{}
	for _, dp := range sum.DataPoints {
		var parts []string
		for _, k := range []attribute.Key{otelphi.AttrKeyring, otelphi.AttrKMSOperation, otelphi.AttrKMSOutcome, otelphi.AttrKMSKeyID} {
			if v, ok := dp.Attributes.Value(k); ok {
				parts = append(parts, v.AsString())
			}
		}
		if dp.Value != 0 {
			out[strings.Join(parts, "/")] = dp.Value
		}
	}
	return out
}

// TestKeyringMetrics checks the metrics read from Keyring.Stats against a
// counting KEK and what the test did.
func TestKeyringMetrics(t *testing.T) {
	ctx := context.Background()
	tel, _, reader, _ := setup(t, otelphi.Config{})
	kek := newLocal(t, "local:ring")
	store := keys.NewMemoryStore()
	inst, inst2 := kmstest.Instrument(kek), kmstest.Instrument(kek)
	kr, err := keys.New(keys.Config{KEK: inst, Store: store, MaxMessages: 2, ReserveBlock: 1})
	require.NoError(t, err)
	reg, err := tel.ObserveKeyring("main", kr)
	require.NoError(t, err)
	// A replica on the same store unwraps what the first one wrapped.
	replica, err := keys.New(keys.Config{KEK: inst2, Store: store})
	require.NoError(t, err)
	_, err = tel.ObserveKeyring("replica", replica)
	require.NoError(t, err)

	for range 5 { // three versions: two automatic rotations
		_, err := kr.EncryptionKey(ctx, "patient:1")
		require.NoError(t, err)
	}
	for range 4 {
		_, err := kr.DecryptionKey(ctx, "patient:1", 3)
		require.NoError(t, err)
		_, err = replica.DecryptionKey(ctx, "patient:1", 2)
		require.NoError(t, err)
	}
	_, err = kr.Rotate(ctx, keys.DataKey("patient:1"))
	require.NoError(t, err)
	_, err = kr.Shred(ctx, "patient:1", keys.ShredOptions{})
	require.NoError(t, err)
	_, err = kr.DecryptionKey(ctx, "patient:1", 1)
	require.ErrorIs(t, err, keys.ErrKeyDestroyed)

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	st := kr.Stats()
	one := func(name string) int64 {
		got := sumOf(t, rm, name)
		return got["main"]
	}
	assert.Equal(t, int64(st.CacheHits), one("phicrypt.keyring.cache.hits"))
	assert.Positive(t, one("phicrypt.keyring.cache.hits"))
	assert.Equal(t, int64(st.CacheMisses), one("phicrypt.keyring.cache.misses"))
	assert.Equal(t, int64(st.CacheLoads), one("phicrypt.keyring.cache.loads"))
	assert.Equal(t, int64(4), one("phicrypt.keyring.keys.created"))
	assert.Equal(t, int64(3), one("phicrypt.keyring.rotations"))
	assert.Equal(t, int64(1), one("phicrypt.keyring.shreds"))
	assert.Equal(t, int64(4), one("phicrypt.keyring.keys.destroyed"))
	assert.Equal(t, int64(1), one("phicrypt.keyring.denials"))
	kmsCalls := sumOf(t, rm, "phicrypt.keyring.kms.calls")
	require.Positive(t, inst2.Unwraps())
	assert.Equal(t, map[string]int64{
		"main/wrap/success":      inst.Wraps(),
		"replica/unwrap/success": inst2.Unwraps(),
	}, kmsCalls, "the keyrings' KMS calls match the counting KEKs")
	assert.Equal(t, int64(0), inst.Unwraps())
	assert.Equal(t, int64(0), inst2.Wraps())
	assert.Equal(t, int64(3), sumOf(t, rm, "phicrypt.keyring.cache.hits")["replica"])

	// Unregistered, the keyring is no longer read.
	require.NoError(t, reg.Unregister())
	rm = metricdata.ResourceMetrics{}
	require.NoError(t, reader.Collect(ctx, &rm))
	hits := sumOf(t, rm, "phicrypt.keyring.cache.hits")
	assert.NotContains(t, hits, "main")
	assert.Contains(t, hits, "replica")

	_, err = tel.ObserveKeyring("none", nil)
	assert.Error(t, err)
}

// recorder is an Auditor that keeps events.
type recorder struct{ events []keys.Event }

func (r *recorder) Audit(_ context.Context, e keys.Event) error {
	r.events = append(r.events, e)
	return nil
}

// TestAuditSpanEvents checks that audit events become span events of the
// caller's span, pass on to the next Auditor, and carry no PHI: the scope
// (a patient) and the principal only when asked for.
func TestAuditSpanEvents(t *testing.T) {
	const patient = "patient:MRN-4471"
	for _, tc := range []struct {
		name      string
		cfg       otelphi.Config
		scope     string
		principal bool
	}{
		{name: "default"},
		{name: "mapped", cfg: otelphi.Config{AuditScope: func(s string) string { return strings.SplitN(s, "/", 2)[0] }, AuditPrincipal: true}, scope: "tenant:st-mary", principal: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			tel, rec, _, app := setup(t, tc.cfg)
			next := &recorder{}
			kr, err := keys.New(keys.Config{KEK: newLocal(t, "local:audit"), Store: keys.NewMemoryStore(), Auditor: tel.Auditor(next)})
			require.NoError(t, err)
			ctx = keys.WithPrincipal(keys.WithPurpose(ctx, "treatment"), "dr.house")
			ctx, span := app.Start(ctx, "POST /patients")
			scope := "tenant:st-mary/" + patient
			_, err = kr.EncryptionKey(ctx, scope)
			require.NoError(t, err)
			_, err = kr.Destroy(ctx, scope)
			require.NoError(t, err)
			span.End()

			require.NotEmpty(t, next.events, "events pass on to the next Auditor")
			ended := spansNamed(rec, "POST /patients")
			require.Len(t, ended, 1)
			evs := ended[0].Events()
			var names []string
			for _, ev := range evs {
				names = append(names, ev.Name)
			}
			assert.Contains(t, names, "phicrypt.key.create")
			assert.Contains(t, names, "phicrypt.key.destroy")
			// Every audit event of the request is on its span (the metadata
			// MAC key's own events included).
			assert.Len(t, evs, len(next.events))
			for _, ev := range evs {
				all := fmt.Sprint(ev.Attributes)
				assert.NotContains(t, all, "MRN-4471", "no patient identifier")
				v, ok := attrOf(ev.Attributes, otelphi.AttrKeyScope)
				if tc.scope == "" {
					assert.False(t, ok, "no scope by default")
				} else if ok {
					assert.Equal(t, tc.scope, v.AsString())
				}
				_, ok = attrOf(ev.Attributes, otelphi.AttrKeyPrincipal)
				assert.Equal(t, tc.principal, ok)
				v, _ = attrOf(ev.Attributes, otelphi.AttrKeyPurpose)
				assert.Equal(t, "treatment", v.AsString())
			}
			create := evs[indexOf(names, "phicrypt.key.create")]
			v, _ := attrOf(create.Attributes, otelphi.AttrKeyKEKID)
			assert.Equal(t, "local:audit", v.AsString())
			v, _ = attrOf(create.Attributes, otelphi.AttrKeyOutcome)
			assert.Equal(t, "success", v.AsString())
		})
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// TestAuditorNextError checks that the next Auditor's error is returned,
// so that a fail-closed keyring fails.
func TestAuditorNextError(t *testing.T) {
	tel, _, _, _ := setup(t, otelphi.Config{})
	boom := errors.New("audit log down")
	err := tel.Auditor(failing{boom}).Audit(context.Background(), keys.Event{Op: keys.OpCreate})
	assert.ErrorIs(t, err, boom)
	assert.NoError(t, tel.Auditor(nil).Audit(context.Background(), keys.Event{Op: keys.OpCreate}))
}

type failing struct{ err error }

func (f failing) Audit(context.Context, keys.Event) error { return f.err }

func TestOutcome(t *testing.T) {
	ctx := context.Background()
	for err, want := range map[error]string{
		nil:                      "success",
		kms.ErrThrottled:         "throttled",
		kms.ErrUnavailable:       "unavailable",
		kms.ErrCircuitOpen:       "unavailable",
		kms.ErrPermissionDenied:  "permission_denied",
		kms.ErrKeyNotFound:       "key_not_found",
		kms.ErrUnwrapFailed:      "unwrap_failed",
		kms.ErrInvalidInput:      "invalid_input",
		context.Canceled:         "canceled",
		context.DeadlineExceeded: "deadline_exceeded",
	} {
		var e error
		if err != nil {
			e = kms.NewError(ctx, "wrap", "local:x", err, nil)
		}
		assert.Equal(t, want, otelphi.Outcome(e), "%v", err)
	}
}

// TestParentScopeNotInKEKID creates keys under a parent key (keys.Config
// Parent), whose audit events name the parent key, scope included, in
// their KEK id: the attribute carries the parent key's version, and its
// scope only as AuditScope maps it.
func TestParentScopeNotInKEKID(t *testing.T) {
	for name, tc := range map[string]struct {
		auditScope func(string) string
		want       string
	}{
		"no scopes":     {nil, keys.ParentWrapPrefix + "1"},
		"scopes mapped": {func(s string) string { return "hashed-" + fmt.Sprint(len(s)) }, keys.ParentWrapPrefix + "1:hashed-15"},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			tel, rec, _, app := setup(t, otelphi.Config{AuditScope: tc.auditScope})
			kr, err := keys.New(keys.Config{KEK: newLocal(t, "local:parent"), Store: keys.NewMemoryStore(),
				Auditor: tel.Auditor(nil), Parent: keys.TenantParent})
			require.NoError(t, err)
			ctx, span := app.Start(ctx, "req")
			_, err = kr.EncryptionKey(ctx, "tenant:MRN-4471/patient/p-1")
			require.NoError(t, err)
			span.End()
			var kekIDs []string
			for _, ev := range spansNamed(rec, "req")[0].Events() {
				assert.NotContains(t, fmt.Sprint(ev.Attributes), "MRN-4471", ev.Name)
				if v, ok := attrOf(ev.Attributes, otelphi.AttrKeyKEKID); ok {
					kekIDs = append(kekIDs, v.AsString())
				}
			}
			assert.Contains(t, kekIDs, tc.want, "the child's key, wrapped under the parent key")
			assert.Contains(t, kekIDs, "local:parent", "the parent's key, wrapped by the KEK")
		})
	}
}
