package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"

	"novanet/hostnet"
	"novanet/linuxnet/dnsmasq"
	"novanet/rpc"
)

// fakeManager serves a desired state and records calls.
type fakeManager struct {
	mu    sync.Mutex
	state rpc.HostState
	calls []string
	// reports are the convergence reports sent (report_convergence).
	reports []rpc.ConvergenceReport
	// afterRead, when set, runs in HostState after the state was read and
	// before it is returned (without mu held).
	afterRead func(id int64)
}

func (f *fakeManager) RegisterHost(context.Context, rpc.RegisterHostRequest) (rpc.HostInfo, error) {
	return rpc.HostInfo{}, nil
}

func (f *fakeManager) HostState(_ context.Context, host string, id int64) (rpc.HostState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := rpc.HostState{Host: host, FloatingIPs: f.state.FloatingIPs}
	for _, n := range f.state.Networks {
		if id == 0 || n.ID == id {
			st.Networks = append(st.Networks, n)
		}
	}
	if hook := f.afterRead; hook != nil {
		f.mu.Unlock()
		hook(id)
		f.mu.Lock()
	}
	return st, nil
}

func (f *fakeManager) setNetworks(nets []rpc.HostNetwork) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state.Networks = nets
}

func (f *fakeManager) Call(_ context.Context, method string, req, _ any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := req.(rpc.ConvergenceReport); ok {
		f.reports = append(f.reports, c)
		return nil
	}
	r := req.(rpc.AddressRequest)
	f.calls = append(f.calls, fmt.Sprintf("%s %s %s %s", method, r.Address, r.MAC, r.Host))
	return nil
}

// fakeDriver keeps "made" networks in a map and checks that the record of
// a network exists before it is set up.
type fakeDriver struct {
	t     *testing.T
	store *store
	made  map[int64]string // network → bridge
	fail  map[int64]bool
}

func (d *fakeDriver) Name() string { return "flatdhcp" }

func (d *fakeDriver) Plan(n hostnet.Network) (hostnet.Record, error) {
	return hostnet.Record{NetworkID: n.ID, Driver: "flatdhcp", Bridge: n.Bridge, BridgeOwned: true, DHCP: n.Bridge}, nil
}

func (d *fakeDriver) Setup(_ context.Context, n hostnet.Network) ([]string, error) {
	if _, err := d.store.get(n.ID); err != nil {
		d.t.Errorf("network %d set up before its record was written: %v", n.ID, err)
	}
	if d.fail[n.ID] {
		return nil, errors.New("injected failure")
	}
	if d.made[n.ID] == n.Bridge {
		return nil, nil
	}
	d.made[n.ID] = n.Bridge
	return []string{"created " + n.Bridge}, nil
}

func (d *fakeDriver) Teardown(_ context.Context, rec hostnet.Record) ([]string, error) {
	if _, ok := d.made[rec.NetworkID]; !ok {
		return nil, nil
	}
	delete(d.made, rec.NetworkID)
	return []string{"removed " + rec.Bridge}, nil
}

type fakeHost struct{ applied [][]int64 }

func (h *fakeHost) Apply(_ context.Context, nets []hostnet.Network, _ []rpc.HostFloatingIP) ([]string, error) {
	var ids []int64
	for _, n := range nets {
		ids = append(ids, n.ID)
	}
	h.applied = append(h.applied, ids)
	return nil, nil
}

func newTestAgent(t *testing.T, stateDir string) (*Agent, *fakeManager, *fakeDriver, *fakeHost) {
	t.Helper()
	mgr := &fakeManager{}
	host := &fakeHost{}
	drv := &fakeDriver{t: t, made: map[int64]string{}, fail: map[int64]bool{}}
	a, err := New(Config{Host: "hv1", Driver: "flatdhcp", StateDir: stateDir}, zap.NewNop(), mgr, drv, host)
	if err != nil {
		t.Fatal(err)
	}
	drv.store = a.store
	return a, mgr, drv, host
}

func nets(bridges ...string) []rpc.HostNetwork {
	var out []rpc.HostNetwork
	for i, b := range bridges {
		if b != "" {
			out = append(out, rpc.HostNetwork{ID: int64(i + 1), Bridge: b, CIDR: fmt.Sprintf("10.%d.0.0/24", i+1)})
		}
	}
	return out
}

func recordIDs(t *testing.T, a *Agent) []int64 {
	t.Helper()
	recs, err := a.store.list()
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, r := range recs {
		ids = append(ids, r.NetworkID)
	}
	return ids
}

func TestConvergeSetsUpAndTearsDown(t *testing.T) {
	ctx := context.Background()
	a, mgr, _, host := newTestAgent(t, t.TempDir())
	mgr.state.Networks = nets("br1", "br2", "br3")
	rep, err := a.Converge(ctx)
	if err != nil || len(rep.Changes) != 3 {
		t.Fatalf("first converge: %+v, %v", rep, err)
	}
	if rep, err := a.Converge(ctx); err != nil || len(rep.Changes) != 0 {
		t.Errorf("second converge changed %v (%v), want nothing", rep.Changes, err)
	}
	// Network 2 goes, network 3 changes bridge, network 4 arrives.
	mgr.state.Networks = nets("br1", "", "br3b", "br4")
	rep, err = a.Converge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"removed br2", "removed br3", "created br3b", "created br4"}
	if !slices.Equal(rep.Changes, want) {
		t.Errorf("changes %v, want %v", rep.Changes, want)
	}
	if got := recordIDs(t, a); !slices.Equal(got, []int64{1, 3, 4}) {
		t.Errorf("records %v", got)
	}
	if last := host.applied[len(host.applied)-1]; !slices.Equal(last, []int64{1, 3, 4}) {
		t.Errorf("firewall applied for %v", last)
	}
}

func TestOneFailureDoesNotStopTheOthers(t *testing.T) {
	ctx := context.Background()
	a, mgr, drv, _ := newTestAgent(t, t.TempDir())
	mgr.state.Networks = nets("br1", "br2", "br3")
	drv.fail[2] = true
	rep, err := a.Converge(ctx)
	if err == nil || len(rep.Errors) != 1 || len(rep.Changes) != 2 {
		t.Fatalf("converge: %+v, %v; want br1 and br3 made and one error", rep, err)
	}
	// The record stays, so a later teardown finds what may exist.
	if got := recordIDs(t, a); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Errorf("records %v", got)
	}
}

func TestRestartTearsDownFromRecords(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, mgr, drv, _ := newTestAgent(t, dir)
	mgr.state.Networks = nets("br1", "br2")
	if _, err := a.Converge(ctx); err != nil {
		t.Fatal(err)
	}
	// A new agent process on the same state; the manager forgot network 2.
	b, mgr2, drv2, _ := newTestAgent(t, dir)
	drv2.made = drv.made
	mgr2.state.Networks = nets("br1")
	rep, err := b.Converge(ctx)
	if err != nil || !slices.Equal(rep.Changes, []string{"removed br2"}) {
		t.Errorf("restart converge: %v, %v; want br2 removed", rep.Changes, err)
	}
	// Per-network: a network absent from the state is torn down; one never
	// set up here is nothing to do.
	mgr2.state.Networks = nil
	if rep, err := b.ConvergeNetwork(ctx, 1); err != nil || !slices.Equal(rep.Changes, []string{"removed br1"}) {
		t.Errorf("converge network 1: %v, %v", rep.Changes, err)
	}
	if rep, err := b.ConvergeNetwork(ctx, 9); err != nil || len(rep.Changes) != 0 {
		t.Errorf("converge unknown network: %v, %v", rep.Changes, err)
	}
	if got := recordIDs(t, b); len(got) != 0 {
		t.Errorf("records left: %v", got)
	}
}

// A per-network convergence (a setup_network notice) that runs while a full
// convergence is reading the desired state must not be undone by it: the
// full convergence's state, read before the notice's network existed, is
// older. The notice is handled as early as the agent lets it: at once when
// the agent's lock is free while the full state is read (the order that
// tore the network down), after the full convergence otherwise.
func TestOlderFullStateDoesNotUndoANotice(t *testing.T) {
	ctx := t.Context()
	a, mgr, drv, _ := newTestAgent(t, t.TempDir())
	mgr.setNetworks(nets("br1"))
	notice := make(chan error, 1)
	var once sync.Once
	mgr.afterRead = func(id int64) {
		if id != 0 {
			return
		}
		once.Do(func() {
			// The full state {1} has been read; now the manager sets up
			// network 2 on this host and sends the notice.
			mgr.setNetworks(nets("br1", "br2"))
			if a.mu.TryLock() {
				a.mu.Unlock()
				_, err := a.ConvergeNetwork(ctx, 2)
				notice <- err
				return
			}
			go func() { _, err := a.ConvergeNetwork(ctx, 2); notice <- err }()
		})
	}
	if _, err := a.Converge(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-notice; err != nil {
		t.Fatal(err)
	}
	mgr.afterRead = nil
	if drv.made[2] != "br2" {
		t.Errorf("network 2 made: %v; want br2 (the notice undone by the older full state)", drv.made)
	}
	if got := recordIDs(t, a); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("records %v, want [1 2]", got)
	}
}

func TestEventsReachTheManager(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, mgr, _, _ := newTestAgent(t, t.TempDir())
	sock := filepath.Join(t.TempDir(), "host.sock")
	if err := a.ServeEvents(ctx, sock); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"add", "fa:16:3e:00:00:01", "10.0.0.2", "vm1"},
		{"old", "fa:16:3e:00:00:01", "10.0.0.2"},
		{"del", "fa:16:3e:00:00:01", "10.0.0.2"},
	} {
		ev, err := dnsmasq.ParseEvent(args, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		if err := SendEvent(ctx, sock, ev); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	want := []string{
		"host.hv1.lease_fixed_ip 10.0.0.2 fa:16:3e:00:00:01 hv1",
		"host.hv1.lease_fixed_ip 10.0.0.2 fa:16:3e:00:00:01 hv1",
		"host.hv1.release_fixed_ip 10.0.0.2 fa:16:3e:00:00:01 hv1",
	}
	if !slices.Equal(mgr.calls, want) {
		t.Errorf("manager calls %q, want %q", mgr.calls, want)
	}
	// A malformed line is answered with an error, not a crash.
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(`{"action":"add","mac":"zz","ip":"10.0.0.2"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	if got := string(buf[:n]); !strings.HasPrefix(got, `{"ok":false,"error":"malformed dhcp-script event: MAC`) {
		t.Errorf("reply to a malformed event: %q", got)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("socket: %v", err)
	}
}

func FuzzParseEventMessage(f *testing.F) {
	f.Add([]byte(`{"action":"add","mac":"fa:16:3e:00:00:01","ip":"10.0.0.2","hostname":"vm1"}`))
	f.Add([]byte(`{"action":"del","mac":"fa:16:3e:00:00:01","ip":"10.0.0.2"}`))
	f.Add([]byte(`{"action":"tftp"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		ev, err := ParseEventMessage(line)
		if err != nil {
			return
		}
		// What parses is what SendEvent would send again.
		again, err := ParseEventMessage(fmt.Appendf(nil, `{"action":%q,"mac":%q,"ip":%q,"hostname":%q}`,
			ev.Action, ev.MAC, ev.IP, ev.Hostname))
		if err != nil {
			t.Fatalf("re-encoded %+v does not parse: %v", ev, err)
		}
		if again.Action != ev.Action || again.MAC.String() != ev.MAC.String() || again.IP != ev.IP || again.Hostname != ev.Hostname {
			t.Fatalf("round trip %+v -> %+v", ev, again)
		}
	})
}

func TestReplyErrorCodes(t *testing.T) {
	noBridge := fmt.Errorf("network 1 (br100): bridge br100 does not exist: %w", hostnet.ErrNoBridge)
	for _, tc := range []struct {
		name string
		err  error
		want rpc.Code
	}{
		{"missing flat bridge", noBridge, rpc.CodeConflict},
		{"port of another bridge", fmt.Errorf("x: %w", hostnet.ErrPortInUse), rpc.CodeConflict},
		{"bad network", fmt.Errorf("%w: network 1: cidr", hostnet.ErrInvalidNetwork), rpc.CodeInvalidArgument},
		{"the manager's own code", fmt.Errorf("desired state of hv1: %w", rpc.Errorf(rpc.CodeUnavailable, "database unavailable")), rpc.CodeUnavailable},
		{"out of time", fmt.Errorf("dnsmasq: %w", context.DeadlineExceeded), rpc.CodeUnavailable},
		{"anything else", errors.New("boom"), rpc.CodeInternal},
		{"a report of several", errors.Join(errors.New("boom"), noBridge), rpc.CodeConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := replyError("converge", "hv1", tc.err)
			if e.Code != tc.want {
				t.Errorf("code %s, want %s", e.Code, tc.want)
			}
			if want := "converge on hv1: " + tc.err.Error(); e.Message != want {
				t.Errorf("message %q, want %q", e.Message, want)
			}
		})
	}
}

// A report keeps every error, and its error states each once.
func TestReportKeepsItsErrors(t *testing.T) {
	ctx := context.Background()
	a, mgr, drv, _ := newTestAgent(t, t.TempDir())
	mgr.state.Networks = nets("br1", "br2", "br3")
	mgr.state.Networks[2].CIDR = "10.3.0.0/99" // refused when parsed
	drv.fail[1] = true
	rep, err := a.Converge(ctx)
	if len(rep.Errors) != 2 || !errors.Is(err, hostnet.ErrInvalidNetwork) || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("converge: %v (%d errors); want the failure of network 1 and the bad network 3", err, len(rep.Errors))
	}
	if !slices.Equal(rep.Changes, []string{"created br2"}) {
		t.Errorf("changes %v, want br2 made", rep.Changes)
	}
}

// A network that no longer parses keeps what was made for it: its record,
// its links and its firewall rules.
func TestUnparsableNetworkKeepsWhatWasMade(t *testing.T) {
	ctx := context.Background()
	a, mgr, drv, host := newTestAgent(t, t.TempDir())
	mgr.state.Networks = nets("br1", "br2")
	if _, err := a.Converge(ctx); err != nil {
		t.Fatal(err)
	}
	mgr.state.Networks[1].CIDR = "10.2.0.0/99"
	if _, err := a.Converge(ctx); !errors.Is(err, hostnet.ErrInvalidNetwork) {
		t.Fatalf("converge with a bad network = %v, want ErrInvalidNetwork", err)
	}
	if drv.made[2] != "br2" || !slices.Equal(recordIDs(t, a), []int64{1, 2}) {
		t.Errorf("made %v, records %v; want network 2 kept", drv.made, recordIDs(t, a))
	}
	if last := host.applied[len(host.applied)-1]; !slices.Equal(last, []int64{1, 2}) {
		t.Errorf("firewall applied for %v, want [1 2]", last)
	}
}
