package floating

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"novanet/ifname"
	"novanet/linuxnet/nsrun"
)

// Kernel is Addrs on a real namespace, through one netlink handle.
type Kernel struct {
	h     *netlink.Handle
	netns string
}

var _ Addrs = (*Kernel)(nil)

// NewKernel opens a netlink handle in the namespace at netnsPath (empty:
// the caller's). Close it when done.
func NewKernel(netnsPath string) (*Kernel, error) {
	if netnsPath == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("netlink handle: %w", err)
		}
		return &Kernel{h: h}, nil
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", netnsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netns %s: netlink handle: %w", netnsPath, err)
	}
	return &Kernel{h: h, netns: netnsPath}, nil
}

// Close releases the netlink handle.
func (k *Kernel) Close() { k.h.Close() }

func (k *Kernel) link(iface string) (netlink.Link, error) {
	if err := ifname.Validate(iface); err != nil {
		return nil, err
	}
	l, err := k.h.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	return l, nil
}

func toAddr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
}

// Add adds p to iface; already there is fine.
func (k *Kernel) Add(_ context.Context, iface string, p netip.Prefix) error {
	l, err := k.link(iface)
	if err != nil {
		return err
	}
	if err := k.h.AddrAdd(l, toAddr(p)); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("add %s to %s: %w", p, iface, err)
	}
	return nil
}

// Del removes p from iface; an address or interface already gone is fine.
func (k *Kernel) Del(_ context.Context, iface string, p netip.Prefix) error {
	l, err := k.link(iface)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return err
	}
	err = k.h.AddrDel(l, toAddr(p))
	if err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("remove %s from %s: %w", p, iface, err)
	}
	return nil
}

// List returns iface's addresses.
func (k *Kernel) List(_ context.Context, iface string) ([]netip.Prefix, error) {
	l, err := k.link(iface)
	if err != nil {
		return nil, err
	}
	as, err := k.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", iface, err)
	}
	out := make([]netip.Prefix, 0, len(as))
	for _, a := range as {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		bits, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), bits))
	}
	return out, nil
}

// Arping returns an Announcer that sends one gratuitous ARP with arping
// (Thomas Habets' arping, Debian's arping package) inside netnsPath.
// arping exits 1 when nobody answers, which is normal for a gratuitous ARP.
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
			out, err := exec.CommandContext(ctx, binary, "-q", "-U", "-c", "1", "-w", "0.1", "-i", iface, addr.String()).CombinedOutput()
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
