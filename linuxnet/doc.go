// Package linuxnet is the host-side library the network drivers use.
//
// It is split into one concept per subpackage:
//
//   - link: bridges, VLAN and VXLAN links, enslaving a physical interface
//     (moving its addresses and routes onto the bridge) and interface name
//     validation, all through a caller-supplied *netlink.Handle.
//   - iptables: an iptables manager in the spirit of nova-network's
//     IptablesManager: owned chains in filter and nat for IPv4 and IPv6,
//     typed rules, one iptables-restore --noflush call per table family.
//   - dnsmasq: one dnsmasq per network: generated config, hosts and
//     options files, process management and the --dhcp-script event parser.
//   - nsrun: run a function or a command inside a network namespace.
//   - nstest: test helpers for throwaway network namespaces.
package linuxnet
