package fhir_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/fields/fhir"
)

// mixedNDJSON is the bulk Patients with the Synthea bundles (compacted to
// one line each, 0.6 to 1 MB) among them, so that lines take very
// different times and workers finish out of order.
func mixedNDJSON(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	pats := lines(t, bulkPatients)
	bundles := []string{"packt1k_Lemuel304_MacGyver246_e3a0ccfb.json", "fhirdatapipes-hiv_Cecelia952_Romaguera67_f1731e33.json",
		"packt1k_Peggie783_Howell947_7c747494.json", "fhirdatapipes-hiv_Kanisha187_Welch179_b50ae490.json"}
	for i, p := range pats {
		if i%300 == 5 {
			require.NoError(t, json.Compact(&buf, readFile(t, testdata+"fhir-synthea/bundles/"+bundles[i/300])))
			buf.WriteByte('\n')
		}
		buf.Write(p)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// TestNDJSONOrder: with any number of workers, the output has the input's
// lines in order, each the encryption of its input line, and decrypts to
// the input byte for byte.
func TestNDJSONOrder(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	in := mixedNDJSON(t)
	inLines := bytes.Split(bytes.TrimSuffix(in, []byte("\n")), []byte("\n"))
	for _, workers := range []int{1, 2, 8, 32} {
		var enc bytes.Buffer
		p, err := v.compact.EncryptNDJSON(ctx, &enc, bytes.NewReader(in), fhir.NDJSONOptions{Workers: workers})
		require.NoError(t, err)
		assert.Equal(t, int64(len(inLines)), p.Lines)
		assert.Equal(t, int64(len(in)), p.Bytes)
		outLines := bytes.Split(bytes.TrimSuffix(enc.Bytes(), []byte("\n")), []byte("\n"))
		require.Len(t, outLines, len(inLines), "workers %d", workers)
		for i, l := range outLines {
			back, err := v.compact.Decrypt(ctx, l)
			require.NoError(t, err)
			require.Equal(t, string(inLines[i]), string(back), "workers %d: line %d in place", workers, i+1)
		}
		var dec bytes.Buffer
		_, err = v.compact.DecryptNDJSON(ctx, &dec, &enc, fhir.NDJSONOptions{Workers: workers})
		require.NoError(t, err)
		require.True(t, bytes.Equal(in, dec.Bytes()), "workers %d: the stream round-trips", workers)
	}
}

// TestNDJSONLayout: blank lines, CRLF line ends and a last line without a
// line break come out as they went in.
func TestNDJSONLayout(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	p := lines(t, bulkPatients)
	for _, in := range []string{
		"",
		"\n",
		string(p[0]),
		string(p[0]) + "\r\n\r\n" + string(p[1]) + "\n  \n" + string(p[2]),
		"\n\n" + string(p[0]) + "\n",
	} {
		var enc, dec bytes.Buffer
		_, err := v.self.EncryptNDJSON(ctx, &enc, strings.NewReader(in), fhir.NDJSONOptions{Workers: 3})
		require.NoError(t, err)
		assert.Equal(t, strings.Count(in, "\n"), strings.Count(enc.String(), "\n"))
		_, err = v.self.DecryptNDJSON(ctx, &dec, &enc, fhir.NDJSONOptions{Workers: 3})
		require.NoError(t, err)
		assert.Equal(t, in, dec.String())
	}
}

// TestNDJSONMalformedLine: the error names the line, not its content, and
// the lines before it are written.
func TestNDJSONMalformedLine(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	p := lines(t, bulkPatients)
	const secret = "999-66-4242"
	bad := `{"resourceType":"Patient","id":"x","identifier":[{"value":"` + secret + `"}],"birthDate":1990-01-01}`
	var in bytes.Buffer
	for i := range 20 {
		if i == 6 {
			in.WriteString(bad + "\n")
		}
		in.Write(p[i])
		in.WriteByte('\n')
	}
	var out bytes.Buffer
	prog, err := v.compact.EncryptNDJSON(ctx, &out, &in, fhir.NDJSONOptions{Workers: 4})
	require.ErrorIs(t, err, fhir.ErrSyntax)
	var le *fhir.LineError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, int64(7), le.Line)
	assert.NotContains(t, err.Error(), secret)
	assert.NotContains(t, err.Error(), "1990")
	assert.Contains(t, err.Error(), "line 7")
	assert.Equal(t, int64(6), prog.Lines, "the 6 lines before it were written")
	assert.Equal(t, 6, strings.Count(out.String(), "\n"))
}

// TestNDJSONLineTooLong: a line above MaxLineSize fails before it is read
// whole.
func TestNDJSONLineTooLong(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	p := lines(t, bulkPatients)
	in := string(p[0]) + "\n" + string(p[1]) + "\n" + strings.Repeat(" ", 100<<20) + "\n"
	var out bytes.Buffer
	before := heapInUse()
	_, err := v.compact.EncryptNDJSON(ctx, &out, strings.NewReader(in), fhir.NDJSONOptions{MaxLineSize: 1 << 20})
	require.ErrorIs(t, err, fhir.ErrLineTooLong)
	var le *fhir.LineError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, int64(3), le.Line)
	assert.Less(t, heapInUse()-before, int64(16<<20), "the 100 MB line was not buffered")
	_, err = v.compact.EncryptNDJSON(ctx, &out, strings.NewReader(in), fhir.NDJSONOptions{MaxLineSize: -1})
	assert.ErrorContains(t, err, "MaxLineSize")
}

func heapInUse() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// generator is an endless or bounded NDJSON source made of the bulk
// Patients, without holding the stream in memory.
type generator struct {
	lines [][]byte
	n     int // lines left; negative: endless
	i     int
	cur   []byte
}

func (g *generator) Read(p []byte) (int, error) {
	if len(g.cur) == 0 {
		if g.n == 0 {
			return 0, io.EOF
		}
		g.n--
		g.cur = append(g.lines[g.i%len(g.lines)], '\n')
		g.i++
	}
	n := copy(p, g.cur)
	g.cur = g.cur[n:]
	return n, nil
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// peakLiveHeap encrypts n generated lines and returns the largest live
// heap (after a collection) seen during the run.
func peakLiveHeap(t *testing.T, e *fhir.Encryptor, pats [][]byte, n int) (int64, int64) {
	var peak int64
	sample := func(fhir.Progress) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peak = max(peak, int64(m.HeapAlloc))
	}
	var w countingWriter
	p, err := e.EncryptNDJSON(context.Background(), &w, &generator{lines: pats, n: n},
		fhir.NDJSONOptions{Workers: 4, Progress: sample, ProgressInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	require.Equal(t, int64(n), p.Lines)
	return peak, p.Bytes
}

// TestNDJSONBoundedMemory: the live heap does not grow with the input: a
// stream ten times longer peaks at about the same heap.
func TestNDJSONBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams tens of megabytes")
	}
	v := newEnv(t, func(c *fhir.Config) { c.Scope = fhir.FixedScope("tenant:test") })
	pats := lines(t, bulkPatients)
	runtime.GC()
	small, smallBytes := peakLiveHeap(t, v.compact, pats, 2000)
	large, largeBytes := peakLiveHeap(t, v.compact, pats, 20000)
	t.Logf("peak live heap: %.1f MB for %.0f MB of input, %.1f MB for %.0f MB",
		float64(small)/1e6, float64(smallBytes)/1e6, float64(large)/1e6, float64(largeBytes)/1e6)
	assert.Less(t, large, small+8<<20, "the heap does not grow with the input")
	assert.Less(t, large, largeBytes/4, "the stream is not held in memory")
}

// TestNDJSONCancel: cancelling the context stops an endless stream
// promptly, returns the context's error and leaves no goroutine behind.
func TestNDJSONCancel(t *testing.T) {
	v := newEnv(t, nil)
	pats := lines(t, bulkPatients)
	// Warm the keyring up first: its caches keep goroutines of their own.
	_, err := v.compact.EncryptNDJSON(context.Background(), io.Discard, &generator{lines: pats, n: 100}, fhir.NDJSONOptions{})
	require.NoError(t, err)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	var w countingWriter
	done := make(chan struct{})
	var prog fhir.Progress
	go func() {
		defer close(done)
		prog, err = v.compact.EncryptNDJSON(ctx, &w, &generator{lines: pats, n: -1}, fhir.NDJSONOptions{
			Workers:          4,
			ProgressInterval: time.Millisecond,
			Progress: func(p fhir.Progress) {
				if p.Lines >= 200 && calls.Add(1) == 1 {
					cancel()
				}
			},
		})
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("EncryptNDJSON did not stop after cancellation")
	}
	require.ErrorIs(t, err, context.Canceled)
	assert.GreaterOrEqual(t, prog.Lines, int64(200))
	// (Polled here: assert.Eventually would count its own goroutines.)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), before, "no goroutine left behind")

	// A context cancelled before the start: nothing is written.
	for range 20 {
		var out bytes.Buffer
		p, err := v.compact.EncryptNDJSON(ctx, &out, &generator{lines: pats, n: 10}, fhir.NDJSONOptions{})
		require.ErrorIs(t, err, context.Canceled)
		assert.Zero(t, p.Lines)
		assert.Zero(t, out.Len())
	}
}

// TestNDJSONProgress: progress reports count lines and bytes, with a rate,
// and a final report matches the returned progress.
func TestNDJSONProgress(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	in := readFile(t, testdata+"fhir-synthea/bulk-10/Condition.000.ndjson")
	var reports []fhir.Progress
	var out bytes.Buffer
	p, err := v.compact.EncryptNDJSON(ctx, &out, bytes.NewReader(in), fhir.NDJSONOptions{
		Progress: func(p fhir.Progress) { reports = append(reports, p) }, ProgressInterval: time.Nanosecond,
	})
	require.NoError(t, err)
	require.NotEmpty(t, reports)
	assert.Equal(t, p, reports[len(reports)-1])
	assert.Equal(t, int64(555), p.Lines)
	assert.Equal(t, int64(len(in)), p.Bytes)
	assert.Positive(t, p.Rate())
	for i := 1; i < len(reports); i++ {
		assert.GreaterOrEqual(t, reports[i].Lines, reports[i-1].Lines)
	}
	assert.Zero(t, fhir.Progress{}.Rate())
}

type failingReader struct {
	r     io.Reader
	after int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk on fire")
	}
	n, _ := f.r.Read(p[:min(len(p), f.after)])
	f.after -= n
	return n, nil
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestNDJSONIOErrors(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, nil)
	in := readFile(t, testdata+"fhir-synthea/bulk-10/Patient.000.ndjson")
	var out bytes.Buffer
	_, err := v.compact.EncryptNDJSON(ctx, &out, &failingReader{r: bytes.NewReader(in), after: 10000}, fhir.NDJSONOptions{})
	var le *fhir.LineError
	require.ErrorAs(t, err, &le)
	assert.ErrorContains(t, err, "disk on fire")
	assert.Equal(t, int64(bytes.Count(in[:10000], []byte("\n"))+1), le.Line)

	_, err = v.compact.EncryptNDJSON(ctx, failingWriter{}, bytes.NewReader(in), fhir.NDJSONOptions{})
	assert.ErrorContains(t, err, "disk full")

	// Decrypting a stream that is not encrypted fails at its first line.
	_, err = v.compact.DecryptNDJSON(ctx, &out, bytes.NewReader(in), fhir.NDJSONOptions{})
	require.ErrorIs(t, err, fhir.ErrNotEncrypted)
	require.ErrorAs(t, err, &le)
	assert.Equal(t, int64(1), le.Line)
}

// TestNDJSONScannerCompatible: the output is NDJSON that a line scanner
// reads back, one valid JSON value per line.
func TestNDJSONScannerCompatible(t *testing.T) {
	v := newEnv(t, nil)
	var out bytes.Buffer
	_, err := v.self.EncryptNDJSON(context.Background(), &out, bytes.NewReader(readFile(t, testdata+"fhir-synthea/bulk-10/Encounter.000.ndjson")), fhir.NDJSONOptions{})
	require.NoError(t, err)
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		require.True(t, json.Valid(sc.Bytes()))
		n++
	}
	assert.Equal(t, 1215, n)
}
