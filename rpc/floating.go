package rpc

// Floating IPs: pools of public addresses that a project allocates and
// associates with its instances' fixed addresses; the host that serves the
// fixed address NATs the floating one to it. docs/rpc.md, "Floating IPs",
// describes the methods for clients in other languages.
const (
	// Operator methods (netadm floating ...).
	MethodCreateFloatingIPs = "create_floating_ips"
	MethodDeleteFloatingIPs = "delete_floating_ips"
	MethodListFloatingIPs   = "list_floating_ips"
	MethodGetFloatingPools  = "get_floating_pools"

	// Project and compute methods.
	MethodAllocateFloatingIP           = "allocate_floating_ip"
	MethodDeallocateFloatingIP         = "deallocate_floating_ip"
	MethodAssociateFloatingIP          = "associate_floating_ip"
	MethodDisassociateFloatingIP       = "disassociate_floating_ip"
	MethodGetFloatingIPsByProject      = "get_floating_ips_by_project"
	MethodGetFloatingIPByAddress       = "get_floating_ip_by_address"
	MethodGetFloatingIPsByFixedAddress = "get_floating_ips_by_fixed_address"

	// Quotas (netadm quota ...).
	MethodQuotaSet  = "quota_set"
	MethodQuotaShow = "quota_show"
)

// Defaults the manager applies unless configured otherwise.
const (
	// DefaultFloatingPool is the pool used when a request names none, as
	// nova's default_floating_pool.
	DefaultFloatingPool = "nova"
	// DefaultFloatingIPQuota is a project's floating IP limit without a
	// quota of its own, as nova's quota_floating_ips.
	DefaultFloatingIPQuota = 10
	// MaxFloatingRange is the most addresses one create_floating_ips
	// request may cover (a /14).
	MaxFloatingRange = 1 << 18
	// MaxListFloatingIPs bounds one page of list_floating_ips.
	MaxListFloatingIPs = 1000
)

// Quota resources. Only floating_ips is enforced in this release.
const ResourceFloatingIPs = "floating_ips"

// QuotaUnlimited as a limit means no limit.
const QuotaUnlimited = -1

// CreateFloatingIPsRequest adds a range of floating addresses to a pool.
type CreateFloatingIPsRequest struct {
	Pool      string `json:"pool,omitempty"` // default: the manager's default pool
	CIDR      string `json:"cidr"`
	Interface string `json:"interface,omitempty"` // public interface the hosts NAT on
}

// FloatingRangeRef names a range by its exact CIDR.
type FloatingRangeRef struct {
	CIDR string `json:"cidr"`
}

// FloatingRange is one range of a pool.
type FloatingRange struct {
	ID        int64  `json:"id"`
	CIDR      string `json:"cidr"`
	Pool      string `json:"pool"`
	Interface string `json:"interface,omitempty"`
	Total     int    `json:"total"`     // addresses of the range that can be allocated
	Allocated int    `json:"allocated"` // of those, allocated to a project
	CreatedAt string `json:"created_at"`
}

// ListFloatingIPsRequest pages through floating IPs in address order.
type ListFloatingIPsRequest struct {
	Pool      string `json:"pool,omitempty"`
	ProjectID string `json:"project_id,omitempty"`
	// After: only addresses after this one (the last of the previous page).
	After string `json:"after,omitempty"`
	Limit int    `json:"limit,omitempty"` // default and most: MaxListFloatingIPs
}

// FloatingIP is one floating address and what it is allocated and
// associated to. Optional values are omitted when unset.
type FloatingIP struct {
	Address      string `json:"address"`
	Pool         string `json:"pool"`
	Interface    string `json:"interface,omitempty"`
	ProjectID    string `json:"project_id,omitempty"`    // allocated to this project
	AutoAssigned bool   `json:"auto_assigned"`           // allocated with its instance; released with it
	FixedAddress string `json:"fixed_address,omitempty"` // associated with this fixed IP
	InstanceUUID string `json:"instance_uuid,omitempty"` // ... of this instance
	NetworkID    int64  `json:"network_id,omitempty"`    // ... on this network
	Host         string `json:"host,omitempty"`          // the host that NATs it
	UpdatedAt    string `json:"updated_at"`
}

// FloatingIPsReply carries a list of floating IPs. More: list_floating_ips
// has more after the last one.
type FloatingIPsReply struct {
	FloatingIPs []FloatingIP `json:"floating_ips"`
	More        bool         `json:"more,omitempty"`
}

// FloatingPool summarises one pool.
type FloatingPool struct {
	Name       string `json:"name"`
	Total      int    `json:"total"`
	Free       int    `json:"free"`       // not allocated to a project
	Associated int    `json:"associated"` // associated with a fixed IP
	Ranges     int    `json:"ranges"`
}

// FloatingPoolsReply lists the pools by name.
type FloatingPoolsReply struct {
	Pools []FloatingPool `json:"pools"`
}

// AllocateFloatingIPRequest gives a project a free address of a pool.
type AllocateFloatingIPRequest struct {
	ProjectID string `json:"project_id"`
	Pool      string `json:"pool,omitempty"` // default: the manager's default pool
	// AutoAssigned must be false (or absent): only the manager
	// auto-assigns addresses (which do not count against the quota), when
	// it allocates an instance's network with auto_assign_floating_ip;
	// true is invalid_argument. The field is kept so that callers that
	// send false are not refused as sending an unknown field.
	AutoAssigned bool `json:"auto_assigned,omitempty"`
}

// FloatingIPRequest names a floating address to deallocate or disassociate.
type FloatingIPRequest struct {
	Address string `json:"address"`
	// ProjectID, when set, must be the project the address is allocated to.
	ProjectID string `json:"project_id,omitempty"`
	// AffectAutoAssigned allows the change on an auto-assigned address.
	AffectAutoAssigned bool `json:"affect_auto_assigned,omitempty"`
}

// FloatingAddressRef names a floating address to look up.
type FloatingAddressRef struct {
	Address string `json:"address"`
}

// AssociateFloatingIPRequest associates a floating address with a fixed
// address of an instance of the same project.
type AssociateFloatingIPRequest struct {
	FloatingAddress string `json:"floating_address"`
	FixedAddress    string `json:"fixed_address"`
	// Reassociate moves an address already associated with another fixed
	// IP; without it that is a conflict.
	Reassociate        bool `json:"reassociate,omitempty"`
	AffectAutoAssigned bool `json:"affect_auto_assigned,omitempty"`
}

// ProjectRequest names a project.
type ProjectRequest struct {
	ProjectID string `json:"project_id"`
}

// FixedAddressRef names a fixed address.
type FixedAddressRef struct {
	FixedAddress string `json:"fixed_address"`
}

// QuotaSetRequest sets a project's limit on a resource.
type QuotaSetRequest struct {
	ProjectID string `json:"project_id"`
	Resource  string `json:"resource"`
	// Limit is required: -1 is unlimited; null or absent is refused.
	Limit *int `json:"limit"`
}

// Quota is a project's effective limit on one resource.
type Quota struct {
	Resource string `json:"resource"`
	Limit    int    `json:"limit"`   // -1: unlimited
	Default  bool   `json:"default"` // the service default applies: the project has no quota of its own
	InUse    int    `json:"in_use"`  // what counts against the limit
	// AutoAssigned: floating IPs auto-assigned to instances; they do not
	// count against the limit.
	AutoAssigned int `json:"auto_assigned"`
}

// QuotaReply is a project's quotas.
type QuotaReply struct {
	ProjectID string  `json:"project_id"`
	Quotas    []Quota `json:"quotas"`
}
