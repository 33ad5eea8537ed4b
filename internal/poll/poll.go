// Package poll waits in tests for a real condition — a route established, a
// client reconnected, a message delivered — instead of sleeping.
package poll

import (
	"testing"
	"time"
)

// Timeout bounds every wait: what has not happened by then is a failure.
const Timeout = 20 * time.Second

// Until checks cond every few milliseconds until it holds, and fails the
// test with "timed out waiting for <what>" after Timeout.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
