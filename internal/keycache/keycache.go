// Package keycache is the bounded cache of unwrapped data keys that the
// envelope and keys packages share. It bounds entries by count and age, and
// collapses concurrent misses on one key into a single load, so N
// goroutines that miss on the same data key cause exactly one KMS call.
//
// Values are typically *envelope.DEK, which hold derived cipher state but
// no raw key bytes: there is nothing for eviction to clear beyond dropping
// the reference.
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
	// MaxEntries is the largest number of entries; the least recently used
	// entry is evicted to make room. Zero or less means 1.
	MaxEntries int
	// MaxAge is how long an entry serves after it was loaded. Zero or less
	// disables caching: every Get loads (concurrent Gets still share one
	// load).
	MaxAge time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Cache maps string keys to values of type V. It is safe for concurrent
// use.
type Cache[V comparable] struct {
	cfg     Config
	mu      sync.RWMutex
	entries map[string]*entry[V]
	flights map[string]*flight[V]
	// epoch makes Purge and Forget win over loads that started before them.
	epoch uint64
}

type entry[V comparable] struct {
	v       V
	expires int64        // unix nanoseconds
	used    atomic.Int64 // unix nanoseconds of the last hit
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
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Cache[V]{cfg: cfg, entries: make(map[string]*entry[V]), flights: make(map[string]*flight[V])}
}

// Lookup returns the fresh value cached under key, without loading.
func (c *Cache[V]) Lookup(key string) (V, bool) {
	now := c.cfg.Now().UnixNano()
	c.mu.RLock()
	e := c.entries[key]
	c.mu.RUnlock()
	return e.fresh(now)
}

// LookupBytes is Lookup for a key held in a byte slice; it does not
// allocate.
func (c *Cache[V]) LookupBytes(key []byte) (V, bool) {
	now := c.cfg.Now().UnixNano()
	c.mu.RLock()
	e := c.entries[string(key)]
	c.mu.RUnlock()
	return e.fresh(now)
}

func (e *entry[V]) fresh(now int64) (V, bool) {
	if e == nil || now >= e.expires {
		var zero V
		return zero, false
	}
	e.used.Store(now)
	return e.v, true
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
	for {
		c.mu.Lock()
		if v, ok := c.entries[key].fresh(c.cfg.Now().UnixNano()); ok {
			c.mu.Unlock()
			return v, nil
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

		f.v, f.err = load(ctx)

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

// store adds an entry, evicting expired entries and then the least recently
// used one while the cache is full. c.mu must be held.
func (c *Cache[V]) store(k string, v V) {
	now := c.cfg.Now().UnixNano()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.cfg.MaxEntries {
		for key, e := range c.entries {
			if now >= e.expires {
				delete(c.entries, key)
			}
		}
		for len(c.entries) >= c.cfg.MaxEntries {
			var oldest string
			var used int64
			first := true
			for key, e := range c.entries {
				if u := e.used.Load(); first || u < used {
					oldest, used, first = key, u, false
				}
			}
			delete(c.entries, oldest)
		}
	}
	e := &entry[V]{v: v, expires: now + int64(c.cfg.MaxAge)}
	e.used.Store(now)
	c.entries[k] = e
}

// Forget removes the entry of key if it still holds v.
func (c *Cache[V]) Forget(key string, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key]; e != nil && e.v == v {
		delete(c.entries, key)
	}
}

// Delete removes the entry of key, whatever it holds, and makes loads that
// started before the call not cache their result.
func (c *Cache[V]) Delete(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, key)
	c.epoch++
}

// Purge removes every entry, and makes loads that started before the call
// not cache their result.
func (c *Cache[V]) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	c.epoch++
}

// Len returns the number of entries, fresh or not.
func (c *Cache[V]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
