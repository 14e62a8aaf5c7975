// Package keycache is the bounded cache of unwrapped keys that the envelope
// and keys packages share. It bounds entries by count and age, and
// collapses concurrent misses on one key into a single load, so N
// goroutines that miss on the same data key cause exactly one KMS call.
//
// A hit costs an atomic load of a read-only snapshot of the entries, a map
// lookup and two atomic loads: no lock and no clock read. The snapshot is
// republished, as sync.Map does, once lookups have missed it as many times
// as the cache has entries. An entry that leaves the cache drops its value
// at once, so a snapshot neither serves nor keeps it. Each entry carries a
// timer that expires it at MaxAge, and eviction when full is second-chance
// (CLOCK) on a referenced bit.
//
// Values are typically *envelope.DEK, which hold derived cipher state but
// no raw key bytes: there is nothing for eviction to clear beyond dropping
// the reference. envelope.SelfContained's entries also keep the data key
// itself, from which each stream's key is derived: it passes an OnEvict
// that zeroes those bytes when the entry leaves the cache.
package keycache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Config bounds a cache.
type Config struct {
	// MaxEntries is the largest number of entries. Zero or less means 1.
	MaxEntries int
	// MaxAge is how long an entry serves after it was loaded. Zero or less
	// disables caching: every Get loads (concurrent Gets still share one
	// load).
	MaxAge time.Duration
}

// Cache maps string keys to values of type V. It is safe for concurrent
// use.
type Cache[V comparable] struct {
	cfg     Config
	onEvict func(V)
	mu      sync.Mutex
	entries map[string]*entry[V]
	// read is a snapshot of entries that lookups read without the lock:
	// it may lack newer entries and hold removed ones, which hold no value.
	// readMisses counts the lookups it could not answer since an entry
	// was added that it lacks (stale); both under mu.
	read       atomic.Pointer[map[string]*entry[V]]
	readMisses int
	stale      bool
	flights    map[string]*flight[V]
	// epoch makes Purge and Delete win over loads that started before
	// them.
	epoch uint64

	hits, misses, loads, loadErrors atomic.Uint64
}

// Stats are a cache's counters since New. Lookup and LookupBytes count
// their hits and Get its hits and misses: a caller that looks up first
// calls Get only on a miss, so each lookup counts once. Of the misses,
// those that joined another goroutine's load made no load of their own.
type Stats struct {
	// Hits are lookups answered from the cache.
	Hits uint64
	// Misses are Gets that found no fresh entry.
	Misses uint64
	// Loads are the loads Get ran; LoadErrors those that failed.
	Loads, LoadErrors uint64
}

// Stats returns the cache's counters. Each is read atomically, not all
// together.
func (c *Cache[V]) Stats() Stats {
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Loads: c.loads.Load(), LoadErrors: c.loadErrors.Load()}
}

type entry[V comparable] struct {
	// v is the value, nil once the entry has expired or left the cache:
	// whoever swaps it to nil passes it to onEvict.
	v    atomic.Pointer[V]
	ref  atomic.Bool // referenced since the eviction hand last passed
	stop func() bool
}

type flight[V comparable] struct {
	done chan struct{}
	v    V
	err  error
}

// New returns an empty cache.
func New[V comparable](cfg Config) *Cache[V] {
	if cfg.MaxEntries < 1 {
		cfg.MaxEntries = 1
	}
	return &Cache[V]{cfg: cfg, entries: make(map[string]*entry[V]), flights: make(map[string]*flight[V])}
}

// NewWithEvict is New with onEvict, which is called once with each value
// that leaves the cache: evicted when full, expired, replaced, forgotten,
// deleted or purged. It runs with the cache's lock held, so it must be
// quick and must not call the cache. Other goroutines may still hold the
// value (from an earlier Lookup or Get). Values that the cache never kept
// (caching disabled, or a Purge or Delete during their load) are not
// passed to it: they belong to the callers of Get.
func NewWithEvict[V comparable](cfg Config, onEvict func(V)) *Cache[V] {
	c := New[V](cfg)
	c.onEvict = onEvict
	return c
}

// Lookup returns the fresh value cached under key, without loading.
func (c *Cache[V]) Lookup(key string) (V, bool) {
	if r := c.read.Load(); r != nil {
		if v, ok := (*r)[key].hit(); ok {
			return c.counted(v, true)
		}
	}
	c.mu.Lock()
	e := c.entries[key]
	c.missedRead()
	c.mu.Unlock()
	return c.counted(e.hit())
}

// missedRead counts a lookup that the snapshot could not answer while it
// lacks an entry, and publishes a new snapshot once they are as many as
// the entries, so that the copy costs O(1) per miss over time. Lookups of
// keys that are not cached publish nothing new. c.mu must be held.
func (c *Cache[V]) missedRead() {
	if !c.stale {
		return
	}
	c.readMisses++
	if c.readMisses < len(c.entries) {
		return
	}
	c.stale = false
	r := make(map[string]*entry[V], len(c.entries))
	for k, e := range c.entries {
		r[k] = e
	}
	c.read.Store(&r)
	c.readMisses = 0
}

// counted counts a hit of a lookup.
func (c *Cache[V]) counted(v V, ok bool) (V, bool) {
	if ok {
		c.hits.Add(1)
	}
	return v, ok
}

// LookupBytes is Lookup for a key held in a byte slice; it does not
// allocate.
func (c *Cache[V]) LookupBytes(key []byte) (V, bool) {
	if r := c.read.Load(); r != nil {
		if v, ok := (*r)[string(key)].hit(); ok {
			return c.counted(v, true)
		}
	}
	c.mu.Lock()
	e := c.entries[string(key)]
	c.missedRead()
	c.mu.Unlock()
	return c.counted(e.hit())
}

func (e *entry[V]) hit() (V, bool) {
	var p *V
	if e != nil {
		p = e.v.Load()
	}
	if p == nil {
		var zero V
		return zero, false
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	return *p, true
}

// holds reports whether e holds v.
func (e *entry[V]) holds(v V) bool {
	if e == nil {
		return false
	}
	p := e.v.Load()
	return p != nil && *p == v
}

// Get returns the value cached under key, or loads it with load. While one
// load for a key runs, other Gets of that key wait for its result instead
// of loading again; a waiter whose own context ends stops waiting. A failed
// load is not cached. If the loading caller's context ended, waiters whose
// contexts are still live retry the load themselves.
//
// Callers on a hot path with a key in a byte slice call LookupBytes first,
// then Get on a miss.
func (c *Cache[V]) Get(ctx context.Context, key string, load func(context.Context) (V, error)) (V, error) {
	if v, ok := c.Lookup(key); ok {
		return v, nil
	}
	missed := false
	for {
		c.mu.Lock()
		if v, ok := c.entries[key].hit(); ok {
			c.mu.Unlock()
			if !missed {
				c.hits.Add(1)
			}
			return v, nil
		}
		if !missed {
			missed = true
			c.misses.Add(1)
		}
		if f := c.flights[key]; f != nil {
			c.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				var zero V
				return zero, ctx.Err()
			}
			if f.err != nil && isContextErr(f.err) && ctx.Err() == nil {
				continue // the leader gave up; try again as leader
			}
			return f.v, f.err
		}
		f := &flight[V]{done: make(chan struct{})}
		c.flights[key] = f
		epoch := c.epoch
		c.mu.Unlock()

		c.loads.Add(1)
		f.v, f.err = load(ctx)
		if f.err != nil {
			c.loadErrors.Add(1)
		}

		c.mu.Lock()
		delete(c.flights, key)
		if f.err == nil && c.cfg.MaxAge > 0 && c.epoch == epoch {
			c.store(key, f.v)
		}
		c.mu.Unlock()
		close(f.done)
		return f.v, f.err
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// store adds an entry that expires after MaxAge, evicting first expired
// entries, then entries not referenced since the last pass (second
// chance), while the cache is full. c.mu must be held.
func (c *Cache[V]) store(key string, v V) {
	if old := c.entries[key]; old != nil {
		c.remove(key, old)
	}
	for len(c.entries) >= c.cfg.MaxEntries {
		c.evictOne()
	}
	e := &entry[V]{}
	e.v.Store(&v)
	e.stop = time.AfterFunc(c.cfg.MaxAge, func() { c.expire(key, e) }).Stop
	c.entries[key] = e
	c.stale = true
}

// evictOne removes one entry: an expired one if any, else the first that
// has not been referenced since the hand last passed over it. Map order
// stands in for the clock hand. c.mu must be held.
func (c *Cache[V]) evictOne() {
	for pass := 0; pass < 2; pass++ {
		for key, e := range c.entries {
			if e.v.Load() == nil || !e.ref.Swap(false) {
				c.remove(key, e)
				return
			}
		}
	}
	for key, e := range c.entries { // every entry was referenced twice
		c.remove(key, e)
		return
	}
}

func (c *Cache[V]) remove(key string, e *entry[V]) {
	v := e.v.Swap(nil)
	e.stop()
	delete(c.entries, key)
	c.evicted(v)
}

// evicted passes v, the value of an entry that has left the cache, to
// onEvict, unless another removal of the entry already did (v is nil).
// c.mu must be held.
func (c *Cache[V]) evicted(v *V) {
	if v != nil && c.onEvict != nil {
		c.onEvict(*v)
	}
}

// expire is the timer callback of entry e. The value stops serving before
// the lock is taken.
func (c *Cache[V]) expire(key string, e *entry[V]) {
	v := e.v.Swap(nil)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[key] == e {
		delete(c.entries, key)
	}
	c.evicted(v)
}

// Add caches v under key, replacing any entry, as a successful load
// would. It does nothing when caching is disabled.
func (c *Cache[V]) Add(key string, v V) {
	if c.cfg.MaxAge <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.store(key, v)
}

// Epoch returns the number of Deletes and Purges so far, for AddSince.
func (c *Cache[V]) Epoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// AddSince is Add for a value obtained outside Get: it caches v under key
// only if no Delete or Purge happened since epoch, a result of Epoch taken
// before v was obtained, as Get does for its own loads. A value read
// before a Delete must not be cached after it: the Delete would not have
// removed it. It reports whether v was cached.
func (c *Cache[V]) AddSince(key string, v V, epoch uint64) bool {
	if c.cfg.MaxAge <= 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return false
	}
	c.store(key, v)
	return true
}

// Holds reports whether the cache holds v under key, fresh or not yet
// removed.
func (c *Cache[V]) Holds(key string, v V) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[key].holds(v)
}

// Forget removes the entry of key if it still holds v.
func (c *Cache[V]) Forget(key string, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key]; e.holds(v) {
		c.remove(key, e)
	}
}

// Delete removes the entry of key, whatever it holds, and makes loads that
// started before the call not cache their result.
func (c *Cache[V]) Delete(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key]; e != nil {
		c.remove(key, e)
	}
	c.epoch++
}

// Purge removes every entry, and makes loads that started before the call
// not cache their result.
func (c *Cache[V]) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, e := range c.entries {
		c.remove(key, e)
	}
	c.epoch++
}

// Len returns the number of entries.
func (c *Cache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
