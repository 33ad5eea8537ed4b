package hostnet

import (
	"bytes"
	"fmt"
	"os"

	"novanet/linuxnet/nsrun"
)

// EnableForwarding sets net.ipv4.ip_forward=1 in the network namespace at
// netns (empty: the caller's). /proc/sys/net resolves to the namespace of
// the thread that opens it, so the write happens on a thread switched into
// netns (nsrun.Do); the value is read back there.
func EnableForwarding(netns string) error {
	const path = "/proc/sys/net/ipv4/ip_forward"
	return nsrun.Do(netns, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("ip forwarding (netns %q): %w", netns, err)
		}
		if string(bytes.TrimSpace(b)) == "1" {
			return nil
		}
		if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("ip forwarding (netns %q): %w", netns, err)
		}
		b, err = os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("ip forwarding (netns %q): %w", netns, err)
		}
		if string(bytes.TrimSpace(b)) != "1" {
			return fmt.Errorf("ip forwarding (netns %q): still %q after writing 1", netns, bytes.TrimSpace(b))
		}
		return nil
	})
}
