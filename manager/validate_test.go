package manager

import (
	"errors"
	"net"
	"testing"

	"novanet/netcalc"
	"novanet/rpc"
)

func TestRandomMAC(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		s := randomMAC()
		hw, err := net.ParseMAC(s)
		if err != nil || hw[0]&0x01 != 0 || hw[0]&0x02 == 0 {
			t.Fatalf("randomMAC() = %s: not unicast and locally administered", s)
		}
		if seen[s] {
			t.Fatalf("randomMAC() repeated %s", s)
		}
		seen[s] = true
	}
}

// FuzzValidators feeds arbitrary strings to the checks applied to RPC
// request fields: each accepts or fails with invalid_argument naming the
// field.
func FuzzValidators(f *testing.F) {
	for _, s := range []string{"6f1c3c1e-3f7a-4c2b-9d61-1f0e5c6b7a80", "02:00:00:00:00:01", "10.0.0.1", "compute-1", "", "\x00",
		"203.0.113.0/24", "198.51.100.7/32", "10.0.0.0/13", "eth0", "nova", " nova"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		check := func(field string, err error) {
			if err == nil {
				return
			}
			var re *rpc.Error
			if !errors.As(err, &re) || re.Code != rpc.CodeInvalidArgument || re.Field != field {
				t.Fatalf("%s check of %q: %v", field, s, err)
			}
		}
		u, err := parseInstance(s)
		check("instance_uuid", err)
		if err == nil && len(u) != 36 {
			t.Fatalf("parseInstance(%q) = %q", s, u)
		}
		mac, err := parseMAC(s)
		check("macs", err)
		if err == nil {
			if hw, _ := net.ParseMAC(mac); len(hw) != 6 || hw[0]&1 != 0 {
				t.Fatalf("parseMAC(%q) = %q", s, mac)
			}
		}
		_, err = parseFixedAddr("address", s)
		check("address", err)
		check("host", checkHost(s))
		check("project_id", checkProject(s, true))
		check("pool", checkPoolName("pool", s))
		check("interface", checkInterface(s))
		p, err := parseFloatingRange(s)
		check("cidr", err)
		if err == nil {
			if first, n := floatingHosts(p); !p.Contains(first) || n < 1 || n > rpc.MaxFloatingRange || !p.Contains(netcalc.Nth(first, uint64(n-1))) {
				t.Fatalf("floatingHosts(%s) = %s, %d", p, first, n)
			}
		}
	})
}
