package manager_test

import (
	"fmt"
	"net/netip"
	"testing"

	"novanet/internal/testenv"
	"novanet/manager"
	"novanet/rpc"
)

// pages calls method from the first page to the last with limit, and
// returns the pages' sizes and the keys of their items in order.
func pages[R any](t *testing.T, env *testenv.Env, method string, req func(cursor string) any,
	items func(R) ([]string, string)) ([]int, []string) {
	t.Helper()
	var (
		sizes  []int
		keys   []string
		cursor string
	)
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatalf("%s: more than 100 pages", method)
		}
		var r R
		if err := call(env, method, req(cursor), &r); err != nil {
			t.Fatalf("%s page %d (cursor %q): %v", method, i, cursor, err)
		}
		k, next := items(r)
		sizes, keys = append(sizes, len(k)), append(keys, k...)
		if next == "" {
			return sizes, keys
		}
		if next != k[len(k)-1] {
			t.Errorf("%s page %d: next_cursor %q, want its last item %q", method, i, next, k[len(k)-1])
		}
		cursor = next
	}
}

// checkPages fails unless keys are want, each once, in order, in pages of
// sizes: full pages of limit, then the rest.
func checkPages(t *testing.T, what string, sizes []int, keys, want []string, limit int) {
	t.Helper()
	var wantSizes []int
	for n := len(want); n > 0; n -= limit {
		wantSizes = append(wantSizes, min(n, limit))
	}
	if len(wantSizes) == 0 {
		wantSizes = []int{0}
	}
	if fmt.Sprint(sizes) != fmt.Sprint(wantSizes) {
		t.Errorf("%s: pages of %v, want %v", what, sizes, wantSizes)
	}
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("%s: %d items, want %d in order (first %v)", what, len(keys), len(want), keys[:min(3, len(keys))])
	}
}

func TestPaging(t *testing.T) {
	env := testenv.Start(t, manager.ModeVLAN)

	// list_hosts: 2,500 hosts, in pages of 1,000 (the default) and 700.
	if _, err := env.Pool.Exec(ctx, `INSERT INTO hosts (name, driver)
		SELECT format('hv-%s', lpad(i::text, 4, '0')), 'vlan' FROM generate_series(1, 2500) i`); err != nil {
		t.Fatal(err)
	}
	var hostNames []string
	for i := 1; i <= 2500; i++ {
		hostNames = append(hostNames, fmt.Sprintf("hv-%04d", i))
	}
	for _, limit := range []int{0, 700} {
		sizes, keys := pages(t, env, rpc.MethodListHosts, func(c string) any { return rpc.ListHostsRequest{Limit: limit, Cursor: c} },
			func(r rpc.HostsReply) ([]string, string) {
				k := make([]string, len(r.Hosts))
				for i, h := range r.Hosts {
					k[i] = h.Name
				}
				return k, r.NextCursor
			})
		checkPages(t, fmt.Sprintf("list_hosts limit %d", limit), sizes, keys, hostNames, pageSize(limit))
	}
	if hs, err := env.Client.ListHosts(ctx); err != nil || len(hs) != 2500 || hs[2499].Name != "hv-2500" {
		t.Errorf("client ListHosts: %d hosts, %v; want 2500", len(hs), err)
	}

	// get_all_networks: 1,200 networks.
	nets := create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/17", NumNetworks: 1200, NetworkSize: 16, VLANStart: 1})
	var cidrs []string
	for _, n := range nets {
		cidrs = append(cidrs, n.CIDR)
	}
	for _, limit := range []int{0, 500} {
		sizes, keys := pages(t, env, rpc.MethodGetAllNetworks, func(c string) any { return rpc.GetAllNetworksRequest{Limit: limit, Cursor: c} },
			func(r rpc.NetworksReply) ([]string, string) {
				k := make([]string, len(r.Networks))
				for i, n := range r.Networks {
					k[i] = n.CIDR
				}
				return k, r.NextCursor
			})
		checkPages(t, fmt.Sprintf("get_all_networks limit %d", limit), sizes, keys, cidrs, pageSize(limit))
	}
	if all, err := env.Client.Networks(ctx, ""); err != nil || len(all) != 1200 {
		t.Errorf("client Networks: %d networks, %v; want 1200", len(all), err)
	}

	// list_fixed_ips: the 1,024 addresses of one network, in pages of 300.
	big := create(t, env, rpc.CreateNetworksRequest{CIDR: "10.8.0.0/22", NumNetworks: 1, NetworkSize: 1024, VLANStart: 2000})[0]
	var addrs []string
	for a, i := netip.MustParseAddr("10.8.0.0"), 0; i < 1024; a, i = a.Next(), i+1 {
		addrs = append(addrs, a.String())
	}
	sizes, keys := pages(t, env, rpc.MethodListFixedIPs,
		func(c string) any {
			return rpc.ListFixedIPsRequest{Network: big.CIDR, All: true, Limit: 300, Cursor: c}
		},
		func(r rpc.FixedIPsReply) ([]string, string) {
			k := make([]string, len(r.FixedIPs))
			for i, f := range r.FixedIPs {
				k[i] = f.Address
			}
			return k, r.NextCursor
		})
	checkPages(t, "list_fixed_ips limit 300", sizes, keys, addrs, 300)
	for _, tc := range []struct{ limit, want int }{{0, 1000}, {1024, 1024}, {2000, 1024}, {5, 5}} {
		ips, err := env.Client.ListFixedIPs(ctx, rpc.ListFixedIPsRequest{Network: big.CIDR, All: true, Limit: tc.limit})
		if err != nil || len(ips) != tc.want || ips[len(ips)-1].Address != addrs[tc.want-1] {
			t.Errorf("client ListFixedIPs limit %d: %d addresses, %v; want %d", tc.limit, len(ips), err, tc.want)
		}
	}

	// Bad limits and cursors name their field.
	for _, tc := range []struct {
		method string
		req    any
	}{
		{rpc.MethodListHosts, rpc.ListHostsRequest{Limit: rpc.MaxPage + 1}},
		{rpc.MethodListHosts, rpc.ListHostsRequest{Cursor: "a b"}},
		{rpc.MethodGetAllNetworks, rpc.GetAllNetworksRequest{Limit: -1}},
		{rpc.MethodGetAllNetworks, rpc.GetAllNetworksRequest{Cursor: "10.0.0.300/24"}},
		{rpc.MethodListFixedIPs, rpc.ListFixedIPsRequest{Limit: rpc.MaxPage + 1}},
		{rpc.MethodListFixedIPs, rpc.ListFixedIPsRequest{Cursor: "fe80::1"}},
	} {
		err := call(env, tc.method, tc.req, nil)
		wantCode(t, fmt.Sprintf("%s %+v", tc.method, tc.req), err, rpc.CodeInvalidArgument)
	}
}

// pageSize is the size of the pages a request with limit gets.
func pageSize(limit int) int {
	if limit == 0 {
		return rpc.MaxPage
	}
	return limit
}
