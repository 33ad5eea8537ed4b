package floating

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"time"

	"novanet/ifname"
	"novanet/linuxnet/nsrun"
)

// Arping returns an Announcer that sends one gratuitous ARP with arping
// (Thomas Habets' arping, Debian's arping package) inside netnsPath.
// arping exits 1 when nobody answers, which is normal for a gratuitous ARP.
// The announcement names the floating address as its sender (see
// arpingArgs): that is what a neighbour updates its cache from.
func Arping(binary, netnsPath string) Announcer {
	if binary == "" {
		binary = "arping"
	}
	return func(ctx context.Context, iface string, addr netip.Addr) error {
		if !addr.Is4() {
			return nil // IPv6 uses unsolicited neighbour advertisements; not done
		}
		if err := ifname.Validate(iface); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return nsrun.Do(netnsPath, func() error {
			out, err := exec.CommandContext(ctx, binary, arpingArgs(iface, addr)...).CombinedOutput()
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() == 1 {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%s: %w: %s", binary, err, out)
			}
			return nil
		})
	}
}

// arpingArgs are the arguments of one gratuitous ARP for addr on iface:
// unsolicited (-U, broadcast), sent from addr itself (-S). Without -S
// arping uses the interface's primary address as the sender, so a
// neighbour learns nothing about addr: one whose entry for it is stale
// keeps sending to the old host, and one still resolving it (INCOMPLETE)
// drops what it queued when the entry fails.
func arpingArgs(iface string, addr netip.Addr) []string {
	return []string{"-q", "-U", "-S", addr.String(), "-c", "1", "-w", "0.1", "-i", iface, addr.String()}
}
