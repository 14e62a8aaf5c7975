package otelphi_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/phicrypt/phicrypt/keys"
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/local"
	"github.com/phicrypt/phicrypt/otelphi"
)

// The KEK in spans and metrics, the keyring's counters as metrics, and its
// audit events on the caller's span. An application passes its own
// providers (or none, for the global ones).
func Example() {
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	tel, err := otelphi.New(otelphi.Config{TracerProvider: tp, MeterProvider: mp})
	if err != nil {
		panic(err)
	}

	dir, _ := os.MkdirTemp("", "otelphi")
	defer os.RemoveAll(dir)
	backend, err := local.Create(filepath.Join(dir, "kek.json"), local.Options{KeyID: "local:hospital-main"})
	if err != nil {
		panic(err)
	}
	kek := kms.Resilient(backend, kms.ResilientConfig{Observer: tel.Observer()})
	kr, err := keys.New(keys.Config{KEK: kek, Store: keys.NewMemoryStore(), Auditor: tel.Auditor(nil)})
	if err != nil {
		panic(err)
	}
	if _, err := tel.ObserveKeyring("main", kr); err != nil {
		panic(err)
	}

	ctx, span := tp.Tracer("ehr").Start(ctx, "POST /patients")
	if _, err := kr.EncryptionKey(ctx, "tenant:st-mary"); err != nil {
		panic(err)
	}
	span.End()

	// Two KMS calls: the scope's data key and the keyring's metadata MAC
	// key; one audit event, the data key's creation.
	for _, s := range spans.Ended() {
		fmt.Println("span", s.Name(), "events:", len(s.Events()))
	}
	var rm metricdata.ResourceMetrics
	_ = reader.Collect(ctx, &rm)
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name == "phicrypt.keyring.keys.created" {
			fmt.Println(m.Name, m.Data.(metricdata.Sum[int64]).DataPoints[0].Value)
		}
	}
	// Output:
	// span phicrypt.kms.wrap events: 0
	// span phicrypt.kms.wrap events: 0
	// span POST /patients events: 1
	// phicrypt.keyring.keys.created 1
}
