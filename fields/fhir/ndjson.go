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
	// Report, if set, receives what was encrypted (or decrypted) in the
	// lines written to the output (see AppendEncryptReport). It is
	// updated from the goroutine that called EncryptNDJSON or
	// DecryptNDJSON.
	Report *Report
	// Reject, if set, is called with each line that fails, instead of
	// stopping the stream: with its *LineError and the line's input
	// (valid only during the call; empty for a line longer than
	// MaxLineSize, which is skipped unread). The line is left out of the
	// output. If Reject returns nil, the stream goes on with the next
	// line, and the call returns the lines rejected in Progress.Rejected
	// with ErrRejected; if it returns an error, the stream stops with
	// that error. Reject is called in line order, from the goroutine that
	// called EncryptNDJSON or DecryptNDJSON. Read and write failures and
	// the context's end still stop the stream.
	Reject func(err *LineError, line []byte) error
}

// ErrRejected means that lines failed and NDJSONOptions.Reject let the
// stream go on without them: the output is complete but for those lines.
// The error is a *RejectedError.
var ErrRejected = errors.New("fhir: NDJSON lines rejected")

// RejectedError is the outcome of a stream with rejected lines.
type RejectedError struct {
	// Rejected is the number of lines left out of the output.
	Rejected int64
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("fhir: %d NDJSON %s rejected", e.Rejected, plural(e.Rejected, "line", "lines"))
}

// Unwrap returns ErrRejected.
func (e *RejectedError) Unwrap() error { return ErrRejected }

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Progress is the work an NDJSON stream has done: lines written to the
// output, lines rejected (NDJSONOptions.Reject), the input bytes of both,
// and the time since it started.
type Progress struct {
	Lines    int64
	Bytes    int64
	Elapsed  time.Duration
	Rejected int64
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
	return e.ndjson(ctx, dst, src, opt, e.AppendEncryptReport)
}

// DecryptNDJSON is EncryptNDJSON's inverse: it decrypts each line with
// Decrypt.
func (e *Encryptor) DecryptNDJSON(ctx context.Context, dst io.Writer, src io.Reader, opt NDJSONOptions) (Progress, error) {
	return e.ndjson(ctx, dst, src, opt, e.AppendDecryptReport)
}

// job is one line on its way through the pipeline.
type job struct {
	line    int64
	in, out []byte
	newline bool // the input line ended with '\n'
	skipped int  // bytes of an overlong line skipped unread
	err     error
	done    chan struct{}
	rep     *Report // what this line did, when reporting
}

type lineFunc func(ctx context.Context, dst, doc []byte, r *Report) ([]byte, error)

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
		j := &job{done: make(chan struct{}, 1)}
		if opt.Report != nil {
			j.rep = &Report{}
		}
		free <- j
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
				} else if j.out, j.err = fn(ctx, j.out[:0], j.in, j.rep); j.err != nil {
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
		stopped = readLines(ctx, src, maxLine, opt.Reject != nil, free, ordered, work)
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
		opt.Report.Add(j.rep)
		if now := time.Now(); opt.Progress != nil && now.Sub(lastReport) >= interval {
			prog.Elapsed = now.Sub(start)
			opt.Progress(prog)
			lastReport = now
		}
		return nil
	}
	// reject hands a failed line to opt.Reject, and counts it if the
	// stream goes on.
	reject := func(j *job, err error) error {
		var le *LineError
		if !errors.As(err, &le) || isStop(err) {
			return err
		}
		if err := opt.Reject(le, j.in); err != nil {
			return err
		}
		prog.Rejected++
		prog.Bytes += int64(len(j.in)) + int64(j.skipped)
		if j.newline {
			prog.Bytes++
		}
		return nil
	}
	var firstErr error
	for j := range ordered {
		<-j.done
		err := j.err
		switch {
		case firstErr != nil: // draining
		case err == nil:
			err = write(j)
		case opt.Reject != nil:
			err = reject(j, err)
		}
		if err != nil && firstErr == nil {
			firstErr = err
			cancel() // stop reading; the lines in flight drain below
		}
		// Both buffers may hold plaintext: clear them before reuse.
		clear(j.in)
		clear(j.out)
		j.in, j.out, j.err, j.newline, j.skipped = j.in[:0], j.out[:0], nil, false, 0
		if j.rep != nil {
			j.rep.reset()
		}
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
	if prog.Rejected > 0 {
		return prog, &RejectedError{Rejected: prog.Rejected}
	}
	return prog, nil
}

// isStop reports whether a line's error stops the stream whatever
// NDJSONOptions.Reject says: the context's end, or a read failure.
func isStop(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errRead)
}

// errRead marks a failure to read the input.
var errRead = errors.New("fhir: read")

// readLines splits src into jobs. Each job goes to ordered (the writer's
// queue, in input order) and then to work. A read failure or an
// overlong line is handed over as a job that carries the error, so the
// writer reports it after the lines before it. It returns the context's
// error if it stopped because ctx is done.
//
// With skipLong, an overlong line is handed over with its error and
// skipped to its end, and reading goes on.
func readLines(ctx context.Context, src io.Reader, maxLine int, skipLong bool, free chan *job, ordered, work chan<- *job) error {
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
			long := errors.Is(err, ErrLineTooLong)
			if !long {
				err = fmt.Errorf("%w: %w", errRead, err)
			}
			j.err = &LineError{Line: line, Err: err}
			j.skipped += len(j.in)
			clear(j.in)
			j.in = j.in[:0]
			var rest int
			var end error
			if long && skipLong && !j.newline {
				rest, end = skipLine(br, j)
				j.skipped += rest
			}
			j.done <- struct{}{}
			ordered <- j
			if !long || !skipLong || end != nil {
				if end != nil && end != io.EOF {
					return fmt.Errorf("%w: %w", errRead, end)
				}
				return nil
			}
			continue
		}
		ordered <- j // never blocks: there are as many slots as jobs
		work <- j
		if err == io.EOF {
			return nil
		}
	}
}

// skipLine discards the rest of a line, and returns how many bytes it
// skipped and io.EOF (or a read error) if the input ended.
func skipLine(br *bufio.Reader, j *job) (int, error) {
	n := 0
	for {
		chunk, err := br.ReadSlice('\n')
		n += len(chunk)
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			j.newline = true
			return n - 1, nil
		}
		if err != bufio.ErrBufferFull {
			return n, err
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
			j.skipped = len(chunk) // read, not kept
			return fmt.Errorf("%w: more than %d bytes", ErrLineTooLong, maxLine)
		}
		j.in = append(j.in, chunk...)
		if err != bufio.ErrBufferFull {
			return err
		}
	}
}

func isBlank(b []byte) bool { return len(bytes.TrimLeft(b, " \t\r")) == 0 }
