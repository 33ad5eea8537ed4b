package dnsmasq

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func envFunc(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseEvent(t *testing.T) {
	ev, err := ParseEvent([]string{"add", "FA:16:3E:00:00:01", "10.0.0.3", "vm-a"}, envFunc(map[string]string{
		"DNSMASQ_INTERFACE":     "br100",
		"DNSMASQ_TAGS":          "net-net1 known",
		"DNSMASQ_LEASE_EXPIRES": "1700000000",
		"DNSMASQ_DOMAIN":        "novalocal",
		"DNSMASQ_CLIENT_ID":     "01:fa:16:3e:00:00:01",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := Event{
		Action: EventAdd, MAC: mac("fa:16:3e:00:00:01"), IP: netip.MustParseAddr("10.0.0.3"), Hostname: "vm-a",
		Interface: "br100", Tags: []string{"net-net1", "known"}, Expires: time.Unix(1700000000, 0).UTC(),
		Domain: "novalocal", ClientID: "01:fa:16:3e:00:00:01",
	}
	if d := cmp.Diff(want, ev, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	for _, a := range [][]string{{"old", "fa:16:3e:00:00:01", "10.0.0.3"}, {"del", "fa:16:3e:00:00:01", "10.0.0.3", ""}} {
		if _, err := ParseEvent(a, nil); err != nil {
			t.Errorf("%v: %v", a, err)
		}
	}
	if _, err := ParseEvent([]string{"init"}, nil); !errors.Is(err, ErrUnknownAction) {
		t.Errorf("init: %v", err)
	}
	for _, a := range [][]string{
		{}, {"add"}, {"add", "nomac", "10.0.0.3"}, {"add", "fa:16:3e:00:00:01", "fd00::1"},
		{"add", "fa:16:3e:00:00:01", "10.0.0.3", "bad host"}, {"add", "fa:16:3e:00:00:01", "10.0.0.3", "h", "extra"},
	} {
		if _, err := ParseEvent(a, nil); !errors.Is(err, ErrBadEvent) {
			t.Errorf("%q: err = %v, want ErrBadEvent", a, err)
		}
	}
	if _, err := ParseEvent([]string{"add", "fa:16:3e:00:00:01", "10.0.0.3"}, envFunc(map[string]string{"DNSMASQ_INTERFACE": "../etc"})); !errors.Is(err, ErrBadEvent) {
		t.Errorf("bad interface: %v", err)
	}
}

func FuzzParseEvent(f *testing.F) {
	f.Add("add", "fa:16:3e:00:00:01", "10.0.0.3", "vm-a", "br100", "net-a known", "1700000000")
	f.Add("old", "FA-16-3E-00-00-01", "10.0.0.3", "", "", "", "")
	f.Add("del", "fa:16:3e:00:00:01", "::ffff:10.0.0.3", "x", "eth0:1", "a\tb", "-1")
	f.Add("init", "", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, action, m, ip, host, iface, tags, expires string) {
		env := map[string]string{"DNSMASQ_INTERFACE": iface, "DNSMASQ_TAGS": tags, "DNSMASQ_LEASE_EXPIRES": expires}
		args := []string{action, m, ip}
		if host != "" {
			args = append(args, host)
		}
		ev, err := ParseEvent(args, envFunc(env))
		if err != nil {
			if !errors.Is(err, ErrBadEvent) && !errors.Is(err, ErrUnknownAction) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(ev.MAC) != 6 || !ev.IP.Is4() {
			t.Fatalf("accepted bad event %+v", ev)
		}
		// Round trip through what dnsmasq would pass.
		again, err := ParseEvent(ev.Args(), envFunc(ev.Env()))
		if err != nil {
			t.Fatalf("re-parse of %v %v: %v", ev.Args(), ev.Env(), err)
		}
		if d := cmp.Diff(ev, again, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
			t.Fatalf("round trip (-first +second):\n%s", d)
		}
	})
}
