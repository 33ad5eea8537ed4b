package ifname

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	for name, ok := range map[string]bool{
		"br100": true, "eth0": true, "vlan4094": true, "vxlan16777215": true,
		"123456789012345": true, "1234567890123456": false,
		"": false, ".": false, "..": false, "a/b": false, "a:b": false,
		"a b": false, "a\tb": false, "a\x00": false, "ünï": false, "a%b": false,
		"br-ex.100": true, "bond0_1": true,
	} {
		err := Validate(name)
		if (err == nil) != ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", name, err, ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%q) = %v, not ErrInvalid", name, err)
		}
	}
}

func TestValidatesTheValue(t *testing.T) {
	good := []string{"br100", "eth0", "vlan4094", "vxlan16777215", "a", "novanet-br-123", strings.Repeat("x", 15)}
	for _, n := range good {
		if err := Validate(n); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", n, err)
		}
	}
	bad := []string{"", ".", "..", strings.Repeat("x", 16), "a/b", "eth0:1", "br 0", "br\t0", "br\n", "br\x00", "brü"}
	for _, n := range bad {
		err := Validate(n)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%q) = %v, want ErrInvalid", n, err)
			continue
		}
		if n != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", n)) {
			t.Errorf("Validate(%q) error %q does not name the value", n, err)
		}
	}
}

func FuzzValidate(f *testing.F) {
	f.Add("br100")
	f.Add("a/b")
	f.Fuzz(func(t *testing.T, name string) {
		if Validate(name) == nil && (len(name) == 0 || len(name) > MaxLen) {
			t.Fatalf("accepted %q", name)
		}
	})
}
