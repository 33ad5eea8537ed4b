package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"novanet/linuxnet/dnsmasq"
	"novanet/rpc"
)

// DHCP lease events reach the agent over a unix socket: dnsmasq runs its
// --dhcp-script ("network-host dhcp-event") in the network namespace it
// serves, where the manager's NATS may not be reachable, but a socket
// path is. The agent turns each event into lease_fixed_ip (add, old) or
// release_fixed_ip (del).

// EventMessage is one line sent by dhcp-event to the agent.
type EventMessage struct {
	Action   string `json:"action"` // add, old or del
	MAC      string `json:"mac"`
	IP       string `json:"ip"`
	Hostname string `json:"hostname,omitempty"`
}

// EventReply is the agent's answer, one line.
type EventReply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// maxEventBytes bounds one event line.
const maxEventBytes = 4096

// ServeEvents listens on the unix socket at path until ctx ends. A stale
// socket file from an earlier run is replaced.
func (a *Agent) ServeEvents(ctx context.Context, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("event socket directory: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale event socket: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("event socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("event socket: %w", err)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				if ctx.Err() == nil {
					a.log.Error("event socket accept", zap.Error(err))
				}
				return
			}
			go a.serveEvent(ctx, conn)
		}
	}()
	return nil
}

func (a *Agent) serveEvent(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 0, 512), maxEventBytes)
	reply := EventReply{OK: true}
	if !sc.Scan() {
		return
	}
	if err := a.HandleEvent(ctx, sc.Bytes()); err != nil {
		reply = EventReply{Error: err.Error()}
	}
	b, _ := json.Marshal(reply)
	_, _ = conn.Write(append(b, '\n'))
}

// HandleEvent decodes one event line and reports it to the manager.
func (a *Agent) HandleEvent(ctx context.Context, line []byte) error {
	ev, err := ParseEventMessage(line)
	if err != nil {
		return err
	}
	req := rpc.AddressRequest{Address: ev.IP.String(), MAC: ev.MAC.String(), Host: a.cfg.Host}
	method := rpc.MethodLeaseFixedIP
	if ev.Action == dnsmasq.EventDel {
		method = rpc.MethodReleaseFixedIP
	}
	// On this host's subject: NATS lets an agent speak for its host only.
	if err := a.mgr.Call(ctx, rpc.HostMethod(a.cfg.Host, method), req, nil); err != nil {
		return fmt.Errorf("%s %s: %w", method, req.Address, err)
	}
	a.log.Info("dhcp event", zap.String("action", string(ev.Action)), zap.String("address", req.Address), zap.String("mac", req.MAC))
	return nil
}

// ParseEventMessage checks one event line strictly, as ParseEvent checks
// dnsmasq's arguments.
func ParseEventMessage(line []byte) (dnsmasq.Event, error) {
	var m EventMessage
	if err := rpc.Decode(line, &m); err != nil {
		return dnsmasq.Event{}, fmt.Errorf("event: %w", err)
	}
	args := []string{m.Action, m.MAC, m.IP}
	if m.Hostname != "" {
		args = append(args, m.Hostname)
	}
	return dnsmasq.ParseEvent(args, func(string) string { return "" })
}

// SendEvent delivers a dnsmasq event to the agent listening at path and
// waits for its answer.
func SendEvent(ctx context.Context, path string, ev dnsmasq.Event) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("agent event socket: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	b, _ := json.Marshal(EventMessage{Action: string(ev.Action), MAC: ev.MAC.String(), IP: ev.IP.String(), Hostname: ev.Hostname})
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("send event: %w", err)
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 0, 512), maxEventBytes)
	if !sc.Scan() {
		if sc.Err() != nil {
			return fmt.Errorf("read agent reply: %w", sc.Err())
		}
		return errors.New("agent closed the event socket without answering")
	}
	var r EventReply
	if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
		return fmt.Errorf("agent reply %q: %w", sc.Text(), err)
	}
	if !r.OK {
		return fmt.Errorf("agent: %s", r.Error)
	}
	return nil
}
