package kms

import "time"

// Defaults of Resilient, where they differ from those of the decorators
// it stacks.
const (
	// DefaultResilientAttempts is the number of calls Resilient makes at
	// most, the first included. With the default backoff (100 ms,
	// doubling, full jitter) a call waits at most 1.5 s in all before its
	// fifth attempt, about 0.75 s on average: long enough to ride out a
	// burst of throttling or a Vault leader election, short enough for an
	// interactive request.
	DefaultResilientAttempts = 5
	// DefaultCallTimeout bounds each Wrap and Unwrap attempt under
	// Resilient. KMS calls take milliseconds; ten seconds means the KMS
	// is not answering.
	DefaultCallTimeout = 10 * time.Second
	// DefaultRewrapTimeout bounds each Rewrap attempt under Resilient (a
	// batch of up to thousands of keys).
	DefaultRewrapTimeout = 2 * time.Minute
)

// ResilientConfig configures Resilient. Its zero value is the production
// default that kms/kmsopen uses.
type ResilientConfig struct {
	// Retry configures the retries of transient failures. Zero fields
	// take their defaults, except MaxAttempts, whose default here is
	// DefaultResilientAttempts. A MaxAttempts of 1 turns retries off.
	Retry RetryConfig
	// Breaker counts every attempt. When nil, Resilient makes a new one
	// with the defaults (DefaultBreakerFailures consecutive transient
	// failures open it for DefaultBreakerCoolDown). Pass one Breaker to
	// the KEKs of one KMS so that they share its state.
	Breaker *Breaker
	// Timeout bounds each attempt. Zero fields take DefaultCallTimeout and
	// DefaultRewrapTimeout; a negative field means no timeout of its own
	// (the caller's context still applies).
	Timeout TimeoutConfig
	// Observer receives an Event for each attempt, with its number. A nil
	// Observe observes nothing.
	Observer ObserverConfig
}

// Resilient returns kek behind the documented stack of decorators,
// outermost first: WithRetry, Breaker.Guard, WithTimeout, WithObserver.
// Each attempt is bounded in time and observed, the breaker counts every
// attempt, and retries stop as soon as it opens. Only transient failures
// are retried (ErrUnavailable, which includes ErrThrottled and a timed-out
// attempt); a throttled call is retried with backoff but does not count
// against the breaker, so a burst of throttling slows callers down rather
// than failing them for a cool-down.
//
// Backends turn their SDKs' retries off, so a KEK used without Resilient
// (or WithRetry) fails a request the first time its KMS throttles or
// blips. The result has the optional interfaces of kek (Identifier,
// Rewrapper, io.Closer; see the package documentation).
func Resilient(kek KEK, cfg ResilientConfig) KEK {
	if cfg.Retry.MaxAttempts <= 0 {
		cfg.Retry.MaxAttempts = DefaultResilientAttempts
	}
	if cfg.Breaker == nil {
		cfg.Breaker = NewBreaker(BreakerConfig{})
	}
	cfg.Timeout.Call = timeoutOr(cfg.Timeout.Call, DefaultCallTimeout)
	cfg.Timeout.Rewrap = timeoutOr(cfg.Timeout.Rewrap, DefaultRewrapTimeout)
	return WithRetry(cfg.Breaker.Guard(WithTimeout(WithObserver(kek, cfg.Observer), cfg.Timeout)), cfg.Retry)
}

// timeoutOr returns d, def when d is zero, and 0 (no timeout) when d is
// negative.
func timeoutOr(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}
