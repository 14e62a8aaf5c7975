package fhir

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"
)

// NDJSON limits and defaults.
const (
	// DefaultMaxLineSize is the default NDJSONOptions.MaxLineSize, 16 MiB.
	DefaultMaxLineSize = 16 << 20
	// DefaultProgressInterval is the default NDJSONOptions.ProgressInterval.
	DefaultProgressInterval = time.Second
	// readBufferSize is the read buffer; longer lines are assembled from
	// several reads.
	readBufferSize = 64 << 10
)

// ErrLineTooLong means an NDJSON line is longer than
// NDJSONOptions.MaxLineSize.
var ErrLineTooLong = errors.New("fhir: NDJSON line too long")

// LineError is a failure at one line of an NDJSON stream. It gives the
// line number (from 1), never the line's content.
type LineError struct {
	Line int64
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("fhir: line %d: %s", e.Line, cause(e.Err)) }

// Unwrap returns the cause.
func (e *LineError) Unwrap() error { return e.Err }

// NDJSONOptions configures EncryptNDJSON and DecryptNDJSON.
type NDJSONOptions struct {
	// Workers is how many lines are encrypted or decrypted at once;
	// runtime.GOMAXPROCS(0) when zero. Output keeps the input's order.
	Workers int
	// MaxLineSize is the longest line accepted, in bytes, without its line
	// break (DefaultMaxLineSize when zero, at most MaxDocumentSize). A
	// longer line fails with ErrLineTooLong before it is read whole.
	MaxLineSize int
	// Progress, if set, is called with the work done so far, at most once
	// per ProgressInterval and once at the end, from the goroutine that
	// called EncryptNDJSON or DecryptNDJSON. It must not block for long:
	// the output waits for it.
	Progress func(Progress)
	// ProgressInterval is the shortest time between two Progress calls
	// (DefaultProgressInterval when zero).
	ProgressInterval time.Duration
}

// Progress is the work an NDJSON stream has done: lines and input bytes
// written to the output, and the time since it started.
type Progress struct {
	Lines   int64
	Bytes   int64
	Elapsed time.Duration
}

// Rate returns the throughput in input bytes per second.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Bytes) / p.Elapsed.Seconds()
}

// EncryptNDJSON reads NDJSON (one resource per line, as in a FHIR bulk
// export) from src, encrypts each line with Encrypt and writes the lines
// to dst in the same order. Lines holding only white space are copied as
// they are. It returns the progress made, and the first error: a
// *LineError naming the failed line, or the context's error once ctx is
// done (checked between lines). On failure, dst has received every line
// before the failed one, and nothing after it: Progress.Lines lines,
// Progress.Bytes input bytes, from which a caller can resume.
//
// Memory stays bounded whatever the input's size: at most 2×Workers+2
// lines are held at once, each at most MaxLineSize, with its output.
func (e *Encryptor) EncryptNDJSON(ctx context.Context, dst io.Writer, src io.Reader, opt NDJSONOptions) (Progress, error) {
	return e.ndjson(ctx, dst, src, opt, e.AppendEncrypt)
}

// DecryptNDJSON is EncryptNDJSON's inverse: it decrypts each line with
// Decrypt.
func (e *Encryptor) DecryptNDJSON(ctx context.Context, dst io.Writer, src io.Reader, opt NDJSONOptions) (Progress, error) {
	return e.ndjson(ctx, dst, src, opt, e.AppendDecrypt)
}

// job is one line on its way through the pipeline.
type job struct {
	line    int64
	in, out []byte
	newline bool // the input line ended with '\n'
	err     error
	done    chan struct{}
}

type lineFunc func(ctx context.Context, dst, doc []byte) ([]byte, error)

// ndjson runs the pipeline: a reader goroutine splits lines and hands each
// job to the workers and, in order, to this goroutine, which writes the
// results as they complete. A fixed set of jobs circulates, which bounds
// memory and applies back pressure to the reader.
func (e *Encryptor) ndjson(parent context.Context, dst io.Writer, src io.Reader, opt NDJSONOptions, fn lineFunc) (Progress, error) {
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	maxLine := opt.MaxLineSize
	switch {
	case maxLine == 0:
		maxLine = DefaultMaxLineSize
	case maxLine < 0 || maxLine > MaxDocumentSize:
		return Progress{}, fmt.Errorf("fhir: MaxLineSize %d is outside 1..%d", maxLine, MaxDocumentSize)
	}
	interval := opt.ProgressInterval
	if interval <= 0 {
		interval = DefaultProgressInterval
	}

	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	inFlight := 2*workers + 2
	free := make(chan *job, inFlight)
	for range inFlight {
		free <- &job{done: make(chan struct{}, 1)}
	}
	ordered := make(chan *job, inFlight)
	work := make(chan *job, inFlight)

	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range work {
				if err := ctx.Err(); err != nil {
					j.err = err
				} else if isBlank(j.in) {
					j.out = append(j.out[:0], j.in...)
				} else if j.out, j.err = fn(ctx, j.out[:0], j.in); j.err != nil {
					j.err = &LineError{Line: j.line, Err: j.err}
				}
				j.done <- struct{}{}
			}
		})
	}
	var stopped error // why the reader stopped early; read after wg.Wait
	wg.Go(func() {
		defer close(work)
		defer close(ordered)
		stopped = readLines(ctx, src, maxLine, free, ordered, work)
	})

	start := time.Now()
	var prog Progress
	lastReport := start
	bw := bufio.NewWriterSize(dst, readBufferSize)
	write := func(j *job) error {
		if _, err := bw.Write(j.out); err != nil {
			return fmt.Errorf("fhir: write: %w", err)
		}
		if j.newline {
			if err := bw.WriteByte('\n'); err != nil {
				return fmt.Errorf("fhir: write: %w", err)
			}
			prog.Bytes++
		}
		prog.Lines++
		prog.Bytes += int64(len(j.in))
		if now := time.Now(); opt.Progress != nil && now.Sub(lastReport) >= interval {
			prog.Elapsed = now.Sub(start)
			opt.Progress(prog)
			lastReport = now
		}
		return nil
	}
	var firstErr error
	for j := range ordered {
		<-j.done
		err := j.err
		if err == nil && firstErr == nil {
			err = write(j)
		}
		if err != nil && firstErr == nil {
			firstErr = err
			cancel() // stop reading; the lines in flight drain below
		}
		// Both buffers may hold plaintext: clear them before reuse.
		clear(j.in)
		clear(j.out)
		j.in, j.out, j.err, j.newline = j.in[:0], j.out[:0], nil, false
		free <- j
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = stopped
	}
	// Flush the lines before a failure too: a caller can resume after them.
	if err := bw.Flush(); err != nil && firstErr == nil {
		firstErr = fmt.Errorf("fhir: write: %w", err)
	}
	prog.Elapsed = time.Since(start)
	if firstErr != nil {
		if err := parent.Err(); err != nil {
			return prog, err // canceled: the lines' errors only echo it
		}
		return prog, firstErr
	}
	if opt.Progress != nil {
		opt.Progress(prog)
	}
	return prog, nil
}

// readLines splits src into jobs. Each job goes to ordered (the writer's
// queue, in input order) and then to work. A read failure or an
// overlong line is handed over as a job that carries the error, so the
// writer reports it after the lines before it. It returns the context's
// error if it stopped because ctx is done.
func readLines(ctx context.Context, src io.Reader, maxLine int, free chan *job, ordered, work chan<- *job) error {
	br := bufio.NewReaderSize(src, readBufferSize)
	for line := int64(1); ; line++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		var j *job
		select {
		case j = <-free:
		case <-ctx.Done():
			return ctx.Err()
		}
		j.line = line
		err := readLine(br, j, maxLine)
		if err == io.EOF && len(j.in) == 0 && !j.newline {
			free <- j // the input ended with its last line break
			return nil
		}
		if err != nil && err != io.EOF {
			if !errors.Is(err, ErrLineTooLong) {
				err = fmt.Errorf("fhir: read: %w", err)
			}
			j.err = &LineError{Line: line, Err: err}
			clear(j.in)
			j.in = j.in[:0]
			j.done <- struct{}{}
			ordered <- j
			return nil
		}
		ordered <- j // never blocks: there are as many slots as jobs
		work <- j
		if err == io.EOF {
			return nil
		}
	}
}

// readLine reads one line into j.in, without its '\n'.
func readLine(br *bufio.Reader, j *job, maxLine int) error {
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			chunk = chunk[:len(chunk)-1]
			j.newline = true
		}
		if len(j.in)+len(chunk) > maxLine {
			return fmt.Errorf("%w: more than %d bytes", ErrLineTooLong, maxLine)
		}
		j.in = append(j.in, chunk...)
		if err != bufio.ErrBufferFull {
			return err
		}
	}
}

func isBlank(b []byte) bool { return len(bytes.TrimLeft(b, " \t\r")) == 0 }
