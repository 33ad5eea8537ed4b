package netcalc

import (
	"net"
	"net/netip"
	"testing"
)

func TestEUI64(t *testing.T) {
	mac, _ := net.ParseMAC("fa:16:3e:00:00:01")
	for _, tc := range []struct{ prefix, want string }{
		{"fd00:10::/64", "fd00:10::f816:3eff:fe00:1"},
		{"2001:db8:0:1::/64", "2001:db8:0:1:f816:3eff:fe00:1"},
	} {
		got, err := EUI64(netip.MustParsePrefix(tc.prefix), mac)
		if err != nil || got != netip.MustParseAddr(tc.want) {
			t.Errorf("EUI64(%s, %s) = %v, %v; want %s", tc.prefix, mac, got, err, tc.want)
		}
	}
	// A locally administered MAC has the bit set: flipped, it is clear.
	local, _ := net.ParseMAC("02:00:00:00:00:07")
	if got, _ := EUI64(netip.MustParsePrefix("fd00::/64"), local); got != netip.MustParseAddr("fd00::ff:fe00:7") {
		t.Errorf("EUI64 of %s = %v, want fd00::ff:fe00:7", local, got)
	}
	for _, p := range []string{"fd00::/48", "10.0.0.0/24", "::ffff:0:0/96"} {
		if _, err := EUI64(netip.MustParsePrefix(p), mac); err == nil {
			t.Errorf("EUI64 in %s succeeded", p)
		}
	}
	if _, err := EUI64(netip.MustParsePrefix("fd00::/64"), net.HardwareAddr{1, 2, 3}); err == nil {
		t.Error("EUI64 of a 3-byte address succeeded")
	}
}
