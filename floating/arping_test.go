package floating

import (
	"net/netip"
	"slices"
	"testing"
)

// The gratuitous ARP carries the floating address as its sender (and
// target): a neighbour only updates its entry for the address it is told
// about.
func TestArpingArgsAnnounceTheFloatingAddress(t *testing.T) {
	got := arpingArgs("pub0", netip.MustParseAddr("203.0.113.49"))
	want := []string{"-q", "-U", "-S", "203.0.113.49", "-c", "1", "-w", "0.1", "-i", "pub0", "203.0.113.49"}
	if !slices.Equal(got, want) {
		t.Errorf("arping %q, want %q", got, want)
	}
}
