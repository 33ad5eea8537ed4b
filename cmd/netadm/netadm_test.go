package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"novanet/client"
	"novanet/internal/natsconn"
	"novanet/internal/pgtest"
	"novanet/internal/testenv"
	"novanet/manager"
	"novanet/natsauth"
	"novanet/natsembed"
	"novanet/rpc"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// netadm runs the CLI against env and returns exit code, stdout, stderr.
func netadm(t *testing.T, env *testenv.Env, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		if k == "NOVANET_NATS_URL" {
			return env.NATSURL
		}
		return ""
	}
	code := run(context.Background(), args, &out, &errb, getenv, dialNATS)
	return code, out.String(), errb.String()
}

func mustNetadm(t *testing.T, env *testenv.Env, args ...string) string {
	t.Helper()
	code, out, errs := netadm(t, env, args...)
	if code != 0 {
		t.Fatalf("netadm %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

func createJSON(t *testing.T, env *testenv.Env, args ...string) []rpc.Network {
	t.Helper()
	out := mustNetadm(t, env, append([]string{"network", "create", "-o", "json"}, args...)...)
	var r rpc.NetworksReply
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	return r.Networks
}

// reservedAddrs returns each network's reserved addresses, as "cidr: a b c".
func reservedAddrs(t *testing.T, env *testenv.Env) []string {
	t.Helper()
	rows, err := env.Pool.Query(context.Background(), `
		SELECT n.cidr::text || ':' || string_agg(' ' || host(f.address), '' ORDER BY f.address)
		FROM networks n JOIN fixed_ips f ON f.network_id = n.id AND f.reserved
		GROUP BY n.cidr ORDER BY n.cidr`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	return got
}

func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestCreateFlat(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	nets := createJSON(t, env, "10.0.0.0/8", "3", "16")
	var got []string
	for _, n := range nets {
		got = append(got, fmt.Sprintf("%s %s gw=%s bc=%s br=%s vlan=%d total=%d free=%d",
			n.Label, n.CIDR, n.Gateway, n.Broadcast, n.Bridge, n.VLAN, n.FixedIPs.Total, n.FixedIPs.Free))
	}
	equal(t, "networks", got, []string{
		"private_0 10.0.0.0/28 gw=10.0.0.1 bc=10.0.0.15 br=br100 vlan=0 total=16 free=13",
		"private_1 10.0.0.16/28 gw=10.0.0.17 bc=10.0.0.31 br=br100 vlan=0 total=16 free=13",
		"private_2 10.0.0.32/28 gw=10.0.0.33 bc=10.0.0.47 br=br100 vlan=0 total=16 free=13",
	})
	equal(t, "reserved", reservedAddrs(t, env), []string{
		"10.0.0.0/28: 10.0.0.0 10.0.0.1 10.0.0.15",
		"10.0.0.16/28: 10.0.0.16 10.0.0.17 10.0.0.31",
		"10.0.0.32/28: 10.0.0.32 10.0.0.33 10.0.0.47",
	})
	var n int
	if err := env.Pool.QueryRow(context.Background(), "SELECT count(*) FROM fixed_ips").Scan(&n); err != nil || n != 48 {
		t.Errorf("fixed_ips rows = %d (%v), want 48", n, err)
	}
	// Flat networks may share the flat bridge.
	createJSON(t, env, "10.0.1.0/24", "1", "256")
}

func TestCreateVLAN(t *testing.T) {
	env := testenv.Start(t, manager.ModeVLAN)
	nets := createJSON(t, env, "10.0.0.0/8", "3", "16")
	second := createJSON(t, env, "--vlan-start", "200", "--label", "proj", "--vpn-start", "5000", "172.16.0.0/16", "2", "256")
	var got []string
	for _, n := range append(nets, second...) {
		got = append(got, fmt.Sprintf("%s %s vlan=%d br=%s vpn=%s:%d dhcp_start=%s", n.Label, n.CIDR, n.VLAN,
			n.Bridge, n.VPNPrivateAddress, n.VPNPublicPort, n.DHCPStart))
	}
	equal(t, "networks", got, []string{
		"private_0 10.0.0.0/28 vlan=100 br=br100 vpn=10.0.0.2:1000 dhcp_start=10.0.0.3",
		"private_1 10.0.0.16/28 vlan=101 br=br101 vpn=10.0.0.18:1001 dhcp_start=10.0.0.19",
		"private_2 10.0.0.32/28 vlan=102 br=br102 vpn=10.0.0.34:1002 dhcp_start=10.0.0.35",
		"proj_0 172.16.0.0/24 vlan=200 br=br200 vpn=172.16.0.2:5000 dhcp_start=172.16.0.3",
		"proj_1 172.16.1.0/24 vlan=201 br=br201 vpn=172.16.1.2:5001 dhcp_start=172.16.1.3",
	})
	equal(t, "reserved", reservedAddrs(t, env), []string{
		"10.0.0.0/28: 10.0.0.0 10.0.0.1 10.0.0.2 10.0.0.15",
		"10.0.0.16/28: 10.0.0.16 10.0.0.17 10.0.0.18 10.0.0.31",
		"10.0.0.32/28: 10.0.0.32 10.0.0.33 10.0.0.34 10.0.0.47",
		"172.16.0.0/24: 172.16.0.0 172.16.0.1 172.16.0.2 172.16.0.255",
		"172.16.1.0/24: 172.16.1.0 172.16.1.1 172.16.1.2 172.16.1.255",
	})
}

// snapshot is everything a failed create must leave as it was.
func snapshot(t *testing.T, env *testenv.Env) string {
	t.Helper()
	var s string
	err := env.Pool.QueryRow(context.Background(), `
		SELECT (SELECT count(*) FROM networks) || ' networks, ' ||
		       (SELECT count(*) FROM fixed_ips) || ' fixed ips, ' ||
		       coalesce((SELECT string_agg(cidr::text || '/' || coalesce(vlan, 0) || '/' || bridge, ' ' ORDER BY cidr) FROM networks), '')`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBadInputChangesNothing(t *testing.T) {
	env := testenv.Start(t, manager.ModeVLAN)
	createJSON(t, env, "10.0.0.0/8", "3", "16")                                                  // VLANs 100-102
	mustNetadm(t, env, "network", "create", "192.168.0.0/24", "1", "256", "--vlan-start", "300") // VLAN 300
	before := snapshot(t, env)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"10.0.0.0/33", "1", "16"}, 1, `fixed range "10.0.0.0/33": not a CIDR`},
		{[]string{"10.1.2.3.4/8", "1", "16"}, 1, `not a CIDR`},
		{[]string{"10.1.0.1/16", "1", "16"}, 1, `host bits set (the network is 10.1.0.0/16)`},
		{[]string{"10.1.0.0/16", "1", "24"}, 1, `network size "24": not a power of two`},
		{[]string{"10.1.0.0/16", "1", "4"}, 1, `smaller than 8`},
		{[]string{"10.1.0.0/16", "1", "131072"}, 1, `largest accepted`},
		{[]string{"10.1.0.0/28", "2", "16"}, 1, `do not fit`},
		{[]string{"10.1.0.0/16", "abc", "16"}, 2, `NUM_NETWORKS "abc"`},
		{[]string{"10.1.0.0/16", "1", "0"}, 2, `NETWORK_SIZE "0"`},
		{[]string{"10.1.0.0/16", "1"}, 2, `takes FIXED_RANGE NUM_NETWORKS NETWORK_SIZE`},
		{[]string{"10.0.0.0/24", "1", "16"}, 1, `10.0.0.0/28 overlaps existing network private_0`},
		{[]string{"10.0.0.0/8", "1", "256", "--vlan-start", "110"}, 1, `overlaps existing network`},
		{[]string{"10.1.0.0/16", "1", "16", "--vlan-start", "0"}, 1, ``}, // 0 means default 100: used
		{[]string{"10.1.0.0/16", "1", "16", "--vlan-start", "4095"}, 1, `vlan start "4095": outside 1-4094`},
		{[]string{"10.1.0.0/16", "3", "16", "--vlan-start", "4093"}, 1, `past 4094`},
		{[]string{"10.1.0.0/16", "3", "16", "--vlan-start", "299"}, 1, `VLAN 300 is already used by network private (192.168.0.0/24)`},
		{[]string{"10.1.0.0/16", "1", "16", "--vlan-start", "101"}, 1, `VLAN 101 is already used by network private_1`},
		{[]string{"10.1.0.0/16", "1", "16", "--vlan-start", "500", "--bridge", "br100"}, 1, `bridge br100 is already used by network private_0`},
		{[]string{"10.1.0.0/16", "1", "16", "--vlan-start", "500", "--vpn-start", "1000"}, 1, `VPN port 1000 is already used`},
		{[]string{"10.1.0.0/16", "1", "16", "--vlan-start", "500", "--bridge", "br/500"}, 1, `bridge "br/500"`},
		{[]string{"10.1.0.0/16", "1", "16", "--vlan-start", "500", "--gateway", "10.2.0.1"}, 1, `gateway "10.2.0.1": not a host address of 10.1.0.0/28`},
		{[]string{"10.1.0.0/16", "1", "16", "--vlan-start", "500", "--dns1", "nope"}, 1, `dns1 "nope": not an IP address`},
		{[]string{"10.1.0.0/16", "1", "16", "--vlan-start", "500", "--mtu", "20"}, 1, `mtu "20"`},
		{[]string{"10.1.0.0/16", "1", "16", "--vlan-start", "500", "--ipv6-range", "fd00::/96"}, 1, `longer than /64`},
		{[]string{"10.1.0.0/16", "1", "16", "--bogus"}, 2, `unknown flag: --bogus`},
	} {
		args := append([]string{"network", "create"}, tc.args...)
		code, out, errs := netadm(t, env, args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("netadm %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tc.args, " "), code, errs, tc.code, tc.want)
		}
		if out != "" {
			t.Errorf("netadm %s: printed %q on failure", strings.Join(tc.args, " "), out)
		}
		if after := snapshot(t, env); after != before {
			t.Fatalf("netadm %s changed the database:\nbefore %s\nafter  %s", strings.Join(tc.args, " "), before, after)
		}
	}
}

func TestBadInputFlatMode(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	before := snapshot(t, env)
	code, _, errs := netadm(t, env, "network", "create", "10.0.0.0/24", "1", "16", "--vlan-start", "100")
	if code != 1 || !strings.Contains(errs, "not vlan") {
		t.Errorf("vlan start in flat mode: exit %d %q", code, errs)
	}
	if after := snapshot(t, env); after != before {
		t.Errorf("database changed: %s -> %s", before, after)
	}
}

func TestListShowDelete(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	nets := createJSON(t, env, "10.0.0.0/8", "3", "16", "--label", "web", "--project", "p1", "--dns1", "10.9.0.1")
	createJSON(t, env, "10.0.1.0/24", "1", "256", "--label", "other")

	out := mustNetadm(t, env, "network", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "web_0") ||
		!strings.Contains(lines[1], "10.0.0.0/28") || !strings.Contains(lines[1], "13/16") {
		t.Errorf("list table:\n%s", out)
	}
	var r rpc.NetworksReply
	if err := json.Unmarshal([]byte(mustNetadm(t, env, "network", "list", "-o", "json", "--project", "p1")), &r); err != nil || len(r.Networks) != 3 {
		t.Errorf("list --project p1: %d networks (%v)", len(r.Networks), err)
	}

	for _, ref := range []string{nets[1].UUID, "10.0.0.16/28", fmt.Sprint(nets[1].ID), "web_1"} {
		out := mustNetadm(t, env, "network", "show", ref)
		if !strings.Contains(out, "10.0.0.16/28") || !regexp.MustCompile(`(?m)^dns1 +10\.9\.0\.1$`).MatchString(out) {
			t.Errorf("show %s:\n%s", ref, out)
		}
	}
	if code, _, errs := netadm(t, env, "network", "show", "10.7.0.0/24"); code != 1 || !strings.Contains(errs, `not_found: network "10.7.0.0/24" not found`) {
		t.Errorf("show missing: %d %q", code, errs)
	}

	// An address in use blocks delete, and the refusal names it.
	ctx := context.Background()
	if _, err := env.Pool.Exec(ctx, `UPDATE fixed_ips SET instance_uuid = '11111111-2222-3333-4444-555555555555', allocated = true
		WHERE address = '10.0.0.5'`); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, env)
	code, _, errs := netadm(t, env, "network", "delete", "web_0")
	if code != 1 || !strings.Contains(errs, "in_use: network web_0 (10.0.0.0/28) has 1 addresses in use: 10.0.0.5 (instance 11111111-2222-3333-4444-555555555555)") {
		t.Errorf("delete in use: %d %q", code, errs)
	}
	if after := snapshot(t, env); after != before {
		t.Errorf("refused delete changed the database: %s -> %s", before, after)
	}
	out = mustNetadm(t, env, "network", "delete", nets[1].UUID)
	if !strings.Contains(out, "deleted network web_1 10.0.0.16/28") {
		t.Errorf("delete: %q", out)
	}
	var n int
	if err := env.Pool.QueryRow(ctx, "SELECT count(*) FROM fixed_ips f JOIN networks n ON n.id = f.network_id WHERE n.cidr = '10.0.0.16/28'").Scan(&n); err != nil || n != 0 {
		t.Errorf("fixed ips of deleted network: %d (%v)", n, err)
	}
	if code, _, errs := netadm(t, env, "network", "delete", nets[1].UUID); code != 1 || !strings.Contains(errs, "not_found") {
		t.Errorf("second delete: %d %q", code, errs)
	}
}

func TestLargestNetwork(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	nets := createJSON(t, env, "10.0.0.0/8", "1", "65536")
	if len(nets) != 1 || nets[0].CIDR != "10.0.0.0/16" || nets[0].FixedIPs.Total != 65536 || nets[0].FixedIPs.Free != 65533 {
		t.Fatalf("created %+v", nets)
	}
}

func TestNoManager(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	// A NATS URL with nothing listening.
	code, _, errs := netadm(t, env, "network", "list", "--nats-url", "nats://127.0.0.1:1", "--timeout", "2s")
	if code != 1 || !strings.Contains(errs, "connect to NATS at nats://127.0.0.1:1") {
		t.Errorf("no NATS: %d %q", code, errs)
	}
	// A password in the URL is not printed.
	code, _, errs = netadm(t, env, "network", "list", "--nats-url", "nats://alice:s3cret@127.0.0.1:1", "--timeout", "2s")
	if code != 1 || !strings.Contains(errs, "connect to NATS at nats://alice:xxxxx@127.0.0.1:1") || strings.Contains(errs, "s3cret") {
		t.Errorf("no NATS, with a password: %d %q", code, errs)
	}
	if code, _, errs := netadm(t, env, "network", "list", "-o", "yaml"); code != 2 || !strings.Contains(errs, `output "yaml"`) {
		t.Errorf("bad output: %d %q", code, errs)
	}
}

// stats asks every replica of the manager service for its statistics.
func stats(t *testing.T, nc *nats.Conn, want int) []micro.Stats {
	t.Helper()
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe() //nolint:errcheck
	if err := nc.PublishRequest("$SRV.STATS."+rpc.ServiceName, inbox, nil); err != nil {
		t.Fatal(err)
	}
	var all []micro.Stats
	for len(all) < want {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("stats: %d replies of %d: %v", len(all), want, err)
		}
		var s micro.Stats
		if err := json.Unmarshal(msg.Data, &s); err != nil {
			t.Fatal(err)
		}
		all = append(all, s)
	}
	return all
}

func TestTwoReplicas(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	env.AddManager(t, "0.1.1")
	createJSON(t, env, "10.0.0.0/8", "3", "16")
	for i := 0; i < 60; i++ {
		mustNetadm(t, env, "network", "show", "private_1")
	}
	nc := env.Connect(t)
	all := stats(t, nc, 2)
	if all[0].ID == all[1].ID {
		t.Fatalf("two stats replies from one instance %s", all[0].ID)
	}
	for _, s := range all {
		var n int
		for _, e := range s.Endpoints {
			if e.QueueGroup != rpc.QueueGroup {
				t.Errorf("endpoint %s in queue group %q", e.Name, e.QueueGroup)
			}
			n += e.NumRequests
		}
		// Each of 61 requests goes to one replica picked at random: the
		// chance that one replica gets none is 2^-60.
		if n == 0 {
			t.Errorf("replica %s %s answered no request", s.ID, s.Version)
		}
	}
}

func TestFixedReserveList(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	createJSON(t, env, "10.0.0.0/28", "1", "16")
	out := mustNetadm(t, env, "fixed", "reserve", "10.0.0.5")
	if !regexp.MustCompile(`(?m)^10\.0\.0\.5 +private +- +- +- +- +- +yes$`).MatchString(out) {
		t.Errorf("reserve printed:\n%s", out)
	}
	mustNetadm(t, env, "fixed", "reserve", "10.0.0.5") // idempotent
	out = mustNetadm(t, env, "fixed", "list")
	var addrs []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		addrs = append(addrs, strings.Fields(l)[0])
	}
	if fmt.Sprint(addrs) != "[10.0.0.0 10.0.0.1 10.0.0.5 10.0.0.15]" {
		t.Errorf("fixed list: %v\n%s", addrs, out)
	}
	if code, _, errs := netadm(t, env, "fixed", "unreserve", "10.0.0.1"); code != 1 || !strings.Contains(errs, "stays reserved") {
		t.Errorf("unreserve gateway: %d %q", code, errs)
	}
	if code, _, errs := netadm(t, env, "fixed", "reserve", "10.0.0.99"); code != 1 || !strings.Contains(errs, "not_found: fixed address 10.0.0.99 not found") {
		t.Errorf("reserve unknown: %d %q", code, errs)
	}
	mustNetadm(t, env, "fixed", "unreserve", "10.0.0.5")
	var r rpc.FixedIPsReply
	if err := json.Unmarshal([]byte(mustNetadm(t, env, "fixed", "list", "--all", "-o", "json")), &r); err != nil || len(r.FixedIPs) != 16 || r.FixedIPs[5].Reserved {
		t.Errorf("fixed list --all: %d (%v)", len(r.FixedIPs), err)
	}
}

func TestHostList(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	if out := mustNetadm(t, env, "host", "list"); strings.TrimSpace(out) != "HOST  DRIVER  VERSION  LAST SEEN  ALIVE  NETWORKS  CONVERGED  LAST CONVERGENCE" {
		t.Errorf("empty host list:\n%s", out)
	}
	if _, err := env.Client.RegisterHost(context.Background(), rpc.RegisterHostRequest{Host: "hv1", Driver: "vlan", Version: "0.2.0"}); err != nil {
		t.Fatal(err)
	}
	out := mustNetadm(t, env, "host", "list")
	if !regexp.MustCompile(`(?m)^hv1 +vlan +0\.2\.0 +\d{4}-\d\d-\d\dT\S+Z +yes +0 +- +-$`).MatchString(out) {
		t.Errorf("host list:\n%s", out)
	}
	// The agent's convergence report.
	if err := env.Client.CallForHost(context.Background(), "hv1", rpc.MethodReportConvergence, rpc.ConvergenceReport{
		Trigger: "periodic", Changes: []string{"created bridge br100", "dnsmasq br100 started"}}, nil); err != nil {
		t.Fatal(err)
	}
	out = mustNetadm(t, env, "host", "list")
	if !regexp.MustCompile(`(?m)^hv1 .* yes +0 +\d{4}-\d\d-\d\dT\S+Z +repaired: created bridge br100; dnsmasq br100 started$`).MatchString(out) {
		t.Errorf("host list after a report:\n%s", out)
	}
	if err := env.Client.CallForHost(context.Background(), "hv1", rpc.MethodReportConvergence, rpc.ConvergenceReport{
		Trigger: "periodic", InSync: true}, nil); err != nil {
		t.Fatal(err)
	}
	if out = mustNetadm(t, env, "host", "list"); !regexp.MustCompile(`(?m)^hv1 .*Z +in sync$`).MatchString(out) {
		t.Errorf("host list after an in-sync report:\n%s", out)
	}
	err := env.Client.CallForHost(context.Background(), "hv2", rpc.MethodReportConvergence, rpc.ConvergenceReport{InSync: true}, nil)
	if e := rpc.AsError(err); e == nil || e.Code != rpc.CodeNotFound {
		t.Errorf("a report from an unregistered host: %v, want not_found", err)
	}
	err = env.Client.CallForHost(context.Background(), "hv1", rpc.MethodReportConvergence, rpc.ConvergenceReport{InSync: true, Errors: []string{"x"}}, nil)
	if e := rpc.AsError(err); e == nil || e.Code != rpc.CodeInvalidArgument {
		t.Errorf("in_sync with errors: %v, want invalid_argument", err)
	}
	var r rpc.HostsReply
	if err := json.Unmarshal([]byte(mustNetadm(t, env, "host", "list", "-o", "json")), &r); err != nil || len(r.Hosts) != 1 || r.Hosts[0].Name != "hv1" {
		t.Errorf("host list -o json: %+v (%v)", r, err)
	}
}

// FuzzArgs runs netadm's command line parsing on arbitrary arguments with
// a dialer that never connects: it must not panic, and must exit 0 (help),
// 1 (the refused dial) or 2 (usage).
func FuzzArgs(f *testing.F) {
	f.Add("network\x00create\x0010.0.0.0/8\x003\x0016")
	f.Add("network\x00create\x0010.0.0.0/8\x00x\x0016\x00--vlan-start\x00-1")
	f.Add("fixed\x00reserve\x0010.0.0.1\x00-o\x00json")
	f.Add("network\x00list\x00--help")
	f.Add("floating\x00create\x00--pool\x00public\x00--interface\x00eth2\x00203.0.113.0/24")
	f.Add("floating\x00list\x00--pool\x00p\x00--project\x00x\x00-o\x00json")
	f.Add("floating\x00delete\x00203.0.113.0/24")
	f.Add("floating\x00pools")
	f.Add("floating\x00associate\x00203.0.113.1\x0010.0.0.2\x00--reassociate")
	f.Add("quota\x00set\x00p1\x00--floating-ips\x00-1")
	f.Add("quota\x00set\x00p1\x00--floating-ips\x00unlimited")
	f.Add("quota\x00show\x00p1")
	f.Add("network\x00stop\x00web\x00-o\x00json")
	f.Add("network\x00start\x00web")
	f.Add("instance\x00allocate\x0011111111-2222-3333-4444-555555555555\x00--project\x00p\x00--network\x00n=10.0.0.2\x00--mac\x0002:00:00:00:00:01")
	f.Add("instance\x00add-fixed\x0011111111-2222-3333-4444-555555555555\x00n\x00--address\x0010.0.0.3")
	f.Add("instance\x00remove-fixed\x0011111111-2222-3333-4444-555555555555\x0010.0.0.3\x00-o\x00json")
	f.Add("instance\x00deallocate\x0011111111-2222-3333-4444-555555555555")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		noDial := func(string, natsconn.Options, time.Duration) (*client.Client, func(), error) {
			return nil, nil, errors.New("no NATS while fuzzing")
		}
		var out, errb bytes.Buffer
		code := run(context.Background(), args, &out, &errb, func(string) string { return "" }, noDial)
		if code != 0 && code != 1 && code != 2 {
			t.Fatalf("exit %d for %q", code, args)
		}
		if code != 0 && errb.Len() == 0 {
			t.Fatalf("exit %d without a message for %q", code, args)
		}
	})
}

func TestFloatingCommands(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	createJSON(t, env, "10.0.0.0/28", "1", "16", "--label", "web")
	ctx := context.Background()

	out := mustNetadm(t, env, "floating", "create", "--pool", "public", "--interface", "eth2", "203.0.113.0/28")
	if !regexp.MustCompile(`(?m)^203\.0\.113\.0/28 +public +eth2 +14 +\d{4}-`).MatchString(out) {
		t.Errorf("floating create printed:\n%s", out)
	}
	var r rpc.FloatingRange
	if err := json.Unmarshal([]byte(mustNetadm(t, env, "floating", "create", "-o", "json", "198.51.100.0/30")), &r); err != nil ||
		r.Pool != "nova" || r.Total != 2 {
		t.Errorf("floating create -o json: %+v %v", r, err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"floating", "create", "10.0.0.0/24"}, 1, "conflict: 10.0.0.0/24 overlaps fixed network web (10.0.0.0/28"},
		{[]string{"floating", "create", "--pool", "x", "203.0.113.8/29"}, 1, "conflict: 203.0.113.8/29 overlaps floating range 203.0.113.0/28 of pool public"},
		{[]string{"floating", "create", "203.0.114.1/24"}, 1, `cidr "203.0.114.1/24": host bits set`},
		{[]string{"floating", "create", "--interface", "eth 0", "203.0.114.0/24"}, 1, `interface: invalid interface name "eth 0"`},
		{[]string{"floating", "create"}, 2, "accepts 1 arg(s)"},
		{[]string{"quota", "set", "p1"}, 2, `required flag(s) "floating-ips" not set`},
		{[]string{"quota", "set", "p1", "--floating-ips", "-2"}, 2, `--floating-ips "-2"`},
		{[]string{"floating", "allocate"}, 2, `required flag(s) "project" not set`},
	} {
		code, out, errs := netadm(t, env, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) || out != "" {
			t.Errorf("netadm %s: exit %d, stdout %q, stderr %q; want exit %d and %q", strings.Join(tc.args, " "), code, out, errs, tc.code, tc.want)
		}
	}

	out = mustNetadm(t, env, "quota", "show", "p1")
	if !regexp.MustCompile(`(?m)^p1 +floating_ips +10 +0 +0 +yes$`).MatchString(out) {
		t.Errorf("quota show:\n%s", out)
	}
	out = mustNetadm(t, env, "quota", "set", "p1", "--floating-ips", "2")
	if !regexp.MustCompile(`(?m)^p1 +floating_ips +2 +0 +0 +-$`).MatchString(out) {
		t.Errorf("quota set:\n%s", out)
	}

	// Operators can act for a project: allocate, associate, and so on.
	inst := "11111111-2222-3333-4444-555555555555"
	info, err := env.Client.AllocateForInstance(ctx, rpc.AllocateForInstanceRequest{InstanceUUID: inst, ProjectID: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	fixed := info.VIFs[0].FixedIPs[0].Address
	out = mustNetadm(t, env, "floating", "allocate", "--project", "p1", "--pool", "public")
	if !regexp.MustCompile(`(?m)^203\.0\.113\.1 +public +p1 +- +- +- +eth2 +-$`).MatchString(out) {
		t.Errorf("floating allocate:\n%s", out)
	}
	mustNetadm(t, env, "floating", "allocate", "--project", "p1", "--pool", "public")
	if code, _, errs := netadm(t, env, "floating", "allocate", "--project", "p1", "--pool", "public"); code != 1 ||
		!strings.Contains(errs, "quota_exceeded: project p1 has 2 floating IPs and its quota is 2") {
		t.Errorf("allocate over quota: %d %q", code, errs)
	}
	out = mustNetadm(t, env, "floating", "associate", "203.0.113.1", fixed)
	if !strings.Contains(out, "203.0.113.1") || !strings.Contains(out, fixed) || !strings.Contains(out, inst) {
		t.Errorf("floating associate:\n%s", out)
	}
	if code, _, errs := netadm(t, env, "floating", "deallocate", "203.0.113.1"); code != 1 || !strings.Contains(errs, "disassociate it first") {
		t.Errorf("deallocate associated: %d %q", code, errs)
	}

	out = mustNetadm(t, env, "floating", "list", "--project", "p1")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ADDRESS") || !strings.Contains(lines[1], fixed) {
		t.Errorf("floating list --project p1:\n%s", out)
	}
	var l rpc.FloatingIPsReply
	if err := json.Unmarshal([]byte(mustNetadm(t, env, "floating", "list", "-o", "json", "--pool", "public")), &l); err != nil ||
		len(l.FloatingIPs) != 14 || l.FloatingIPs[0].FixedAddress != fixed {
		t.Errorf("floating list -o json --pool public: %d (%v)", len(l.FloatingIPs), err)
	}
	out = mustNetadm(t, env, "floating", "pools")
	if !regexp.MustCompile(`(?m)^nova +2/2 +0 +1$`).MatchString(out) || !regexp.MustCompile(`(?m)^public +12/14 +1 +1$`).MatchString(out) {
		t.Errorf("floating pools:\n%s", out)
	}

	// Delete is refused while addresses are allocated, and names them.
	if code, _, errs := netadm(t, env, "floating", "delete", "203.0.113.0/28"); code != 1 ||
		!strings.Contains(errs, "in_use: floating range 203.0.113.0/28 of pool public has 2 addresses allocated: 203.0.113.1 (project p1), 203.0.113.2 (project p1)") {
		t.Errorf("delete in use: %d %q", code, errs)
	}
	mustNetadm(t, env, "floating", "disassociate", "203.0.113.1")
	for _, a := range []string{"203.0.113.1", "203.0.113.2"} {
		mustNetadm(t, env, "floating", "deallocate", "--project", "p1", a)
	}
	out = mustNetadm(t, env, "quota", "set", "p1", "--floating-ips", "unlimited", "-o", "json")
	var q rpc.QuotaReply
	if err := json.Unmarshal([]byte(out), &q); err != nil || len(q.Quotas) != 1 || q.Quotas[0].Limit != -1 {
		t.Errorf("quota set unlimited -o json: %s (%v)", out, err)
	}
	out = mustNetadm(t, env, "floating", "delete", "203.0.113.0/28")
	if strings.TrimSpace(out) != "deleted floating range 203.0.113.0/28 of pool public (14 addresses)" {
		t.Errorf("floating delete: %q", out)
	}
	if code, _, errs := netadm(t, env, "floating", "delete", "203.0.113.0/28"); code != 1 || !strings.Contains(errs, "not_found: floating range 203.0.113.0/28 not found") {
		t.Errorf("delete twice: %d %q", code, errs)
	}
}

// Without credentials, netadm uses the operator seed that the embedded
// server of the same user wrote (~/.config/novanet/nats/operator.admin.nk);
// given credentials, its own.
func TestDefaultOperatorCredentials(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, ".config", "novanet", "nats")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(dir, "operator.admin.nk")
	if err := os.WriteFile(seed, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var got natsconn.Options
	dial := func(_ string, o natsconn.Options, _ time.Duration) (*client.Client, func(), error) {
		got = o
		return nil, nil, errors.New("not dialing")
	}
	for _, c := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"HOME": home}, nil, seed},
		{map[string]string{"HOME": "/nonexistent", "XDG_CONFIG_HOME": filepath.Join(home, ".config")}, nil, seed},
		{map[string]string{"HOME": home, "NOVANET_NATS_NKEY": "/etc/novanet/op.nk"}, nil, "/etc/novanet/op.nk"},
		{map[string]string{"HOME": home}, []string{"--nats-nkey", "/mine.nk"}, "/mine.nk"},
		{map[string]string{"HOME": home}, []string{"--nats-creds", "/mine.creds"}, ""},
		{map[string]string{"HOME": "/nonexistent"}, nil, ""},
	} {
		got = natsconn.Options{}
		var out, errb bytes.Buffer
		run(context.Background(), append([]string{"network", "list"}, c.args...), &out, &errb,
			func(k string) string { return c.env[k] }, dial)
		if got.NKey != c.want {
			t.Errorf("env %v args %v: nkey %q, want %q (%s)", c.env, c.args, got.NKey, c.want, errb.String())
		}
	}
}

// Refused for want of credentials, netadm says how to give them.
func TestNoCredentials(t *testing.T) {
	store := natsauth.Store{Dir: t.TempDir()}
	if _, err := store.Add(natsauth.KindOperator, "ops"); err != nil {
		t.Fatal(err)
	}
	ns, err := natsembed.Start("127.0.0.1:0", natsembed.WithAuthFile(store.ConfigPath()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"network", "list", "--nats-url", ns.ClientURL()}, &out, &errb,
		func(string) string { return "" }, dialNATS)
	if code != 1 || !strings.Contains(strings.ToLower(errb.String()), "authorization violation (no credentials: give --nats-nkey") {
		t.Errorf("anonymous: %d %q", code, errb.String())
	}
	errb.Reset()
	code = run(context.Background(), []string{"host", "list", "--timeout", "1s", "--nats-url", ns.ClientURL(), "--nats-nkey", store.SeedPath(natsauth.KindOperator, "ops")},
		&out, &errb, func(string) string { return "" }, dialNATS)
	// The operator gets in; no manager answers on this bus.
	if code != 1 || !strings.Contains(errb.String(), "unavailable: ") || strings.Contains(errb.String(), "connect to NATS") {
		t.Errorf("operator: %d %q", code, errb.String())
	}
}

func TestInstanceCommands(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	createJSON(t, env, "10.0.0.0/27", "2", "16", "--label", "n")
	const inst = "AAAAAAAA-2222-3333-4444-555555555555"
	decode := func(out string) rpc.NetworkInfo {
		t.Helper()
		var info rpc.NetworkInfo
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		return info
	}
	addrs := func(info rpc.NetworkInfo) string {
		var s []string
		for _, v := range info.VIFs {
			for _, ip := range v.FixedIPs {
				s = append(s, v.Network.Label+"="+ip.Address)
			}
		}
		return strings.Join(s, " ")
	}
	// Without --network: every network without a project, in order.
	info := decode(mustNetadm(t, env, "-o", "json", "instance", "allocate", inst, "--project", "p", "--mac", "02:00:00:00:00:01", "--mac", "02:00:00:00:00:02"))
	equal(t, "allocate", addrs(info), "n_0=10.0.0.2 n_1=10.0.0.18")
	equal(t, "instance", info.InstanceUUID, strings.ToLower(inst))
	equal(t, "macs", info.VIFs[0].MAC+" "+info.VIFs[1].MAC, "02:00:00:00:00:01 02:00:00:00:00:02")
	// Again: the same interfaces.
	equal(t, "allocate again", addrs(decode(mustNetadm(t, env, "-o", "json", "instance", "allocate", inst, "--project", "p"))), "n_0=10.0.0.2 n_1=10.0.0.18")
	info = decode(mustNetadm(t, env, "-o", "json", "instance", "remove-fixed", inst, "10.0.0.2"))
	equal(t, "remove-fixed", addrs(info), "n_1=10.0.0.18")
	info = decode(mustNetadm(t, env, "-o", "json", "instance", "add-fixed", inst, "n_0", "--address", "10.0.0.9", "--host", "hv1"))
	equal(t, "add-fixed", addrs(info), "n_1=10.0.0.18 n_0=10.0.0.9")
	equal(t, "show", addrs(decode(mustNetadm(t, env, "-o", "json", "instance", "show", inst))), "n_1=10.0.0.18 n_0=10.0.0.9")
	if code, _, errs := netadm(t, env, "instance", "add-fixed", inst, "n_0"); code != 1 || !strings.Contains(errs, "conflict:") {
		t.Errorf("add-fixed twice: %d %q", code, errs)
	}
	var r rpc.InstanceRequest
	if err := json.Unmarshal([]byte(mustNetadm(t, env, "-o", "json", "instance", "deallocate", inst)), &r); err != nil || r.InstanceUUID != strings.ToLower(inst) {
		t.Errorf("deallocate -o json: %+v (%v)", r, err)
	}
	mustNetadm(t, env, "instance", "deallocate", inst) // idempotent
	if code, _, errs := netadm(t, env, "instance", "show", inst); code != 1 || !strings.Contains(errs, "not_found:") {
		t.Errorf("show after deallocate: %d %q", code, errs)
	}
	// Requested networks and addresses; a held address is refused.
	const inst2 = "bbbbbbbb-2222-3333-4444-555555555555"
	out := mustNetadm(t, env, "instance", "allocate", inst2, "--project", "p", "--network", "n_1=10.0.0.20", "--network", "n_0")
	if !regexp.MustCompile(`(?m)^`+inst2+` +\S+ +n_1 +br100 +10\.0\.0\.20 +10\.0\.0\.17 +- +-$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^`+inst2+` +\S+ +n_0 +br100 +10\.0\.0\.3 +10\.0\.0\.1 +- +-$`).MatchString(out) {
		t.Errorf("allocate --network printed:\n%s", out)
	}
	if code, _, errs := netadm(t, env, "instance", "allocate", "cccccccc-2222-3333-4444-555555555555", "--project", "p", "--network", "n_0=10.0.0.9"); code != 1 || !strings.Contains(errs, "in_use:") {
		t.Errorf("allocate a held address: %d %q", code, errs)
	}
	// Bad command lines are refused before connecting (exit 2).
	for _, args := range [][]string{
		{"instance", "allocate", inst2},
		{"instance", "allocate", inst2, "--project", "p", "--network", "n_0=10.0.0"},
		{"instance", "allocate", inst2, "--project", "p", "--network", "=10.0.0.2"},
		{"instance", "allocate", inst2, "--project", "p", "--network", "n_0=::1"},
		{"instance", "show"},
		{"instance", "add-fixed", inst2},
		{"instance", "remove-fixed", inst2},
	} {
		if code, _, errs := netadm(t, env, args...); code != 2 || errs == "" {
			t.Errorf("netadm %q: exit %d %q, want 2", args, code, errs)
		}
	}
	if code, _, errs := netadm(t, env, "instance", "show", "not-a-uuid"); code != 1 || !strings.Contains(errs, "invalid_argument:") {
		t.Errorf("show bad uuid: %d %q", code, errs)
	}
}

func TestNetworkStopStartCommands(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	createJSON(t, env, "10.0.0.0/28", "1", "16", "--label", "web")
	if out := mustNetadm(t, env, "network", "stop", "web"); !regexp.MustCompile(`^stopped network web 10\.0\.0\.0/28 \(\S{36}\)\n$`).MatchString(out) {
		t.Errorf("stop printed %q", out)
	}
	if out := mustNetadm(t, env, "network", "show", "web"); !regexp.MustCompile(`(?m)^stopped +true$`).MatchString(out) {
		t.Errorf("show after stop:\n%s", out)
	}
	var n rpc.Network
	if err := json.Unmarshal([]byte(mustNetadm(t, env, "-o", "json", "network", "start", "web")), &n); err != nil || n.Stopped || n.Label != "web" {
		t.Errorf("start -o json: %+v (%v)", n, err)
	}
	if err := json.Unmarshal([]byte(mustNetadm(t, env, "-o", "json", "network", "stop", "web")), &n); err != nil || !n.Stopped {
		t.Errorf("stop -o json: %+v (%v)", n, err)
	}
	if out := mustNetadm(t, env, "network", "start", "web"); !strings.HasPrefix(out, "started network web 10.0.0.0/28 (") {
		t.Errorf("start printed %q", out)
	}
	if code, _, errs := netadm(t, env, "network", "stop", "nope"); code != 1 || !strings.Contains(errs, "not_found:") {
		t.Errorf("stop unknown: %d %q", code, errs)
	}
	if code, _, _ := netadm(t, env, "network", "start"); code != 2 {
		t.Errorf("start without a network: exit %d, want 2", code)
	}
}
