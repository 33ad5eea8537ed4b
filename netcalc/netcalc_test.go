package netcalc

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

func render(nets []Network) string {
	var b strings.Builder
	for _, n := range nets {
		fmt.Fprintf(&b, "%s cidr=%s netmask=%s gateway=%s broadcast=%s dhcp_start=%s dhcp_server=%s bridge=%s",
			n.Label, n.CIDR, n.Netmask, n.Gateway, n.Broadcast, n.DHCPStart, n.DHCPServer, n.Bridge)
		if n.VLAN != 0 {
			fmt.Fprintf(&b, " vlan=%d vpn=%s:%d", n.VLAN, n.VPNPrivateAddress, n.VPNPublicPort)
		}
		if n.CIDRv6.IsValid() {
			fmt.Fprintf(&b, " cidr_v6=%s gateway_v6=%s", n.CIDRv6, n.GatewayV6)
		}
		fmt.Fprintf(&b, " size=%d reserved=%v\n", n.Size(), n.Reserved)
	}
	return b.String()
}

func TestSplitGolden(t *testing.T) {
	cases := []struct {
		name string
		req  Request
	}{
		{"flat_10.0.0.0-8_3_16", Request{CIDR: "10.0.0.0/8", NumNetworks: 3, NetworkSize: 16}},
		{"vlan_10.0.0.0-8_3_16", Request{CIDR: "10.0.0.0/8", NumNetworks: 3, NetworkSize: 16, VLAN: true}},
		{"vlan_start_vpn_start", Request{Label: "proj", CIDR: "172.16.0.0/16", NumNetworks: 2, NetworkSize: 256, VLAN: true, VLANStart: 200, VPNStart: 5000}},
		{"single_custom_gateway", Request{Label: "public", CIDR: "192.168.4.0/24", NumNetworks: 1, NetworkSize: 256, Gateway: "192.168.4.254", DHCPServer: "192.168.4.253", Bridge: "br-ex"}},
		{"ipv6", Request{CIDR: "10.1.0.0/16", NumNetworks: 2, NetworkSize: 64, CIDRv6: "fd00:1::/48"}},
		{"whole_range", Request{CIDR: "10.2.0.0/30", NumNetworks: 1, NetworkSize: 4}},
	}
	var b strings.Builder
	for _, tc := range cases {
		nets, err := Split(tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		fmt.Fprintf(&b, "== %s\n%s", tc.name, render(nets))
	}
	golden := filepath.Join("testdata", "split.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), b.String()); d != "" {
		t.Errorf("split output differs from %s (-want +got; rerun with -update if intended):\n%s", golden, d)
	}
}

func TestSplitLargest(t *testing.T) {
	nets, err := Split(Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: MaxNetworkSize})
	if err != nil || len(nets) != 1 || nets[0].CIDR.String() != "10.0.0.0/16" {
		t.Fatalf("Split /16 = %v, %v", nets, err)
	}
	nets, err = Split(Request{CIDR: "10.0.0.0/8", NumNetworks: MaxAddresses / 256, NetworkSize: 256, VLAN: true, VLANStart: 1})
	if err != nil || len(nets) != MaxAddresses/256 {
		t.Fatalf("Split %d×256 = %d networks, %v", MaxAddresses/256, len(nets), err)
	}
	last := nets[len(nets)-1]
	if last.VLAN != MaxAddresses/256 || last.CIDR.String() != "10.3.255.0/24" {
		t.Fatalf("last network = %+v", last)
	}
}

func TestSplitErrors(t *testing.T) {
	for _, tc := range []struct {
		req   Request
		field string
		want  string
	}{
		{Request{CIDR: "10.0.0.0/33", NumNetworks: 1, NetworkSize: 16}, "fixed range", "not a CIDR"},
		{Request{CIDR: "banana", NumNetworks: 1, NetworkSize: 16}, "fixed range", "not a CIDR"},
		{Request{CIDR: "10.0.0.1/8", NumNetworks: 1, NetworkSize: 16}, "fixed range", "host bits set (the network is 10.0.0.0/8)"},
		{Request{CIDR: "fd00::/64", NumNetworks: 1, NetworkSize: 16}, "fixed range", "not an IPv4 CIDR"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 0, NetworkSize: 16}, "number of networks", "between 1 and"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 15}, "network size", "not a power of two"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 0}, "network size", "not a power of two"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 2}, "network size", "smaller than 4"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 4, VLAN: true}, "network size", "smaller than 8"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 1 << 17}, "network size", "largest accepted"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 5, NetworkSize: 1 << 16}, "number of networks", "more than 262144"},
		{Request{CIDR: "10.0.0.0/28", NumNetworks: 2, NetworkSize: 16}, "fixed range", "do not fit"},
		{Request{CIDR: "10.0.0.0/24", NumNetworks: 1, NetworkSize: 512}, "fixed range", "do not fit"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, VLAN: true, VLANStart: 4095}, "vlan start", "outside 1-4094"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 3, NetworkSize: 16, VLAN: true, VLANStart: 4093}, "vlan start", "past 4094"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, VLANStart: 5}, "vlan start", "only for VLAN mode"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 2, NetworkSize: 16, VLAN: true, Bridge: "br9"}, "bridge", "cannot serve 2"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, Bridge: "this-is-way-too-long"}, "bridge", "longer than 15"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, BridgeInterface: "eth/0"}, "bridge interface", "not allowed"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, Gateway: "10.0.1.1"}, "gateway", "not a host address of 10.0.0.0/28"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, Gateway: "10.0.0.15"}, "gateway", "not a host address"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, Gateway: "fe80::1"}, "gateway", "not an IPv4 address"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, DNS1: "8.8.8"}, "dns1", "not an IP address"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, MTU: 67}, "mtu", "between 68"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, CIDRv6: "fd00::/96"}, "IPv6 range", "longer than /64"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 3, NetworkSize: 16, CIDRv6: "fd00::/63"}, "IPv6 range", "fewer than 3"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, GatewayV6: "fd00::1"}, "IPv6 gateway", "without an IPv6 range"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 2, NetworkSize: 16, Gateway: "10.0.0.1"}, "gateway", "only for a single network, not 2"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 2, NetworkSize: 16, DHCPServer: "10.0.0.1"}, "dhcp server", "only for a single network"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, DNS1: "0.0.0.0"}, "dns1", "unspecified"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, DNS2: "ff02::1"}, "dns2", "multicast"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, DHCPServer: "255.255.255.255"}, "dhcp server", "limited broadcast"},
		// Blocks that are not for hosts.
		{Request{CIDR: "0.0.0.0/0", NumNetworks: 1, NetworkSize: 16}, "fixed range", `overlaps 0.0.0.0/8: "this network" (RFC 1122), not for hosts`},
		{Request{CIDR: "0.0.0.0/28", NumNetworks: 1, NetworkSize: 16}, "fixed range", `overlaps 0.0.0.0/8: "this network"`},
		{Request{CIDR: "127.0.0.0/24", NumNetworks: 1, NetworkSize: 16}, "fixed range", "overlaps 127.0.0.0/8: loopback"},
		{Request{CIDR: "126.0.0.0/7", NumNetworks: 1, NetworkSize: 16}, "fixed range", "overlaps 127.0.0.0/8: loopback"},
		{Request{CIDR: "169.254.0.0/24", NumNetworks: 1, NetworkSize: 16}, "fixed range", "link-local"},
		{Request{CIDR: "224.0.0.0/24", NumNetworks: 1, NetworkSize: 16}, "fixed range", "overlaps 224.0.0.0/4: multicast"},
		{Request{CIDR: "240.0.0.0/24", NumNetworks: 1, NetworkSize: 16}, "fixed range", "overlaps 240.0.0.0/4: reserved"},
		{Request{CIDR: "255.255.255.0/24", NumNetworks: 1, NetworkSize: 16}, "fixed range", "overlaps 255.255.255.255/32: the limited broadcast address"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, CIDRv6: "fe80::/64"}, "IPv6 range", "link-local"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, CIDRv6: "ff02::/64"}, "IPv6 range", "multicast"},
		{Request{CIDR: "10.0.0.0/8", NumNetworks: 1, NetworkSize: 16, CIDRv6: "::/0"}, "IPv6 range", "overlaps ::/128: the unspecified address"},
	} {
		_, err := Split(tc.req)
		var fe *FieldError
		if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
			t.Errorf("Split(%+v) = %v, want a FieldError", tc.req, err)
			continue
		}
		if fe.Field != tc.field || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Split(%+v) = %q (field %q), want field %q and %q", tc.req, err, fe.Field, tc.field, tc.want)
		}
	}
}

func FuzzSplit(f *testing.F) {
	f.Add("10.0.0.0/8", 3, 16, true, 100, "")
	f.Add("192.168.0.0/24", 1, 256, false, 0, "fd00::/48")
	f.Fuzz(func(t *testing.T, cidr string, num, size int, vlan bool, vlanStart int, v6 string) {
		nets, err := Split(Request{CIDR: cidr, NumNetworks: num, NetworkSize: size, VLAN: vlan, VLANStart: vlanStart, CIDRv6: v6})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		for i, n := range nets {
			if CheckUsable("x", n.CIDR) != nil || n.CIDRv6.IsValid() && CheckUsable("x", n.CIDRv6) != nil {
				t.Fatalf("network %d in an unusable block: %+v", i, n)
			}
			if n.Size() != size || !n.CIDR.Contains(n.Gateway) || !n.CIDR.Contains(n.Broadcast) {
				t.Fatalf("network %d = %+v", i, n)
			}
			if i > 0 && nets[i-1].CIDR.Overlaps(n.CIDR) {
				t.Fatalf("networks %d and %d overlap", i-1, i)
			}
			if vlan && (n.VLAN < 1 || n.VLAN > 4094) {
				t.Fatalf("vlan %d", n.VLAN)
			}
		}
	})
}
