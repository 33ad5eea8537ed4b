// Package nsrun runs code inside a network namespace given by path.
//
// The function runs on a dedicated goroutine whose OS thread is locked and
// switched into the namespace, then switched back. If switching back fails
// the thread stays locked and the Go runtime discards it when the goroutine
// exits, so a namespace never leaks into other goroutines. Processes started
// with os/exec from inside fn inherit the namespace.
package nsrun

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn inside the network namespace at path (for example
// /var/run/netns/NAME or /proc/PID/ns/net). An empty path runs fn in the
// caller's namespace, directly.
func Do(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("netns %s: open: %w", path, err)
	}
	defer target.Close()

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			// Still locked: the thread is discarded with the goroutine.
			errc <- fmt.Errorf("netns %s: current namespace: %w", path, err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("netns %s: enter: %w", path, err)
			return
		}
		err = fn()
		// Only a thread that is back in its own namespace is given back to
		// the scheduler; otherwise it stays locked and dies with us.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
