package ebtables

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestRuleString(t *testing.T) {
	m, _ := net.ParseMAC("02:16:3e:00:00:01")
	a := netip.MustParseAddr("10.0.0.5")
	for _, tc := range []struct {
		r    Rule
		want string // "" = an error containing bad
		bad  string
	}{
		{r: Rule{InIface: "tap0", SrcMAC: m, NotSrcMAC: true, Target: Drop}, want: "-s ! 02:16:3e:00:00:01 -i tap0 -j DROP"},
		{r: Rule{InIface: "tap0", Proto: IPv4, IPSrc: a, Target: Return}, want: "-p IPv4 -i tap0 --ip-src 10.0.0.5 -j RETURN"},
		{r: Rule{Proto: IPv4, UDPSrcPort: 68, UDPDstPort: 67, Target: Accept}, want: "-p IPv4 --ip-proto udp --ip-sport 68 --ip-dport 67 -j ACCEPT"},
		{r: Rule{Proto: ARP, IPSrc: a, ARPMACSrc: m, Target: Return}, want: "-p ARP --arp-ip-src 10.0.0.5 --arp-mac-src 02:16:3e:00:00:01 -j RETURN"},
		{r: Rule{InIface: "bad name;", Target: Drop}, bad: "bad name"},
		{r: Rule{Proto: "IPv6", Target: Drop}, bad: "IPv6"},
		{r: Rule{Target: "CONTINUE"}, bad: "CONTINUE"},
		{r: Rule{NotSrcMAC: true, Target: Drop}, bad: "without a mac"},
		{r: Rule{SrcMAC: net.HardwareAddr{1, 2}, Target: Drop}, bad: "6 bytes"},
		{r: Rule{Proto: IPv4, IPSrc: netip.MustParseAddr("fd00::1"), Target: Drop}, bad: "fd00::1"},
		{r: Rule{IPSrc: a, Target: Drop}, bad: "needs protocol"},
		{r: Rule{Proto: ARP, UDPDstPort: 67, Target: Drop}, bad: "udp ports"},
		{r: Rule{Proto: IPv4, ARPMACSrc: m, Target: Drop}, bad: "arp source mac"},
	} {
		got, err := tc.r.String()
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%+v: %q, %v; want an error naming %q", tc.r, got, err, tc.bad)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%+v: %q, %v; want %q", tc.r, got, err, tc.want)
		}
	}
}

func TestRenderAndJumps(t *testing.T) {
	got, err := Render("c", []Rule{{InIface: "tap0", Target: Drop}})
	if want := "*filter\n:c RETURN\n-A c -i tap0 -j DROP\n"; err != nil || got != want {
		t.Fatalf("Render = %q, %v; want %q", got, err, want)
	}
	if _, err := Render("c", []Rule{{Target: Drop}, {Target: "X"}}); err == nil || !strings.Contains(err.Error(), "rule 2") {
		t.Fatalf("bad rule: %v", err)
	}
	j := jumpsIn("*filter\n:INPUT ACCEPT\n-A INPUT -j c\n-A FORWARD -j cc\n", "c")
	if !j["INPUT"] || j["FORWARD"] {
		t.Fatalf("jumps = %v", j)
	}
	if _, err := New(Config{Chain: "bad chain"}); err == nil || !strings.Contains(err.Error(), "bad chain") {
		t.Fatalf("New with a bad chain: %v", err)
	}
}
