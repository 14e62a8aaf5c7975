package keycache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type val struct{ n int }

func loader(calls *atomic.Int64, v *val) func(context.Context) (*val, error) {
	return func(context.Context) (*val, error) {
		calls.Add(1)
		return v, nil
	}
}

func TestHitMissAndAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := New[*val](Config{MaxEntries: 10, MaxAge: time.Minute})
		var calls atomic.Int64
		v1 := &val{1}
		got, err := c.Get(ctx, "k", loader(&calls, v1))
		require.NoError(t, err)
		assert.Same(t, v1, got)
		got, _ = c.Get(ctx, "k", loader(&calls, &val{2}))
		assert.Same(t, v1, got)
		assert.Equal(t, int64(1), calls.Load())
		hit, ok := c.LookupBytes([]byte("k"))
		assert.True(t, ok)
		assert.Same(t, v1, hit)

		advance(time.Minute - time.Nanosecond)
		_, ok = c.Lookup("k")
		assert.True(t, ok)
		advance(time.Nanosecond)
		_, ok = c.Lookup("k")
		assert.False(t, ok, "an entry expires at MaxAge")
		assert.Equal(t, 0, c.Len(), "and is removed")
		v3 := &val{3}
		got, _ = c.Get(ctx, "k", loader(&calls, v3))
		assert.Same(t, v3, got)
		assert.Equal(t, int64(2), calls.Load())
	})
}

func TestEvictionIsSecondChance(t *testing.T) {
	ctx := context.Background()
	c := New[*val](Config{MaxEntries: 2, MaxAge: time.Hour})
	var calls atomic.Int64
	present := func(k string) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.entries[k] != nil
	}
	c.Get(ctx, "a", loader(&calls, &val{1}))
	c.Get(ctx, "b", loader(&calls, &val{2}))
	c.Lookup("a") // a is referenced, b is not
	c.Get(ctx, "c", loader(&calls, &val{3}))
	assert.True(t, present("a"), "a referenced entry gets a second chance")
	assert.False(t, present("b"), "the unreferenced entry is evicted")

	// With every entry referenced, one pass clears the bits and the next
	// evicts: the cache still never exceeds MaxEntries.
	c.Lookup("a")
	c.Lookup("c")
	c.Get(ctx, "d", loader(&calls, &val{4}))
	assert.True(t, present("d"))
	assert.Equal(t, 2, c.Len())
}

func TestFailedLoadNotCached(t *testing.T) {
	ctx := context.Background()
	c := New[*val](Config{MaxEntries: 2, MaxAge: time.Hour})
	boom := errors.New("boom")
	_, err := c.Get(ctx, "k", func(context.Context) (*val, error) { return nil, boom })
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, 0, c.Len())
}

func TestDisabled(t *testing.T) {
	ctx := context.Background()
	c := New[*val](Config{MaxEntries: 2, MaxAge: 0})
	var calls atomic.Int64
	c.Get(ctx, "k", loader(&calls, &val{1}))
	c.Get(ctx, "k", loader(&calls, &val{1}))
	assert.Equal(t, int64(2), calls.Load())
}

func TestConcurrentMissesLoadOnce(t *testing.T) {
	ctx := context.Background()
	c := New[*val](Config{MaxEntries: 10, MaxAge: time.Hour})
	var calls atomic.Int64
	release := make(chan struct{})
	v := &val{7}
	load := func(context.Context) (*val, error) {
		calls.Add(1)
		<-release
		return v, nil
	}
	var wg sync.WaitGroup
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := c.Get(ctx, "k", load)
			assert.NoError(t, err)
			assert.Same(t, v, got)
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	assert.Equal(t, int64(1), calls.Load())
}

func TestWaiterContextAndLeaderCancellation(t *testing.T) {
	c := New[*val](Config{MaxEntries: 10, MaxAge: time.Hour})
	started := make(chan struct{})
	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	go func() {
		c.Get(leaderCtx, "k", func(ctx context.Context) (*val, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		})
	}()
	<-started

	// A waiter whose own context ends stops waiting.
	wctx, cancelWaiter := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelWaiter()
	_, err := c.Get(wctx, "k", func(context.Context) (*val, error) { t.Error("waiter must not load"); return nil, nil })
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	// A live waiter retries when the leader gives up.
	done := make(chan *val)
	go func() {
		v, err := c.Get(context.Background(), "k", func(context.Context) (*val, error) { return &val{9}, nil })
		assert.NoError(t, err)
		done <- v
	}()
	time.Sleep(20 * time.Millisecond)
	cancelLeader()
	select {
	case v := <-done:
		assert.Equal(t, 9, v.n)
	case <-time.After(2 * time.Second):
		t.Fatal("waiter did not retry after the leader's cancellation")
	}
}

func TestPurgeWinsOverInflightLoad(t *testing.T) {
	ctx := context.Background()
	c := New[*val](Config{MaxEntries: 10, MaxAge: time.Hour})
	inLoad := make(chan struct{})
	finish := make(chan struct{})
	go func() {
		c.Get(ctx, "k", func(context.Context) (*val, error) {
			close(inLoad)
			<-finish
			return &val{1}, nil
		})
	}()
	<-inLoad
	c.Purge()
	close(finish)
	time.Sleep(20 * time.Millisecond)
	_, ok := c.Lookup("k")
	assert.False(t, ok, "a load that started before Purge must not be cached")

	c.Get(ctx, "k", func(context.Context) (*val, error) { return &val{2}, nil })
	c.Delete("k")
	_, ok = c.Lookup("k")
	assert.False(t, ok)
}

// TestAddSinceLosesToDelete checks that a value obtained before a Delete
// or Purge is not cached by AddSince after it, as Get's own loads are not.
func TestAddSinceLosesToDelete(t *testing.T) {
	c := New[*val](Config{MaxEntries: 10, MaxAge: time.Hour})
	e := c.Epoch()
	require.True(t, c.AddSince("k", &val{1}, e), "nothing deleted since")
	_, ok := c.Lookup("k")
	assert.True(t, ok)

	e = c.Epoch()
	c.Delete("k") // e.g. the key was destroyed while v was being created
	assert.False(t, c.AddSince("k", &val{2}, e))
	_, ok = c.Lookup("k")
	assert.False(t, ok, "a value obtained before Delete must not be cached after it")

	e = c.Epoch()
	c.Purge()
	assert.False(t, c.AddSince("k", &val{3}, e))
	assert.Zero(t, c.Len())

	e = c.Epoch()
	assert.True(t, c.AddSince("k", &val{4}, e))
	v, ok := c.Lookup("k")
	require.True(t, ok)
	assert.Equal(t, 4, v.n)

	off := New[*val](Config{MaxEntries: 10})
	assert.False(t, off.AddSince("k", &val{1}, off.Epoch()), "caching disabled")
}

func TestForgetOnlyMatchingValue(t *testing.T) {
	ctx := context.Background()
	c := New[*val](Config{MaxEntries: 10, MaxAge: time.Hour})
	v := &val{1}
	c.Get(ctx, "k", func(context.Context) (*val, error) { return v, nil })
	c.Forget("k", &val{1})
	_, ok := c.Lookup("k")
	assert.True(t, ok, "Forget of another value keeps the entry")
	c.Forget("k", v)
	_, ok = c.Lookup("k")
	assert.False(t, ok)
}

func BenchmarkLookupBytesHit(b *testing.B) {
	c := New[*val](Config{MaxEntries: 10, MaxAge: time.Hour})
	c.Get(context.Background(), "tenant:st-mary\x00\x00\x00\x01", func(context.Context) (*val, error) { return &val{1}, nil })
	key := []byte("tenant:st-mary\x00\x00\x00\x01")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.LookupBytes(key); !ok {
			b.Fatal("miss")
		}
	}
}

// TestOnEvict checks that every way out of the cache passes the value to
// OnEvict exactly once, and that values the cache never kept are not
// passed.
func TestOnEvict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var mu sync.Mutex
		evicted := map[*val]int{}
		c := NewWithEvict(Config{MaxEntries: 2, MaxAge: time.Minute}, func(v *val) {
			mu.Lock()
			defer mu.Unlock()
			evicted[v]++
		})
		count := func(v *val) int {
			mu.Lock()
			defer mu.Unlock()
			return evicted[v]
		}
		put := func(key string) *val {
			v := &val{}
			_, err := c.Get(ctx, key, func(context.Context) (*val, error) { return v, nil })
			require.NoError(t, err)
			return v
		}

		// Expired.
		a := put("a")
		advance(time.Minute)
		assert.Equal(t, 1, count(a), "expired")
		// Evicted when full.
		b, d := put("b"), put("d")
		e := put("e")
		assert.Equal(t, 1, count(b)+count(d), "one of two evicted for a third")
		// Replaced by Add, forgotten, deleted, purged.
		assert.True(t, c.Holds("e", e))
		c.Add("e", &val{})
		assert.Equal(t, 1, count(e), "replaced")
		assert.False(t, c.Holds("e", e))
		f := put("f")
		c.Forget("f", f)
		assert.Equal(t, 1, count(f), "forgotten")
		g := put("g")
		c.Delete("g")
		assert.Equal(t, 1, count(g), "deleted")
		h := put("h")
		c.Purge()
		assert.Equal(t, 1, count(h), "purged")
		assert.Equal(t, 0, c.Len())

		// The timers of removed entries do not report them again.
		advance(time.Hour)
		for v, n := range evicted {
			assert.Equal(t, 1, n, "value %p", v)
		}

		// A value loaded while caching is off, or across a Purge, is the
		// caller's: never passed to OnEvict.
		var offEvicted atomic.Int64
		off := NewWithEvict(Config{MaxEntries: 2, MaxAge: -1}, func(*val) { offEvicted.Add(1) })
		_, err := off.Get(ctx, "k", func(context.Context) (*val, error) { return &val{}, nil })
		require.NoError(t, err)
		off.Add("k", &val{})
		off.Purge()
		assert.Zero(t, offEvicted.Load())
		var purgedLoad *val
		_, err = c.Get(ctx, "p", func(context.Context) (*val, error) {
			purgedLoad = &val{}
			c.Purge()
			return purgedLoad, nil
		})
		require.NoError(t, err)
		assert.False(t, c.Holds("p", purgedLoad))
		assert.Equal(t, 0, count(purgedLoad))
	})
}

func TestStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := New[*val](Config{MaxEntries: 10, MaxAge: time.Minute})
		var calls atomic.Int64
		_, ok := c.LookupBytes([]byte("k"))
		require.False(t, ok)
		assert.Equal(t, Stats{}, c.Stats(), "a lookup's miss is counted by the Get that follows it")
		_, err := c.Get(ctx, "k", loader(&calls, &val{1}))
		require.NoError(t, err)
		assert.Equal(t, Stats{Misses: 1, Loads: 1}, c.Stats())
		_, _ = c.Get(ctx, "k", loader(&calls, &val{2}))
		_, _ = c.LookupBytes([]byte("k"))
		_, _ = c.Lookup("k")
		assert.Equal(t, Stats{Hits: 3, Misses: 1, Loads: 1}, c.Stats())

		boom := errors.New("boom")
		_, err = c.Get(ctx, "bad", func(context.Context) (*val, error) { return nil, boom })
		require.ErrorIs(t, err, boom)
		assert.Equal(t, Stats{Hits: 3, Misses: 2, Loads: 2, LoadErrors: 1}, c.Stats())

		// Concurrent misses on one key: one load.
		release := make(chan struct{})
		var started sync.WaitGroup
		started.Add(1)
		var wg sync.WaitGroup
		wg.Go(func() {
			_, _ = c.Get(ctx, "slow", func(context.Context) (*val, error) {
				started.Done()
				<-release
				return &val{3}, nil
			})
		})
		started.Wait()
		for range 4 {
			wg.Go(func() { _, _ = c.Get(ctx, "slow", loader(&calls, &val{4})) })
		}
		for c.Stats().Misses < 7 { // each waiter counts its miss before it waits
			time.Sleep(time.Millisecond)
		}
		close(release)
		wg.Wait()
		assert.Equal(t, Stats{Hits: 3, Misses: 7, Loads: 3, LoadErrors: 1}, c.Stats())

		// Add is not a lookup.
		c.Add("added", &val{5})
		assert.Equal(t, uint64(7), c.Stats().Misses)
	})
}

// advance moves the clock of the testing/synctest bubble the test runs in
// by d, and returns once the timers that came due have run.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// TestSnapshotDropsRemovedValues: lookups read a snapshot of the entries
// without the lock; an entry forgotten, deleted, replaced, evicted or
// expired after the snapshot was taken is neither served from it nor kept
// by it.
func TestSnapshotDropsRemovedValues(t *testing.T) {
	ctx := context.Background()
	removals := map[string]func(c *Cache[*val], v *val){
		"forget":  func(c *Cache[*val], v *val) { c.Forget("k", v) },
		"delete":  func(c *Cache[*val], v *val) { c.Delete("k") },
		"purge":   func(c *Cache[*val], v *val) { c.Purge() },
		"replace": func(c *Cache[*val], v *val) { c.Add("k", &val{2}) },
		"evict":   func(c *Cache[*val], v *val) { c.Add("other", &val{3}) },
	}
	for name, remove := range removals {
		t.Run(name, func(t *testing.T) {
			c := New[*val](Config{MaxEntries: 1, MaxAge: time.Hour})
			v := &val{1}
			c.Add("k", v)
			got, ok := c.Lookup("k") // a miss of the empty snapshot: publishes one
			require.True(t, ok)
			require.Same(t, v, got)
			r := c.read.Load()
			require.NotNil(t, r)
			require.True(t, (*r)["k"].holds(v))

			remove(c, v)
			got, ok = c.Lookup("k")
			if ok {
				assert.NotSame(t, v, got, "a removed value is served")
			}
			assert.Nil(t, (*r)["k"].v.Load(), "the old snapshot keeps the removed value")
		})
	}
	t.Run("expire", func(t *testing.T) {
		c := New[*val](Config{MaxEntries: 1, MaxAge: 20 * time.Millisecond})
		var calls atomic.Int64
		_, err := c.Get(ctx, "k", loader(&calls, &val{1}))
		require.NoError(t, err)
		_, ok := c.Lookup("k")
		require.True(t, ok)
		require.NotNil(t, c.read.Load())
		require.Eventually(t, func() bool { _, ok := c.Lookup("k"); return !ok }, time.Second, 5*time.Millisecond)
	})
}
