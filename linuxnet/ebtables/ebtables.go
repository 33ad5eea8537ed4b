// Package ebtables keeps one chain of the bridge family's filter table,
// jumped to first from INPUT and FORWARD, through ebtables-restore (the
// nf_tables backend: ebtables-nft). The whole chain is replaced in one
// transaction, so frames never see half of it.
package ebtables

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"

	"novanet/ifname"
	"novanet/linuxnet/nsrun"
)

// DefaultChain is the chain Manager keeps when Config.Chain is empty.
const DefaultChain = "novanet-antispoof"

// hooks are the built-in chains that jump to ours: frames a port sends to
// the host (INPUT) and through the bridge (FORWARD).
var hooks = []string{"INPUT", "FORWARD"}

// Proto is a rule's ethernet protocol.
type Proto string

const (
	AnyProto Proto = ""
	IPv4     Proto = "IPv4"
	ARP      Proto = "ARP"
)

// Target is what a matching frame does.
type Target string

const (
	Accept Target = "ACCEPT"
	Drop   Target = "DROP"
	Return Target = "RETURN"
)

// Rule is one rule of the chain. Zero fields match anything.
type Rule struct {
	InIface string // the bridge port the frame came in on
	// SrcMAC matches the frame's source MAC; NotSrcMAC negates it.
	SrcMAC    net.HardwareAddr
	NotSrcMAC bool
	Proto     Proto
	// IPSrc is --ip-src (Proto IPv4) or --arp-ip-src (Proto ARP).
	IPSrc netip.Addr
	// UDPSrcPort, UDPDstPort match an IPv4 UDP datagram (Proto IPv4).
	UDPSrcPort, UDPDstPort uint16
	// ARPMACSrc is --arp-mac-src (Proto ARP).
	ARPMACSrc net.HardwareAddr
	Target    Target
}

// String renders r as ebtables arguments, as ebtables-save prints them.
func (r Rule) String() (string, error) {
	var b []string
	if r.Proto != AnyProto {
		if r.Proto != IPv4 && r.Proto != ARP {
			return "", fmt.Errorf("ebtables: protocol %q: want IPv4 or ARP", r.Proto)
		}
		b = append(b, "-p", string(r.Proto))
	}
	if r.SrcMAC != nil {
		if len(r.SrcMAC) != 6 {
			return "", fmt.Errorf("ebtables: source mac %s: want 6 bytes", r.SrcMAC)
		}
		if r.NotSrcMAC {
			b = append(b, "-s", "!", r.SrcMAC.String())
		} else {
			b = append(b, "-s", r.SrcMAC.String())
		}
	} else if r.NotSrcMAC {
		return "", fmt.Errorf("ebtables: negated source mac without a mac")
	}
	if r.InIface != "" {
		if err := ifname.Validate(r.InIface); err != nil {
			return "", fmt.Errorf("ebtables: %w", err)
		}
		b = append(b, "-i", r.InIface)
	}
	if r.IPSrc.IsValid() && !r.IPSrc.Is4() {
		return "", fmt.Errorf("ebtables: source address %s: want IPv4", r.IPSrc)
	}
	switch r.Proto {
	case IPv4:
		if r.IPSrc.IsValid() {
			b = append(b, "--ip-src", r.IPSrc.String())
		}
		if r.UDPSrcPort != 0 || r.UDPDstPort != 0 {
			b = append(b, "--ip-proto", "udp")
			if r.UDPSrcPort != 0 {
				b = append(b, "--ip-sport", fmt.Sprint(r.UDPSrcPort))
			}
			if r.UDPDstPort != 0 {
				b = append(b, "--ip-dport", fmt.Sprint(r.UDPDstPort))
			}
		}
	case ARP:
		if r.IPSrc.IsValid() {
			b = append(b, "--arp-ip-src", r.IPSrc.String())
		}
		if r.ARPMACSrc != nil {
			if len(r.ARPMACSrc) != 6 {
				return "", fmt.Errorf("ebtables: arp source mac %s: want 6 bytes", r.ARPMACSrc)
			}
			b = append(b, "--arp-mac-src", r.ARPMACSrc.String())
		}
	}
	if r.Proto != IPv4 && (r.UDPSrcPort != 0 || r.UDPDstPort != 0) {
		return "", fmt.Errorf("ebtables: udp ports need protocol IPv4")
	}
	if r.Proto != ARP && r.ARPMACSrc != nil {
		return "", fmt.Errorf("ebtables: arp source mac needs protocol ARP")
	}
	if r.Proto == AnyProto && r.IPSrc.IsValid() {
		return "", fmt.Errorf("ebtables: source address needs protocol IPv4 or ARP")
	}
	switch r.Target {
	case Accept, Drop, Return:
	default:
		return "", fmt.Errorf("ebtables: target %q: want ACCEPT, DROP or RETURN", r.Target)
	}
	b = append(b, "-j", string(r.Target))
	return strings.Join(b, " "), nil
}

// Config configures a Manager.
type Config struct {
	// NetNS is the network namespace path to work in (empty: the
	// caller's).
	NetNS string
	// Chain is the chain to keep (empty: DefaultChain).
	Chain string
}

var chainRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,28}$`)

// Manager keeps the chain.
type Manager struct {
	cfg     Config
	restore string
	save    string
}

// New returns a Manager; it checks that ebtables-restore and
// ebtables-save are on PATH.
func New(cfg Config) (*Manager, error) {
	if cfg.Chain == "" {
		cfg.Chain = DefaultChain
	}
	if !chainRe.MatchString(cfg.Chain) {
		return nil, fmt.Errorf("ebtables: chain %q: want a letter, then letters, digits, _ or -, at most 29", cfg.Chain)
	}
	m := &Manager{cfg: cfg}
	var err error
	if m.restore, err = exec.LookPath("ebtables-restore"); err != nil {
		return nil, fmt.Errorf("ebtables: %w", err)
	}
	if m.save, err = exec.LookPath("ebtables-save"); err != nil {
		return nil, fmt.Errorf("ebtables: %w", err)
	}
	return m, nil
}

// Render returns the ebtables-restore --noflush input that replaces the
// chain with rules (the chain's policy is RETURN: frames no rule matched
// go on through the built-in chain). Declaring the chain flushes it.
func Render(chain string, rules []Rule) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*filter\n:%s RETURN\n", chain)
	for i, r := range rules {
		s, err := r.String()
		if err != nil {
			return "", fmt.Errorf("rule %d: %w", i+1, err)
		}
		fmt.Fprintf(&b, "-A %s %s\n", chain, s)
	}
	return b.String(), nil
}

// Apply replaces the chain with rules and makes INPUT and FORWARD jump to
// it first, in one ebtables-restore. Other chains and rules of the table
// are left alone.
func (m *Manager) Apply(ctx context.Context, rules []Rule) error {
	in, err := Render(m.cfg.Chain, rules)
	if err != nil {
		return err
	}
	return nsrun.Do(m.cfg.NetNS, func() error {
		saved, err := m.run(ctx, m.save, nil, "-t", "filter")
		if err != nil {
			return err
		}
		jumps := jumpsIn(saved, m.cfg.Chain)
		var b strings.Builder
		b.WriteString(in)
		for _, h := range hooks {
			if !jumps[h] {
				fmt.Fprintf(&b, "-I %s 1 -j %s\n", h, m.cfg.Chain)
			}
		}
		_, err = m.run(ctx, m.restore, []byte(b.String()), "--noflush")
		return err
	})
}

// Rules returns the chain's rules as ebtables-save prints them (without
// "-A chain "), nil when the chain does not exist.
func (m *Manager) Rules(ctx context.Context) ([]string, error) {
	var out []string
	err := nsrun.Do(m.cfg.NetNS, func() error {
		saved, err := m.run(ctx, m.save, nil, "-t", "filter")
		if err != nil {
			return err
		}
		prefix := "-A " + m.cfg.Chain + " "
		for _, l := range strings.Split(saved, "\n") {
			if s, ok := strings.CutPrefix(l, prefix); ok {
				out = append(out, s)
			}
		}
		return nil
	})
	return out, err
}

// jumpsIn reports which built-in chains of saved jump to chain.
func jumpsIn(saved, chain string) map[string]bool {
	out := map[string]bool{}
	for _, l := range strings.Split(saved, "\n") {
		for _, h := range hooks {
			if l == "-A "+h+" -j "+chain {
				out[h] = true
			}
		}
	}
	return out
}

func (m *Manager) run(ctx context.Context, bin string, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", bin, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
