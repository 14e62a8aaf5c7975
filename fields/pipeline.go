package fields

import (
	"context"
	"errors"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
)

// ErrPipelineDone means Pipeline.Add was called after Pipeline.Wait.
var ErrPipelineDone = errors.New("fields: Add after the pipeline's Wait")

// A Pipeline opens records on other goroutines while its caller goes on
// reading more of them, so that for a large result set decryption overlaps
// the database driver's work instead of following it:
//
//	pl := codec.OpenPipeline(ctx)
//	for rows.Next() {
//		p := new(Patient)
//		if err := rows.Scan(p.Columns()...); err != nil {
//			return errors.Join(err, pl.Wait())
//		}
//		if err := pl.Add(p); err != nil {
//			break // a record failed: Wait says which
//		}
//	}
//	if err := pl.Wait(); err != nil {
//		return err
//	}
//
// Records are handed to up to GOMAXPROCS goroutines spreadChunk (256) at a
// time, in order; fewer records than that are opened by Wait, on the
// caller's goroutine, with no goroutine started. The records added must
// not be read or modified until Wait returns. Wait's error is the one Open
// would return for the same records in a slice: the first failing
// record's, with every record before it opened. A Pipeline is used by one
// goroutine, like the rows it reads, and Wait must be called even when the
// caller stops early, or its goroutines outlive the read.
type Pipeline struct {
	c       *Codec
	ctx     context.Context
	chunk   []any
	sent    int // records handed to the goroutines
	work    chan pipeChunk
	workers int
	wg      sync.WaitGroup
	fail    firstFailure
	done    bool
}

// pipeChunk is a chunk of a Pipeline's records; at is its first record's
// position.
type pipeChunk struct {
	at   int
	recs []any
}

// OpenPipeline returns a Pipeline that opens the records added to it, as
// Open does, checking ctx before each chunk.
func (c *Codec) OpenPipeline(ctx context.Context) *Pipeline {
	return &Pipeline{c: c, ctx: ctx}
}

// Add queues rec, a non-nil pointer to a struct of a tagged type as Scan
// left it, to be opened. It fails with ErrUnsupported for anything else,
// with the type's *TagError if its tags are wrong, with ctx's error once
// it ends, and with a failing record's error once one failed, so that the
// caller can stop reading early (Wait's error is the first in order). Add
// blocks while the goroutines are busy with earlier chunks.
func (pl *Pipeline) Add(rec any) error {
	if pl.done {
		return ErrPipelineDone
	}
	if rv := reflect.ValueOf(rec); rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return ErrUnsupported
	}
	if err := pl.c.Plan(rec); err != nil {
		return err
	}
	if err := pl.fail.err(); err != nil {
		return err
	}
	if err := pl.ctx.Err(); err != nil {
		return err
	}
	if pl.chunk == nil {
		pl.chunk = make([]any, 0, spreadChunk)
	}
	pl.chunk = append(pl.chunk, rec)
	if len(pl.chunk) < spreadChunk {
		return nil
	}
	return pl.send()
}

// send hands the current chunk to the goroutines, starting one more if
// fewer than GOMAXPROCS run.
func (pl *Pipeline) send() error {
	if pl.work == nil {
		pl.work = make(chan pipeChunk, runtime.GOMAXPROCS(0))
	}
	if pl.workers < runtime.GOMAXPROCS(0) {
		pl.workers++
		pl.wg.Go(pl.worker)
	}
	ch := pipeChunk{at: pl.sent, recs: pl.chunk}
	select {
	case pl.work <- ch:
	case <-pl.ctx.Done():
		return pl.ctx.Err()
	}
	pl.sent += len(pl.chunk)
	pl.chunk = nil
	return nil
}

// worker opens the chunks it receives, skipping those after a failure.
func (pl *Pipeline) worker() {
	sc := pl.c.getScratch()
	defer pl.c.putScratch(sc)
	for ch := range pl.work {
		pl.open(ch, sc)
	}
}

// open opens a chunk's records in order, unless a record before the chunk
// already failed, and records its first failure.
func (pl *Pipeline) open(ch pipeChunk, sc *scratch) {
	if pl.fail.before(ch.at) {
		return
	}
	if err := pl.ctx.Err(); err != nil {
		pl.fail.record(ch.at, err)
		return
	}
	var (
		t reflect.Type
		p *plan
	)
	for i, rec := range ch.recs {
		rv := reflect.ValueOf(rec).Elem()
		if rv.Type() != t {
			// Add checked the type's plan: this is a cache hit.
			t = rv.Type()
			p, _ = pl.c.plan(t)
		}
		if err := pl.c.openRecord(pl.ctx, p, rv, sc); err != nil {
			pl.fail.record(ch.at+i, err)
			return
		}
	}
}

// Wait opens the records not handed to the goroutines yet, waits for the
// goroutines, and returns the first failing record's error, or ctx's. A
// second Wait returns the same error.
func (pl *Pipeline) Wait() error {
	if pl.done {
		return pl.fail.err()
	}
	pl.done = true
	if pl.work == nil {
		// No full chunk: everything is opened here, with no goroutine.
		if len(pl.chunk) > 0 {
			sc := pl.c.getScratch()
			pl.open(pipeChunk{at: 0, recs: pl.chunk}, sc)
			pl.c.putScratch(sc)
		}
	} else {
		if len(pl.chunk) > 0 && pl.fail.err() == nil {
			if err := pl.send(); err != nil {
				pl.fail.record(pl.sent, err)
			}
		}
		close(pl.work)
		pl.wg.Wait()
	}
	pl.chunk = nil
	return pl.fail.err()
}

// firstFailure keeps the error of the first failing record of a batch
// whose records are processed out of order: the one at the lowest
// position, as in a serial run.
type firstFailure struct {
	failed atomic.Bool
	mu     sync.Mutex
	at     int
	e      error
}

// record notes that the record at position at failed with e.
func (f *firstFailure) record(at int, e error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.e == nil || at < f.at {
		f.at, f.e = at, e
	}
	f.failed.Store(true)
}

// before reports whether a record before position at failed: the work
// from at on is not needed.
func (f *firstFailure) before(at int) bool {
	if !f.failed.Load() {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.at < at
}

// err returns the first failure's error so far, or nil.
func (f *firstFailure) err() error {
	if !f.failed.Load() {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.e
}
