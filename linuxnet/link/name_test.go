package link

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	good := []string{"br100", "eth0", "vlan4094", "vxlan16777215", "a", "novanet-br-123", strings.Repeat("x", 15)}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", n, err)
		}
	}
	bad := []string{"", ".", "..", strings.Repeat("x", 16), "a/b", "eth0:1", "br 0", "br\t0", "br\n", "br\x00", "brü"}
	for _, n := range bad {
		err := ValidateName(n)
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidName", n, err)
			continue
		}
		if n != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", n)) {
			t.Errorf("ValidateName(%q) error %q does not name the value", n, err)
		}
	}
}

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
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("%s: err = %v, want ErrInvalidName", name, err)
		}
	}
}

func TestSegmentNames(t *testing.T) {
	if got := VLANName(100); got != "vlan100" {
		t.Errorf("VLANName(100) = %q", got)
	}
	if got := VXLANName(1<<24 - 1); got != "vxlan16777215" || ValidateName(got) != nil {
		t.Errorf("VXLANName(max) = %q", got)
	}
}
