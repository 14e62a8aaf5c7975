package keys

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/phicrypt/phicrypt/internal/keycache"
	"github.com/phicrypt/phicrypt/kms"
)

// Stats are a Keyring's counters since New: how often its caches answered,
// how often it called the KMS and with what outcome, and how many keys it
// rotated and destroyed. They hold no scope, key or other identifier, so
// they are safe to export as metrics; the otelphi module does so with
// OpenTelemetry. Counters only grow: a monitoring system takes rates.
type Stats struct {
	// CacheHits are lookups of unwrapped keys answered from memory: the
	// active key of a scope for encryption, a version for decryption or
	// a blind index key. In steady state almost every lookup is a hit.
	CacheHits uint64
	// CacheMisses are lookups that found no fresh key in memory. Each
	// either loaded the key (CacheLoads) or waited for a load of the same
	// key that another goroutine had started: concurrent misses on one key
	// make one load.
	CacheMisses uint64
	// CacheLoads are the loads that misses started: a read of the store
	// and, for a key not yet unwrapped, one KMS Unwrap (or a Wrap, when
	// the load created or rotated the key). CacheLoadErrors of them failed.
	CacheLoads, CacheLoadErrors uint64

	// Wrap, Unwrap and Rewrap count the calls this keyring made to its KEK,
	// through every path (new keys, cache loads, metadata MACs, KEK
	// rewraps), by outcome. A KEK with retries (kms.Resilient) is one call
	// here however many attempts it made.
	Wrap, Unwrap, Rewrap KMSCounts

	// Created are key versions generated and wrapped, the first of a key
	// set and rotations alike.
	Created uint64
	// Rotations are versions that became active in place of another,
	// automatically (by age or message budget), and every successful
	// Rotate.
	Rotations uint64
	// Shreds are scopes crypto-shredded: Destroy (or Shred) calls that
	// destroyed the keys of their scope.
	Shreds uint64
	// VersionsDestroyed are key versions destroyed, by Destroy, Shred,
	// SetState and DestroyVersion.
	VersionsDestroyed uint64
	// Denied are uses of a key refused for its state or the minimum
	// decryption version, and key sets refused for their metadata.
	Denied uint64
}

// KMSCounts are a keyring's calls of one KEK operation by outcome. The
// failures are classified as kms.KindOf classifies them, with throttling
// (kms.ErrThrottled) apart from the other transient failures.
type KMSCounts struct {
	// Success are the calls that succeeded.
	Success uint64
	// Throttled failed with kms.ErrThrottled: the KMS's rate limit.
	Throttled uint64
	// Unavailable failed with another transient error (kms.ErrUnavailable:
	// network, 5xx, an open circuit breaker), or an unclassified one.
	Unavailable uint64
	// PermissionDenied, KeyNotFound, UnwrapFailed and InvalidInput failed
	// with the kms sentinel of that name.
	PermissionDenied, KeyNotFound, UnwrapFailed, InvalidInput uint64
	// Canceled and DeadlineExceeded failed because the caller's context
	// ended.
	Canceled, DeadlineExceeded uint64
}

// Total returns the number of calls.
func (c KMSCounts) Total() uint64 { return c.Success + c.Failures() }

// Failures returns the number of calls that failed.
func (c KMSCounts) Failures() uint64 {
	return c.Throttled + c.Unavailable + c.PermissionDenied + c.KeyNotFound + c.UnwrapFailed + c.InvalidInput + c.Canceled + c.DeadlineExceeded
}

// Stats returns the keyring's counters. Each counter is read atomically,
// not all of them at one instant, and reading them costs no lock that
// encryption takes.
func (k *Keyring) Stats() Stats {
	s := k.stats.snapshot()
	// The caches of parent keys (hierarchy.go) count as the others do.
	for _, c := range []keycache.Stats{k.keys.Stats(), k.active.Stats(), k.parentKeys.Stats(), k.parentActive.Stats()} {
		s.CacheHits += c.Hits
		s.CacheMisses += c.Misses
		s.CacheLoads += c.Loads
		s.CacheLoadErrors += c.LoadErrors
	}
	return s
}

// stats are the counters of a Keyring that its caches do not keep.
type stats struct {
	wrap, unwrap, rewrap kmsCounters
	created, rotations   atomic.Uint64
	shreds, destroyed    atomic.Uint64
	denied               atomic.Uint64
}

type kmsCounters struct {
	success, throttled, unavailable, denied, notFound, unwrapFailed, invalid, canceled, deadline atomic.Uint64
}

// observe returns kek with its calls counted.
func (s *stats) observe(kek kms.KEK) kms.KEK {
	return kms.WithObserver(kek, kms.ObserverConfig{Observe: s.kmsCall})
}

func (s *stats) kmsCall(_ context.Context, e kms.Event) {
	var c *kmsCounters
	switch e.Op {
	case "wrap":
		c = &s.wrap
	case "unwrap":
		c = &s.unwrap
	case "rewrap":
		c = &s.rewrap
	default:
		return
	}
	switch {
	case e.Kind == nil:
		c.success.Add(1)
	case errors.Is(e.Err, kms.ErrThrottled):
		c.throttled.Add(1)
	case e.Kind == kms.ErrPermissionDenied:
		c.denied.Add(1)
	case e.Kind == kms.ErrKeyNotFound:
		c.notFound.Add(1)
	case e.Kind == kms.ErrUnwrapFailed:
		c.unwrapFailed.Add(1)
	case e.Kind == kms.ErrInvalidInput:
		c.invalid.Add(1)
	case e.Kind == context.Canceled:
		c.canceled.Add(1)
	case e.Kind == context.DeadlineExceeded:
		c.deadline.Add(1)
	default:
		c.unavailable.Add(1)
	}
}

// event counts what an audit event records, whether or not an Auditor
// is configured.
func (s *stats) event(e Event) {
	switch {
	case e.Op == OpDenied:
		s.denied.Add(1)
	case e.Outcome != Success:
	case e.Op == OpCreate:
		s.created.Add(1)
	case e.Op == OpRotate:
		s.rotations.Add(1)
	case e.Op == OpDestroy && e.Version != 0:
		s.destroyed.Add(1)
	}
}

func (c *kmsCounters) snapshot() KMSCounts {
	return KMSCounts{
		Success: c.success.Load(), Throttled: c.throttled.Load(), Unavailable: c.unavailable.Load(),
		PermissionDenied: c.denied.Load(), KeyNotFound: c.notFound.Load(), UnwrapFailed: c.unwrapFailed.Load(),
		InvalidInput: c.invalid.Load(), Canceled: c.canceled.Load(), DeadlineExceeded: c.deadline.Load(),
	}
}

func (s *stats) snapshot() Stats {
	return Stats{
		Wrap: s.wrap.snapshot(), Unwrap: s.unwrap.snapshot(), Rewrap: s.rewrap.snapshot(),
		Created: s.created.Load(), Rotations: s.rotations.Load(), Shreds: s.shreds.Load(),
		VersionsDestroyed: s.destroyed.Load(), Denied: s.denied.Load(),
	}
}
