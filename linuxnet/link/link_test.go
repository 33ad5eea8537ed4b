package link

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"novanet/ifname"
)

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// Invalid names are rejected before any kernel call: a Manager without a
// netlink handle must never be reached.
func TestInvalidNameBeforeKernel(t *testing.T) {
	m := New(nil)
	ctx := context.Background()
	calls := map[string]error{
		"EnsureBridge":  func() error { _, err := m.EnsureBridge(ctx, BridgeConfig{Name: "bad/name"}); return err }(),
		"EnsureAddr":    m.EnsureAddr(ctx, "bad name", mustPrefix("10.0.0.1/24")),
		"Enslave":       m.Enslave(ctx, "br0", "eth0:0", EnslaveOptions{}),
		"EnslaveBridge": m.Enslave(ctx, "..", "eth0", EnslaveOptions{}),
		"EnsureVLAN":    func() error { _, err := m.EnsureVLAN(ctx, "toolongname12345", 10, 0); return err }(),
		"EnsureVXLAN":   func() error { _, err := m.EnsureVXLAN(ctx, VXLANConfig{Parent: "", VNI: 5}); return err }(),
		"Delete":        m.Delete(ctx, "a/b"),
	}
	for name, err := range calls {
		if !errors.Is(err, ifname.ErrInvalid) {
			t.Errorf("%s: err = %v, want ifname.ErrInvalid", name, err)
		}
	}
}

func TestSegmentNames(t *testing.T) {
	if got := VLANName(100); got != "vlan100" {
		t.Errorf("VLANName(100) = %q", got)
	}
	if got := VXLANName(1<<24 - 1); got != "vxlan16777215" || ifname.Validate(got) != nil {
		t.Errorf("VXLANName(max) = %q", got)
	}
}
