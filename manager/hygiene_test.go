package manager_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"novanet/internal/testenv"
	"novanet/manager"
	"novanet/rpc"
)

// rawCall sends body as is, as a client in another language could.
func rawCall(t *testing.T, env *testenv.Env, method string, body []byte) *rpc.Error {
	t.Helper()
	msg, err := env.Connect(t).Request(rpc.Subject(method), body, 20*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	if msg.Header.Get(rpc.HeaderErrorCode) == "" {
		return nil
	}
	var e rpc.Error
	if err := json.Unmarshal(msg.Data, &e); err != nil {
		t.Fatalf("%s: error body %q: %v", method, msg.Data, err)
	}
	return &e
}

// TestInputHygiene: bodies and values that used to be accepted, replaced
// or answered with internal are invalid_argument naming what is wrong.
func TestInputHygiene(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	for _, tc := range []struct {
		method, body, field, msg string
	}{
		{rpc.MethodAllocateFloatingIP, `{"project_id":"p\u0000"}`, "project_id", `field "project_id" has a NUL byte`},
		{rpc.MethodAllocateFloatingIP, "{\"project_id\":\"caf\xe9\"}", "", "not valid UTF-8"},
		{rpc.MethodAllocateFloatingIP, `{"project_id":"\udc00"}`, "project_id", "U+FFFD"},
		{rpc.MethodAllocateFloatingIP, `{"project_id":"p1","project_id":"p2"}`, "", `"project_id" given twice`},
		{rpc.MethodAllocateFloatingIP, `{"Project_ID":"p1"}`, "", `did you mean "project_id"`},
		{rpc.MethodAllocateFloatingIP, `{"project_id":"p1","auto_assigned":true}`, "auto_assigned", "only by the manager"},
		{rpc.MethodCreateNetworks, `{"cidr":"0.0.0.0/0","num_networks":1,"network_size":16}`, "cidr", "overlaps 0.0.0.0/8"},
		{rpc.MethodCreateNetworks, `{"cidr":"0.0.0.0/28","num_networks":1,"network_size":16}`, "cidr", "overlaps 0.0.0.0/8"},
		{rpc.MethodCreateNetworks, `{"cidr":"127.0.0.0/24","num_networks":1,"network_size":16}`, "cidr", "loopback"},
		{rpc.MethodCreateNetworks, `{"cidr":"224.0.0.0/24","num_networks":1,"network_size":16}`, "cidr", "multicast"},
		{rpc.MethodCreateNetworks, `{"cidr":"10.0.0.0/24","num_networks":1,"network_size":16,"cidr_v6":"fe80::/64"}`, "cidr_v6", "link-local"},
		{rpc.MethodCreateFloatingIPs, `{"cidr":"169.254.0.0/24"}`, "cidr", "link-local"},
		{rpc.MethodCreateFloatingIPs, `{"cidr":"240.0.0.0/24"}`, "cidr", "240.0.0.0/4"},
		{rpc.MethodCreateFloatingIPs, `{"cidr":"255.255.255.255/32"}`, "cidr", "broadcast"},
		{rpc.MethodCreateNetworks, `{"cidr":"10.0.0.0/24","num_networks":1,"network_size":16,"label":"a\u0000"}`, "label", "NUL"},
		{rpc.MethodAllocateForInstance, `{"instance_uuid":"6f1c3c1e-3f7a-4c2b-9d61-1f0e5c6b7a80","project_id":"p","requested_networks":[{"network":"1","Network":"2"}]}`,
			"", `"requested_networks[0].Network": names are case-sensitive`},
	} {
		e := rawCall(t, env, tc.method, []byte(tc.body))
		if e == nil || e.Code != rpc.CodeInvalidArgument || e.Field != tc.field || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s %q: %+v, want invalid_argument, field %q, %q", tc.method, tc.body, e, tc.field, tc.msg)
		}
	}
	var n int
	if err := env.Pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM networks) + (SELECT count(*) FROM floating_ranges)").Scan(&n); err != nil || n != 0 {
		t.Errorf("%d networks and ranges were created, %v", n, err)
	}
}
