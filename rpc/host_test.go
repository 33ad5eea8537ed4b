package rpc

import (
	"strings"
	"testing"
)

// HostFromManagerSubject reads the host of every subject
// HostManagerSubject makes, and of nothing else.
func FuzzHostFromManagerSubject(f *testing.F) {
	f.Add("hv1", MethodRegisterHost)
	f.Add("compute-1", MethodLeaseFixedIP)
	f.Add("a.b", "c")
	f.Add("", "x")
	f.Add("hv", "")
	f.Fuzz(func(t *testing.T, host, method string) {
		subject := HostManagerSubject(host, method)
		got := HostFromManagerSubject(subject)
		plain := ValidateHostName(host) == nil && method != "" && !strings.Contains(method, ".")
		if plain && got != host {
			t.Fatalf("host of %q: %q, want %q", subject, got, host)
		}
		if got != "" && (strings.Contains(got, ".") || !strings.HasPrefix(subject, HostManagerPrefix+"."+got+".")) {
			t.Fatalf("host of %q: %q", subject, got)
		}
		if other := HostFromManagerSubject(host); other != "" && !strings.HasPrefix(host, HostManagerPrefix+".") {
			t.Fatalf("host of %q: %q", host, other)
		}
	})
}
