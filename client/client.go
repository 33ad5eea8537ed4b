// Package client calls the novanet manager over NATS. netadm and compute
// services use it; clients in other languages follow docs/rpc.md.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"novanet/rpc"
)

// DefaultTimeout applies to calls whose context has no deadline.
const DefaultTimeout = 30 * time.Second

// Client sends requests to whichever manager replica the queue group picks.
type Client struct {
	nc      *nats.Conn
	timeout time.Duration
}

// New returns a client on an open NATS connection. timeout bounds calls
// whose context has no deadline (0: DefaultTimeout).
func New(nc *nats.Conn, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{nc: nc, timeout: timeout}
}

// Call sends req as JSON to a manager method and decodes the reply into
// reply (which may be nil). Errors from the manager are *rpc.Error; an
// absent or silent manager is rpc.CodeUnavailable.
func (c *Client) Call(ctx context.Context, method string, req, reply any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", method, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	subject := rpc.Subject(method)
	msg, err := c.nc.RequestWithContext(ctx, subject, body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return rpc.Errorf(rpc.CodeUnavailable, "no network-manager answers on %s (is it running and on the same NATS?)", subject)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return rpc.Errorf(rpc.CodeUnavailable, "no reply on %s in time", subject)
	case err != nil:
		return fmt.Errorf("request %s: %w", subject, err)
	}
	if status := msg.Header.Get(rpc.HeaderErrorCode); status != "" {
		var e rpc.Error
		if json.Unmarshal(msg.Data, &e) != nil || e.Code == "" {
			e = rpc.Error{Code: rpc.CodeForStatus(status), Message: msg.Header.Get(rpc.HeaderError)}
		}
		return &e
	}
	if reply == nil {
		return nil
	}
	if err := json.Unmarshal(msg.Data, reply); err != nil {
		return fmt.Errorf("decode %s reply: %w", method, err)
	}
	return nil
}

// CreateNetworks creates networks as nova-manage network create.
func (c *Client) CreateNetworks(ctx context.Context, req rpc.CreateNetworksRequest) ([]rpc.Network, error) {
	var r rpc.NetworksReply
	err := c.Call(ctx, rpc.MethodCreateNetworks, req, &r)
	return r.Networks, err
}

// Networks lists networks, all or one project's.
func (c *Client) Networks(ctx context.Context, projectID string) ([]rpc.Network, error) {
	var r rpc.NetworksReply
	err := c.Call(ctx, rpc.MethodGetAllNetworks, rpc.GetAllNetworksRequest{ProjectID: projectID}, &r)
	return r.Networks, err
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
