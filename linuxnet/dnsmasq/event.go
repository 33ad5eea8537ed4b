package dnsmasq

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"novanet/ifname"
)

// EventAction is the lease action dnsmasq reports to --dhcp-script.
type EventAction string

const (
	EventAdd EventAction = "add" // a new lease
	EventOld EventAction = "old" // an existing lease, at startup or renewal
	EventDel EventAction = "del" // a lease released or expired
)

var (
	// ErrUnknownAction is returned for script actions other than add, old
	// and del (init, tftp, arp-add, ...); callers usually ignore them.
	ErrUnknownAction = errors.New("unknown dhcp-script action")
	// ErrBadEvent is returned for malformed arguments or environment.
	ErrBadEvent = errors.New("malformed dhcp-script event")
)

// Event is one --dhcp-script invocation.
type Event struct {
	Action    EventAction
	MAC       net.HardwareAddr
	IP        netip.Addr
	Hostname  string // empty when unknown
	Interface string // DNSMASQ_INTERFACE, may be empty
	ClientID  string // DNSMASQ_CLIENT_ID, may be empty
	Domain    string // DNSMASQ_DOMAIN, may be empty
	Tags      []string
	// Expires is DNSMASQ_LEASE_EXPIRES; zero when not given.
	Expires time.Time
}

// ParseEvent parses the arguments dnsmasq passes to its dhcp-script (without
// the program name: "add|old|del MAC IP [HOSTNAME]") and the DNSMASQ_*
// environment read through getenv (os.Getenv in production).
func ParseEvent(args []string, getenv func(string) string) (Event, error) {
	if len(args) == 0 {
		return Event{}, fmt.Errorf("%w: no arguments", ErrBadEvent)
	}
	var ev Event
	switch a := EventAction(args[0]); a {
	case EventAdd, EventOld, EventDel:
		ev.Action = a
	default:
		return Event{}, fmt.Errorf("%w %q", ErrUnknownAction, args[0])
	}
	if len(args) < 3 || len(args) > 4 {
		return Event{}, fmt.Errorf("%w: %s: want MAC IP [HOSTNAME], got %d arguments", ErrBadEvent, ev.Action, len(args)-1)
	}
	mac, err := net.ParseMAC(args[1])
	if err != nil || len(mac) != 6 {
		return Event{}, fmt.Errorf("%w: MAC %q", ErrBadEvent, args[1])
	}
	ev.MAC = mac
	ip, err := netip.ParseAddr(args[2])
	if err != nil || !ip.Is4() {
		return Event{}, fmt.Errorf("%w: IP %q", ErrBadEvent, args[2])
	}
	ev.IP = ip
	if len(args) == 4 && args[3] != "" {
		if !labelRe.MatchString(args[3]) {
			return Event{}, fmt.Errorf("%w: hostname %q", ErrBadEvent, args[3])
		}
		ev.Hostname = args[3]
	}
	if getenv == nil {
		return ev, nil
	}
	if v := getenv("DNSMASQ_INTERFACE"); v != "" {
		if err := ifname.Validate(v); err != nil {
			return Event{}, fmt.Errorf("%w: DNSMASQ_INTERFACE: %w", ErrBadEvent, err)
		}
		ev.Interface = v
	}
	if v := getenv("DNSMASQ_CLIENT_ID"); v != "" {
		if _, err := net.ParseMAC(v); err != nil && !isHexColon(v) {
			return Event{}, fmt.Errorf("%w: DNSMASQ_CLIENT_ID %q", ErrBadEvent, v)
		}
		ev.ClientID = v
	}
	if v := getenv("DNSMASQ_DOMAIN"); v != "" {
		if err := validateDomain(v); err != nil {
			return Event{}, fmt.Errorf("%w: DNSMASQ_DOMAIN: %v", ErrBadEvent, err)
		}
		ev.Domain = v
	}
	if v := getenv("DNSMASQ_TAGS"); v != "" {
		for _, t := range strings.Fields(v) {
			if !nameRe.MatchString(t) {
				return Event{}, fmt.Errorf("%w: DNSMASQ_TAGS tag %q", ErrBadEvent, t)
			}
			ev.Tags = append(ev.Tags, t)
		}
	}
	if v := getenv("DNSMASQ_LEASE_EXPIRES"); v != "" {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil || sec < 0 || sec > 1<<40 {
			return Event{}, fmt.Errorf("%w: DNSMASQ_LEASE_EXPIRES %q", ErrBadEvent, v)
		}
		ev.Expires = time.Unix(sec, 0).UTC()
	}
	return ev, nil
}

func isHexColon(s string) bool {
	for _, p := range strings.Split(s, ":") {
		if len(p) == 0 || len(p) > 2 {
			return false
		}
		for _, c := range p {
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

// Args returns the event as dnsmasq's script arguments.
func (e Event) Args() []string {
	a := []string{string(e.Action), e.MAC.String(), e.IP.String()}
	if e.Hostname != "" {
		a = append(a, e.Hostname)
	}
	return a
}

// Env returns the event's DNSMASQ_* environment, as getenv would see it.
func (e Event) Env() map[string]string {
	env := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			env[k] = v
		}
	}
	set("DNSMASQ_INTERFACE", e.Interface)
	set("DNSMASQ_CLIENT_ID", e.ClientID)
	set("DNSMASQ_DOMAIN", e.Domain)
	set("DNSMASQ_TAGS", strings.Join(e.Tags, " "))
	if !e.Expires.IsZero() {
		set("DNSMASQ_LEASE_EXPIRES", strconv.FormatInt(e.Expires.Unix(), 10))
	}
	return env
}
