//go:build !unix

package testsvc

import (
	"context"
	"fmt"
	"os"
	"time"
)

// lockFile takes a lock by creating path exclusively, polling until ctx
// ends or lockWait passes. A build killed while holding it leaves path
// behind, to be removed by hand.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	deadline := time.Now().Add(lockWait)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			f.Close()
			return func() { os.Remove(path) }, nil
		}
		if !os.IsExist(err) {
			return nil, fmt.Errorf("testsvc: lock: %w", err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w %s", errLockTimeout, path)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("testsvc: lock %s: %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
