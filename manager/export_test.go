package manager

import "net/netip"

// PlanQuery is one statement of the allocation path with arguments to plan
// it with.
type PlanQuery struct {
	Name string
	SQL  string
	Args []any
}

// AllocationQueries returns every statement allocate_for_instance,
// deallocate_for_instance and get_instance_nw_info run in the common case,
// for instance inst on network net (first address number start, size
// addresses), taking address addr when one is requested.
func AllocationQueries(inst, project, host string, net, start, size int64, addr netip.Addr) []PlanQuery {
	m := &Manager{cfg: Config{Mode: ModeVLAN}}
	vlanNets, vlanArgs := m.defaultNetworks(project)
	m.cfg.Mode = ModeFlatDHCP
	flatNets, flatArgs := m.defaultNetworks(project)
	n := allocNet{id: net, label: "n", start: start, size: size}
	free := m.allocArgs(inst, host, project, n, "02:ff:00:00:00:01", true)
	free[5] = start + size/2 // a point in the middle, as a random one would be
	n.addr = addr
	byAddr := m.allocArgs(inst, host, project, n, "02:ff:00:00:00:02", false)
	return []PlanQuery{
		{"instance state", instanceStateSQL, []any{inst}},
		{"networks (vlan)", vlanNets, vlanArgs},
		{"networks (flat)", flatNets, flatArgs},
		{"allocate free address", allocFreeSQL, free},
		{"allocate requested address", allocAddrSQL, byAddr},
		{"assign hosts and targets", assignHostsSQL, []any{[]int64{net}, host, aliveWindow.Seconds(), inst}},
		{"nw info", nwInfoSQL, []any{inst}},
		{"deallocate fixed IPs", deallocFixedSQL, []any{inst}},
		{"deallocate interfaces", deallocVIFsSQL, []any{inst}},
	}
}

// ListNetworksSQL is get_all_networks' (and get_network's) query.
var ListNetworksSQL = listNetworksSQL

// HostStateSettings is what get_host_state sets in its transaction.
const HostStateSettings = hostStateSettings

// HostStateQueries returns get_host_state's statements for host, for all
// its networks and for network net alone.
func HostStateQueries(host string, net int64) []PlanQuery {
	return []PlanQuery{
		{"host networks", hostStateNetworksSQL, []any{host, int64(0)}},
		{"host network", hostStateNetworksSQL, []any{host, net}},
		{"host floating IPs", hostFloatingSQL, []any{host}},
	}
}

// Notify sends method's notice for network to host's agent, as a change
// would.
func (m *Manager) Notify(method, host string, network int64) {
	m.notify(method, []hostTarget{{host: host, network: network}})
}

// NoticesPending is how many (host, network) notices wait or are in flight.
func (m *Manager) NoticesPending() int { return m.notices.size() }
