//go:build cgo

package pkcs11

import (
	"context"
	"errors"
	"sync"

	p11 "github.com/miekg/pkcs11"
)

// errClosed is the cause of calls made after Close.
var errClosed = errors.New("pkcs11: KEK is closed")

// pool is a bounded pool of logged-in read-only sessions on one slot. Each
// session is used by one call at a time. It is safe for concurrent use.
type pool struct {
	mod  *module
	slot uint
	pin  string

	idle  chan p11.SessionHandle // open sessions not in use
	slots chan struct{}          // one token per open session, in use or idle
	done  chan struct{}          // closed by close

	mu     sync.Mutex
	closed bool
	calls  sync.WaitGroup // sessions handed out and not yet returned
}

func newPool(mod *module, slot uint, pin string, size int) *pool {
	return &pool{
		mod:   mod,
		slot:  slot,
		pin:   pin,
		idle:  make(chan p11.SessionHandle, size),
		slots: make(chan struct{}, size),
		done:  make(chan struct{}),
	}
}

// get returns an idle session, or opens one if fewer than the pool's size
// are open, or waits until one is returned or ctx ends.
func (p *pool) get(ctx context.Context) (p11.SessionHandle, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, errClosed
	}
	p.calls.Add(1)
	p.mu.Unlock()

	select {
	case s := <-p.idle:
		return s, nil
	default:
	}
	select {
	case s := <-p.idle:
		return s, nil
	case p.slots <- struct{}{}:
		s, err := p.open()
		if err != nil {
			<-p.slots
			p.calls.Done()
			return 0, err
		}
		return s, nil
	case <-ctx.Done():
		p.calls.Done()
		return 0, ctx.Err()
	case <-p.done:
		p.calls.Done()
		return 0, errClosed
	}
}

// open opens a session and logs it in unless the token already is (with
// the same PIN).
func (p *pool) open() (p11.SessionHandle, error) {
	c := p.mod.ctx
	s, err := c.OpenSession(p.slot, p11.CKF_SERIAL_SESSION)
	if err != nil {
		return 0, err
	}
	info, err := c.GetSessionInfo(s)
	if err == nil {
		public := info.State == p11.CKS_RO_PUBLIC_SESSION || info.State == p11.CKS_RW_PUBLIC_SESSION
		err = p.mod.login(s, p.slot, p.pin, !public)
	}
	if err != nil {
		c.CloseSession(s)
		return 0, err
	}
	return s, nil
}

// put returns a session that get handed out. A session that is not healthy
// is closed, and a new one will be opened in its place when needed.
func (p *pool) put(s p11.SessionHandle, healthy bool) {
	if healthy {
		p.idle <- s // never blocks: at most cap(idle) sessions are open
	} else {
		p.mod.ctx.CloseSession(s)
		<-p.slots
	}
	p.calls.Done()
}

// close waits for the sessions in use to be returned, then closes every
// session. Calls waiting for a session fail.
func (p *pool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	p.mu.Unlock()
	p.calls.Wait()
	for {
		select {
		case s := <-p.idle:
			p.mod.ctx.CloseSession(s)
			<-p.slots
		default:
			return
		}
	}
}
