package manager

import (
	"crypto/rand"
	"net"
	"net/netip"
	"regexp"
	"strings"

	"github.com/google/uuid"

	"novanet/rpc"
)

func badArg(field, format string, args ...any) *rpc.Error {
	e := rpc.Errorf(rpc.CodeInvalidArgument, format, args...)
	e.Field = field
	return e
}

// parseInstance checks an instance UUID and returns its canonical form.
func parseInstance(s string) (string, error) {
	if s == "" {
		return "", badArg("instance_uuid", "instance_uuid is required")
	}
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return "", badArg("instance_uuid", "instance_uuid %q is not a UUID", truncate(s))
	}
	return u.String(), nil
}

var hostRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})$`)

// checkHost validates an optional host name.
func checkHost(s string) error {
	if s != "" && !hostRe.MatchString(s) {
		return badArg("host", "host %q is not a host name", truncate(s))
	}
	return nil
}

func checkProject(s string, required bool) error {
	switch {
	case s == "" && required:
		return badArg("project_id", "project_id is required")
	case len(s) > 255:
		return badArg("project_id", "project_id %q is longer than 255 bytes", truncate(s))
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return badArg("project_id", "project_id %q has control characters", truncate(s))
	}
	return nil
}

// parseFixedAddr checks an IPv4 address.
func parseFixedAddr(field, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, badArg(field, "%s %q is not an IPv4 address", field, truncate(s))
	}
	return a, nil
}

// parseMAC checks a unicast Ethernet MAC and returns it in canonical form.
func parseMAC(s string) (string, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", badArg("macs", "MAC %q is not an Ethernet address", truncate(s))
	}
	if hw[0]&1 != 0 {
		return "", badArg("macs", "MAC %q is multicast", s)
	}
	return hw.String(), nil
}

// randomMAC returns a random unicast, locally administered MAC.
func randomMAC() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[0] = b[0]&0xfc | 0x02
	return net.HardwareAddr(b[:]).String()
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
