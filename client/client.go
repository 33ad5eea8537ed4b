// Package client calls the novanet manager over NATS. netadm and compute
// services use it; clients in other languages follow docs/rpc.md.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"novanet/rpc"
)

// DefaultTimeout applies to calls whose context has no deadline.
const DefaultTimeout = 30 * time.Second

// DefaultAttemptTimeout bounds one attempt of a manager call; see
// WithAttemptTimeout.
const DefaultAttemptTimeout = 5 * time.Second

// Client sends requests to whichever manager replica the queue group picks.
type Client struct {
	nc      *nats.Conn
	timeout time.Duration
	attempt time.Duration
}

// Option tunes a Client.
type Option func(*Client)

// WithAttemptTimeout sets how long one attempt of a manager call waits for
// its reply before the call is sent again, to whichever replica the queue
// group picks (default DefaultAttemptTimeout). Methods that may take long
// (create_networks, delete_network, create_floating_ips,
// delete_floating_ips) get the whole call's time in one attempt.
func WithAttemptTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.attempt = d
		}
	}
}

// New returns a client on an open NATS connection. timeout bounds calls
// whose context has no deadline (0: DefaultTimeout).
func New(nc *nats.Conn, timeout time.Duration, opts ...Option) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c := &Client{nc: nc, timeout: timeout, attempt: DefaultAttemptTimeout}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Call sends req as JSON to a manager method and decodes the reply into
// reply (which may be nil). Errors from the manager are *rpc.Error; an
// absent or silent manager is rpc.CodeUnavailable.
//
// Every call carries a new request id (the Novanet-Request-Id header) and
// its attempt's deadline (Novanet-Deadline). It is sent again, with the
// same id, after an unavailable reply, no responders, or an attempt that
// timed out, with a backoff of 50 ms doubling to 1 s, until the context's
// deadline (or the client's timeout), or after no responders for longer
// than an attempt's timeout (no manager runs): the manager answers a repeated id
// with the first reply, and the methods without an id store are
// idempotent, so a retry never does the work twice. docs/rpc.md, "Request
// ids and deadlines".
func (c *Client) Call(ctx context.Context, method string, req, reply any) error {
	return c.call(ctx, rpc.Subject(method), "network-manager", method, req, reply, true)
}

// CallHost sends req to a method of the agent on host
// (novanet.host.<host>.<method>), once: agents' methods are idempotent but
// may take a minute, so one attempt gets the whole time.
func (c *Client) CallHost(ctx context.Context, host, method string, req, reply any) error {
	if err := rpc.ValidateHostName(host); err != nil {
		return &rpc.Error{Code: rpc.CodeInvalidArgument, Message: err.Error(), Field: "host"}
	}
	return c.call(ctx, rpc.HostSubject(host, method), "network-host on "+host, method, req, reply, false)
}

// ConvergeHost asks the agent on host to converge the whole host now, and
// returns what it changed.
func (c *Client) ConvergeHost(ctx context.Context, host string) ([]string, error) {
	var r rpc.HostActionReply
	err := c.CallHost(ctx, host, rpc.HostMethodConverge, struct{}{}, &r)
	return r.Changes, err
}

// DescribeHost asks the agent on host for its actual state beside the
// desired one (rpc.HostMethodDescribe).
func (c *Client) DescribeHost(ctx context.Context, host string, req rpc.DescribeRequest) (rpc.HostDescription, error) {
	var r rpc.HostDescription
	err := c.CallHost(ctx, host, rpc.HostMethodDescribe, req, &r)
	return r, err
}

// longMethods may take long on a large request: one attempt gets the whole
// time of the call.
var longMethods = map[string]bool{
	rpc.MethodCreateNetworks: true, rpc.MethodDeleteNetwork: true,
	rpc.MethodCreateFloatingIPs: true, rpc.MethodDeleteFloatingIPs: true,
}

const (
	firstBackoff = 50 * time.Millisecond
	maxBackoff   = time.Second
)

func (c *Client) call(ctx context.Context, subject, who, method string, req, reply any, retry bool) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", method, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	id := uuid.NewString()
	backoff := firstBackoff
	var noResponders time.Time // since when every attempt met no responders
	for attempt := 1; ; attempt++ {
		per := time.Until(deadline)
		if retry && !longMethods[method] && per > c.attempt {
			per = c.attempt
		}
		msg, err := c.attemptOnce(ctx, subject, id, body, per)
		if !errors.Is(err, nats.ErrNoResponders) {
			noResponders = time.Time{} // something took the request
		}
		again := false
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			err = rpc.Errorf(rpc.CodeUnavailable, "no %s answers on %s (is it running and on the same NATS?)", who, subject)
			// Replicas restarting or resubscribing after a NATS failover
			// are back within seconds; none for longer than an attempt's
			// timeout is reported at once, not after the whole call.
			if noResponders.IsZero() {
				noResponders = time.Now()
			}
			again = time.Since(noResponders) < c.attempt
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
			err = rpc.Errorf(rpc.CodeUnavailable, "no reply on %s in time (%d attempts)", subject, attempt)
			again = true
		case err != nil:
			return fmt.Errorf("request %s: %w", subject, err)
		default:
			err = replyError(msg)
			again = errors.Is(err, rpc.ErrUnavailable)
		}
		if !again || !retry || ctx.Err() != nil {
			if err != nil || reply == nil {
				return err
			}
			if err := json.Unmarshal(msg.Data, reply); err != nil {
				return fmt.Errorf("decode %s reply: %w", method, err)
			}
			return nil
		}
		// Jitter spreads the retries of many callers.
		wait := backoff/2 + rand.N(backoff/2+1)
		if time.Until(deadline) <= wait {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// attemptOnce sends one attempt and waits at most per for its reply.
func (c *Client) attemptOnce(ctx context.Context, subject, id string, body []byte, per time.Duration) (*nats.Msg, error) {
	actx, cancel := context.WithTimeout(ctx, per)
	defer cancel()
	m := nats.NewMsg(subject)
	m.Data = body
	m.Header.Set(rpc.HeaderRequestID, id)
	if d, ok := actx.Deadline(); ok {
		m.Header.Set(rpc.HeaderDeadline, rpc.FormatDeadline(d))
	}
	return c.nc.RequestMsgWithContext(actx, m)
}

// replyError returns the error a reply carries, or nil.
func replyError(msg *nats.Msg) error {
	status := msg.Header.Get(rpc.HeaderErrorCode)
	if status == "" {
		return nil
	}
	var e rpc.Error
	if json.Unmarshal(msg.Data, &e) != nil || e.Code == "" {
		e = rpc.Error{Code: rpc.CodeForStatus(status), Message: msg.Header.Get(rpc.HeaderError)}
	}
	return &e
}

// CreateNetworks creates networks as nova-manage network create.
func (c *Client) CreateNetworks(ctx context.Context, req rpc.CreateNetworksRequest) ([]rpc.Network, error) {
	var r rpc.NetworksReply
	err := c.Call(ctx, rpc.MethodCreateNetworks, req, &r)
	return r.Networks, err
}

// Networks lists networks, all or one project's, following get_all_networks'
// pages to the last.
func (c *Client) Networks(ctx context.Context, projectID string) ([]rpc.Network, error) {
	req := rpc.GetAllNetworksRequest{ProjectID: projectID}
	var all []rpc.Network
	for {
		var r rpc.NetworksReply
		if err := c.Call(ctx, rpc.MethodGetAllNetworks, req, &r); err != nil {
			return nil, err
		}
		all = append(all, r.Networks...)
		if r.NextCursor == "" {
			return nonNil(all), nil
		}
		if r.NextCursor == req.Cursor {
			return nil, rpc.Errorf(rpc.CodeInternal, "get_all_networks: next_cursor %q repeats the request's", r.NextCursor)
		}
		req.Cursor = r.NextCursor
	}
}

// nonNil is s, or an empty slice for nil (a list that is JSON [], not null).
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Network returns one network by id, UUID, CIDR or label.
func (c *Client) Network(ctx context.Context, ref string) (rpc.Network, error) {
	var n rpc.Network
	err := c.Call(ctx, rpc.MethodGetNetwork, rpc.NetworkRef{Network: ref}, &n)
	return n, err
}

// DeleteNetwork deletes a network with no address in use and returns it.
func (c *Client) DeleteNetwork(ctx context.Context, ref string) (rpc.Network, error) {
	var n rpc.Network
	err := c.Call(ctx, rpc.MethodDeleteNetwork, rpc.NetworkRef{Network: ref}, &n)
	return n, err
}

// StopNetwork stops a network: its hosts tear it down, its addresses stay
// allocated.
func (c *Client) StopNetwork(ctx context.Context, ref string) (rpc.Network, error) {
	var n rpc.Network
	err := c.Call(ctx, rpc.MethodStopNetwork, rpc.NetworkRef{Network: ref}, &n)
	return n, err
}

// StartNetwork starts a stopped network again.
func (c *Client) StartNetwork(ctx context.Context, ref string) (rpc.Network, error) {
	var n rpc.Network
	err := c.Call(ctx, rpc.MethodStartNetwork, rpc.NetworkRef{Network: ref}, &n)
	return n, err
}

// AllocateForInstance gives an instance its network; retrying it returns
// the same interfaces.
func (c *Client) AllocateForInstance(ctx context.Context, req rpc.AllocateForInstanceRequest) (rpc.NetworkInfo, error) {
	var r rpc.NetworkInfo
	err := c.Call(ctx, rpc.MethodAllocateForInstance, req, &r)
	return r, err
}

// DeallocateForInstance removes an instance's interfaces; its addresses
// are held until their DHCP release or the disassociate timeout.
func (c *Client) DeallocateForInstance(ctx context.Context, instanceUUID string) error {
	return c.Call(ctx, rpc.MethodDeallocateForInstance, rpc.InstanceRequest{InstanceUUID: instanceUUID}, nil)
}

// AddFixedIPToInstance adds an interface on a network to an instance.
func (c *Client) AddFixedIPToInstance(ctx context.Context, req rpc.AddFixedIPRequest) (rpc.NetworkInfo, error) {
	var r rpc.NetworkInfo
	err := c.Call(ctx, rpc.MethodAddFixedIPToInstance, req, &r)
	return r, err
}

// RemoveFixedIPFromInstance removes one fixed address and its interface.
func (c *Client) RemoveFixedIPFromInstance(ctx context.Context, instanceUUID, address string) (rpc.NetworkInfo, error) {
	var r rpc.NetworkInfo
	err := c.Call(ctx, rpc.MethodRemoveFixedIPFromInstance, rpc.RemoveFixedIPRequest{InstanceUUID: instanceUUID, Address: address}, &r)
	return r, err
}

// InstanceNWInfo returns an instance's interfaces and addresses.
func (c *Client) InstanceNWInfo(ctx context.Context, instanceUUID string) (rpc.NetworkInfo, error) {
	var r rpc.NetworkInfo
	err := c.Call(ctx, rpc.MethodGetInstanceNWInfo, rpc.InstanceRequest{InstanceUUID: instanceUUID}, &r)
	return r, err
}

// addressCall calls a method that takes an address and returns a FixedIP.
func (c *Client) addressCall(ctx context.Context, method string, req rpc.AddressRequest) (rpc.FixedIP, error) {
	var r rpc.FixedIP
	err := c.Call(ctx, method, req, &r)
	return r, err
}

// LeaseFixedIP reports a DHCP lease of an address: with req.Host set, as
// that host's agent (on its subject), else as an operator.
func (c *Client) LeaseFixedIP(ctx context.Context, req rpc.AddressRequest) (rpc.FixedIP, error) {
	return c.hostAddressCall(ctx, rpc.MethodLeaseFixedIP, req)
}

// ReleaseFixedIP reports a DHCP release of an address, as LeaseFixedIP.
func (c *Client) ReleaseFixedIP(ctx context.Context, req rpc.AddressRequest) (rpc.FixedIP, error) {
	return c.hostAddressCall(ctx, rpc.MethodReleaseFixedIP, req)
}

// hostAddressCall sends an address method on req.Host's subject, or on
// the plain one without a host.
func (c *Client) hostAddressCall(ctx context.Context, method string, req rpc.AddressRequest) (rpc.FixedIP, error) {
	if req.Host == "" {
		return c.addressCall(ctx, method, req)
	}
	var r rpc.FixedIP
	err := c.CallForHost(ctx, req.Host, method, req, &r)
	return r, err
}

// FixedIP looks up one fixed address.
func (c *Client) FixedIP(ctx context.Context, address string) (rpc.FixedIP, error) {
	return c.addressCall(ctx, rpc.MethodGetFixedIPByAddress, rpc.AddressRequest{Address: address})
}

// ReserveFixedIP keeps a free address from being handed out.
func (c *Client) ReserveFixedIP(ctx context.Context, address string) (rpc.FixedIP, error) {
	return c.addressCall(ctx, rpc.MethodReserveFixedIP, rpc.AddressRequest{Address: address})
}

// UnreserveFixedIP makes a reserved address available again.
func (c *Client) UnreserveFixedIP(ctx context.Context, address string) (rpc.FixedIP, error) {
	return c.addressCall(ctx, rpc.MethodUnreserveFixedIP, rpc.AddressRequest{Address: address})
}

// FixedIPsByInstance lists an instance's fixed addresses, held ones included.
func (c *Client) FixedIPsByInstance(ctx context.Context, instanceUUID string) ([]rpc.FixedIP, error) {
	var r rpc.FixedIPsReply
	err := c.Call(ctx, rpc.MethodGetFixedIPsByInstance, rpc.InstanceRequest{InstanceUUID: instanceUUID}, &r)
	return r.FixedIPs, err
}

// ListFixedIPs lists fixed addresses: those in use or reserved, or all,
// from after req.Cursor, at most req.Limit of them (0: rpc.MaxPage; more
// than that are fetched a page at a time).
func (c *Client) ListFixedIPs(ctx context.Context, req rpc.ListFixedIPsRequest) ([]rpc.FixedIP, error) {
	want := req.Limit
	if want < 0 {
		return nil, &rpc.Error{Code: rpc.CodeInvalidArgument, Field: "limit", Message: fmt.Sprintf("limit %d is negative", want)}
	}
	if want == 0 {
		want = rpc.MaxPage
	}
	var all []rpc.FixedIP
	for {
		req.Limit = min(want-len(all), rpc.MaxPage)
		var r rpc.FixedIPsReply
		if err := c.Call(ctx, rpc.MethodListFixedIPs, req, &r); err != nil {
			return nil, err
		}
		all = append(all, r.FixedIPs...)
		if r.NextCursor == "" || len(all) >= want {
			return nonNil(all), nil
		}
		if r.NextCursor == req.Cursor {
			return nil, rpc.Errorf(rpc.CodeInternal, "list_fixed_ips: next_cursor %q repeats the request's", r.NextCursor)
		}
		req.Cursor = r.NextCursor
	}
}

// RegisterHost announces an agent; agents repeat it as their heartbeat.
// It is sent on the host's own subject, novanet.manager.host.<host>.register_host.
func (c *Client) RegisterHost(ctx context.Context, req rpc.RegisterHostRequest) (rpc.HostInfo, error) {
	var h rpc.HostInfo
	err := c.CallForHost(ctx, req.Host, rpc.MethodRegisterHost, req, &h)
	return h, err
}

// CallForHost calls a host-facing manager method (rpc.HostManagerMethods)
// on the subject of host: novanet.manager.host.<host>.<method>.
func (c *Client) CallForHost(ctx context.Context, host, method string, req, reply any) error {
	if err := rpc.ValidateHostName(host); err != nil {
		return &rpc.Error{Code: rpc.CodeInvalidArgument, Message: err.Error(), Field: "host"}
	}
	return c.Call(ctx, rpc.HostMethod(host, method), req, reply)
}

// ListHosts lists the registered agents, following list_hosts' pages to
// the last.
func (c *Client) ListHosts(ctx context.Context) ([]rpc.HostInfo, error) {
	var (
		req rpc.ListHostsRequest
		all []rpc.HostInfo
	)
	for {
		var r rpc.HostsReply
		if err := c.Call(ctx, rpc.MethodListHosts, req, &r); err != nil {
			return nil, err
		}
		all = append(all, r.Hosts...)
		if r.NextCursor == "" {
			return nonNil(all), nil
		}
		if r.NextCursor == req.Cursor {
			return nil, rpc.Errorf(rpc.CodeInternal, "list_hosts: next_cursor %q repeats the request's", r.NextCursor)
		}
		req.Cursor = r.NextCursor
	}
}

// HostState returns the desired state of a host (networkID 0: all of it).
func (c *Client) HostState(ctx context.Context, host string, networkID int64) (rpc.HostState, error) {
	var st rpc.HostState
	err := c.CallForHost(ctx, host, rpc.MethodGetHostState, rpc.HostStateRequest{Host: host, NetworkID: networkID}, &st)
	return st, err
}
