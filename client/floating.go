package client

import (
	"context"

	"novanet/rpc"
)

// CreateFloatingIPs adds a range of floating addresses to a pool (empty:
// the manager's default pool).
func (c *Client) CreateFloatingIPs(ctx context.Context, req rpc.CreateFloatingIPsRequest) (rpc.FloatingRange, error) {
	var r rpc.FloatingRange
	err := c.Call(ctx, rpc.MethodCreateFloatingIPs, req, &r)
	return r, err
}

// DeleteFloatingIPs deletes a range, named by its CIDR, with no address
// allocated, and returns it.
func (c *Client) DeleteFloatingIPs(ctx context.Context, cidr string) (rpc.FloatingRange, error) {
	var r rpc.FloatingRange
	err := c.Call(ctx, rpc.MethodDeleteFloatingIPs, rpc.FloatingRangeRef{CIDR: cidr}, &r)
	return r, err
}

// ListFloatingIPs returns one page of floating IPs; see AllFloatingIPs.
func (c *Client) ListFloatingIPs(ctx context.Context, req rpc.ListFloatingIPsRequest) (rpc.FloatingIPsReply, error) {
	var r rpc.FloatingIPsReply
	err := c.Call(ctx, rpc.MethodListFloatingIPs, req, &r)
	return r, err
}

// AllFloatingIPs pages through every floating IP that matches req.
func (c *Client) AllFloatingIPs(ctx context.Context, req rpc.ListFloatingIPsRequest) ([]rpc.FloatingIP, error) {
	all := []rpc.FloatingIP{}
	for {
		r, err := c.ListFloatingIPs(ctx, req)
		if err != nil {
			return nil, err
		}
		all = append(all, r.FloatingIPs...)
		if !r.More || len(r.FloatingIPs) == 0 {
			return all, nil
		}
		req.After = r.FloatingIPs[len(r.FloatingIPs)-1].Address
	}
}

// FloatingPools lists the pools with their free and total counts.
func (c *Client) FloatingPools(ctx context.Context) ([]rpc.FloatingPool, error) {
	var r rpc.FloatingPoolsReply
	err := c.Call(ctx, rpc.MethodGetFloatingPools, struct{}{}, &r)
	return r.Pools, err
}

// AllocateFloatingIP gives a project a free floating address.
func (c *Client) AllocateFloatingIP(ctx context.Context, req rpc.AllocateFloatingIPRequest) (rpc.FloatingIP, error) {
	var r rpc.FloatingIP
	err := c.Call(ctx, rpc.MethodAllocateFloatingIP, req, &r)
	return r, err
}

// DeallocateFloatingIP returns an address that is not associated to its
// pool; a free address is not an error.
func (c *Client) DeallocateFloatingIP(ctx context.Context, req rpc.FloatingIPRequest) (rpc.FloatingIP, error) {
	var r rpc.FloatingIP
	err := c.Call(ctx, rpc.MethodDeallocateFloatingIP, req, &r)
	return r, err
}

// AssociateFloatingIP associates a floating address with a fixed address
// of an instance of the same project.
func (c *Client) AssociateFloatingIP(ctx context.Context, req rpc.AssociateFloatingIPRequest) (rpc.FloatingIP, error) {
	var r rpc.FloatingIP
	err := c.Call(ctx, rpc.MethodAssociateFloatingIP, req, &r)
	return r, err
}

// DisassociateFloatingIP removes an address's association; it stays
// allocated.
func (c *Client) DisassociateFloatingIP(ctx context.Context, req rpc.FloatingIPRequest) (rpc.FloatingIP, error) {
	var r rpc.FloatingIP
	err := c.Call(ctx, rpc.MethodDisassociateFloatingIP, req, &r)
	return r, err
}

// FloatingIPsByProject lists the floating IPs allocated to a project.
func (c *Client) FloatingIPsByProject(ctx context.Context, projectID string) ([]rpc.FloatingIP, error) {
	var r rpc.FloatingIPsReply
	err := c.Call(ctx, rpc.MethodGetFloatingIPsByProject, rpc.ProjectRequest{ProjectID: projectID}, &r)
	return r.FloatingIPs, err
}

// FloatingIP looks up one floating address.
func (c *Client) FloatingIP(ctx context.Context, address string) (rpc.FloatingIP, error) {
	var r rpc.FloatingIP
	err := c.Call(ctx, rpc.MethodGetFloatingIPByAddress, rpc.FloatingAddressRef{Address: address}, &r)
	return r, err
}

// FloatingIPsByFixedAddress lists the floating IPs associated with a fixed
// address.
func (c *Client) FloatingIPsByFixedAddress(ctx context.Context, fixedAddress string) ([]rpc.FloatingIP, error) {
	var r rpc.FloatingIPsReply
	err := c.Call(ctx, rpc.MethodGetFloatingIPsByFixedAddress, rpc.FixedAddressRef{FixedAddress: fixedAddress}, &r)
	return r.FloatingIPs, err
}

// QuotaSet sets a project's limit on a resource (-1: unlimited) and
// returns its quotas.
func (c *Client) QuotaSet(ctx context.Context, projectID, resource string, limit int) (rpc.QuotaReply, error) {
	var r rpc.QuotaReply
	err := c.Call(ctx, rpc.MethodQuotaSet, rpc.QuotaSetRequest{ProjectID: projectID, Resource: resource, Limit: &limit}, &r)
	return r, err
}

// QuotaShow returns a project's effective quotas and usage.
func (c *Client) QuotaShow(ctx context.Context, projectID string) (rpc.QuotaReply, error) {
	var r rpc.QuotaReply
	err := c.Call(ctx, rpc.MethodQuotaShow, rpc.ProjectRequest{ProjectID: projectID}, &r)
	return r, err
}
