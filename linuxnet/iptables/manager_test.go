package iptables

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"novanet/internal/golden"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const testBinary = "nn-test"

func newFake(t *testing.T) (*Manager, *Fake) {
	t.Helper()
	m, f, err := NewFake(Config{Binary: testBinary})
	if err != nil {
		t.Fatal(err)
	}
	return m, f
}

func TestConfigValidation(t *testing.T) {
	for _, b := range []string{"", "Nova", "a b", "-x", "abcdefghijklmnopq", "x;y"} {
		if _, _, err := NewFake(Config{Binary: b}); err == nil {
			t.Errorf("binary %q accepted", b)
		}
	}
	m, _ := newFake(t)
	if err := m.AddChain(IPv4, Filter, "this-name-is-far-too-long-x"); !errors.Is(err, ErrInvalidChain) {
		t.Errorf("long chain: %v", err)
	}
	if err := m.AddRule(IPv4, Filter, "nochain", Rule{Target: Accept}); !errors.Is(err, ErrInvalidChain) {
		t.Errorf("unknown chain: %v", err)
	}
	if err := m.RemoveChain(IPv4, NAT, "snat"); !errors.Is(err, ErrInvalidChain) {
		t.Errorf("removing a fixed chain: %v", err)
	}
}

// Golden files for the generated iptables-restore input.
func TestRenderGolden(t *testing.T) {
	m, _ := newFake(t)
	sampleRules(t, m)
	for _, fam := range []Family{IPv4, IPv6} {
		got, err := m.Render(fam)
		if err != nil {
			t.Fatal(err)
		}
		golden.Check(t, fmt.Sprintf("restore_%s.golden", fam), got)
	}
}

// Apply writes everything once, then only what changed, in one restore per
// family; the save shows our chains, jumps and the foreign rules untouched.
func TestApplyIncrementalAndForeignRules(t *testing.T) {
	ctx := context.Background()
	m, f := newFake(t)
	addForeign(t, f.Exec)
	sampleRules(t, m)
	if err := m.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Restores()); n != 2 {
		t.Fatalf("first apply: %d restores, want 2 (one per family)", n)
	}
	golden.Check(t, "save_v4.golden", f.Save(IPv4))

	// Nothing changed: no restore at all.
	if err := m.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Restores()); n != 2 {
		t.Fatalf("no-op apply made %d restores, want none", n-2)
	}

	// One floating IP more: only the three touched chains are written.
	pre, out, snat := floatingRules(a4("192.0.2.11"), a4("10.0.0.6"))
	for _, c := range []struct {
		chain string
		r     Rule
	}{{"PREROUTING", pre}, {"OUTPUT", out}, {"float-snat", snat}} {
		if err := m.AddRule(IPv4, NAT, c.chain, c.r); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	rs := f.Restores()
	if len(rs) != 3 || rs[2].Family != IPv4 {
		t.Fatalf("incremental apply: restores %+v", rs[2:])
	}
	golden.Check(t, "incremental_v4.golden", rs[2].Input)

	// Remove it again and a chain: the chain is flushed and deleted.
	for _, c := range []struct {
		chain string
		r     Rule
	}{{"PREROUTING", pre}, {"OUTPUT", out}, {"float-snat", snat}} {
		if err := m.RemoveRule(IPv4, NAT, c.chain, c.r); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.RemoveChain(IPv4, Filter, "inst-1"); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.Save(IPv4); strings.Contains(got, "192.0.2.11") || strings.Contains(got, "inst-1") {
		t.Errorf("removed rules still present:\n%s", got)
	}

	if err := m.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []Family{IPv4, IPv6} {
		got := f.Save(fam)
		if d := cmp.Diff(foreignOnly, got); d != "" {
			t.Errorf("%s after teardown (-want +got):\n%s", fam, d)
		}
	}
}

// foreignOnly is the canonical save of addForeign's rules alone.
const foreignOnly = `*filter
:INPUT ACCEPT
:FORWARD ACCEPT
:OUTPUT ACCEPT
:foreign -
-A FORWARD -j foreign
-A foreign -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT
:INPUT ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
-A POSTROUTING -o eth9 -j MASQUERADE
COMMIT
`

// addForeign adds rules that are not ours, in both families.
func addForeign(t *testing.T, exec func(Family, Table, ...string) error) {
	t.Helper()
	for _, fam := range []Family{IPv4, IPv6} {
		for _, cmd := range []struct {
			t    Table
			args []string
		}{
			{Filter, []string{"-N", "foreign"}},
			{Filter, []string{"-A", "foreign", "-j", "ACCEPT"}},
			{Filter, []string{"-A", "FORWARD", "-j", "foreign"}},
			{NAT, []string{"-A", "POSTROUTING", "-o", "eth9", "-j", "MASQUERADE"}},
		} {
			if err := exec(fam, cmd.t, cmd.args...); err != nil {
				t.Fatalf("foreign %s %v: %v", fam, cmd.args, err)
			}
		}
	}
}

// A failed restore leaves the manager ready to rewrite everything.
func TestApplyFailureResyncs(t *testing.T) {
	ctx := context.Background()
	m, f := newFake(t)
	sampleRules(t, m)
	f.FailRestore = errors.New("boom")
	if err := m.Apply(ctx); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Apply = %v, want boom", err)
	}
	f.FailRestore = nil
	if err := m.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "save_v4_nonforeign.golden", f.Save(IPv4))
}

// A second binary shares the top and bottom chains; tearing one down keeps
// the other's rules and the shared chains.
func TestSharedChains(t *testing.T) {
	ctx := context.Background()
	_, f := newFake(t)
	a := newManager(Config{Binary: "nn-a", Families: []Family{IPv4}}, f)
	b := newManager(Config{Binary: "nn-b", Families: []Family{IPv4}}, f)
	for _, m := range []*Manager{a, b} {
		if err := m.Apply(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	got := f.Save(IPv4)
	if strings.Contains(got, "nn-a") || !strings.Contains(got, "-A "+TopChain+" -j nn-b-local") ||
		!strings.Contains(got, "-A FORWARD -j "+TopChain) {
		t.Errorf("after tearing down nn-a:\n%s", got)
	}
	if err := b.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.Save(IPv4); got != "" {
		t.Errorf("after tearing down both:\n%s", got)
	}
}

// A stale chain of ours from an earlier run is deleted by the first Apply.
func TestFirstApplyRemovesStaleChains(t *testing.T) {
	ctx := context.Background()
	m, f := newFake(t)
	if err := f.Exec(IPv4, Filter, "-N", testBinary+"-old"); err != nil {
		t.Fatal(err)
	}
	if err := f.Exec(IPv4, Filter, "-A", testBinary+"-old", "-j", "DROP"); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.Save(IPv4); strings.Contains(got, testBinary+"-old") {
		t.Errorf("stale chain kept:\n%s", got)
	}
}

// state is a desired set of rules, per our chain.
type state struct {
	name   string
	chains map[string][]Rule // nat chains of ours (extra chains are added)
	want   string            // canonical save lines of those chains
}

func floatState(name string, pairs ...[2]string) state {
	s := state{name: name, chains: map[string][]Rule{"PREROUTING": nil, "float-snat": nil}}
	var pre, snat strings.Builder
	for _, p := range pairs {
		fl, fx := a4(p[0]), a4(p[1])
		r1, _, r2 := floatingRules(fl, fx)
		s.chains["PREROUTING"] = append(s.chains["PREROUTING"], r1)
		s.chains["float-snat"] = append(s.chains["float-snat"], r2)
		fmt.Fprintf(&pre, "-A nn-test-PREROUTING -d %s/32 -j DNAT --to-destination %s\n", fl, fx)
		fmt.Fprintf(&snat, "-A nn-test-float-snat -s %s/32 -j SNAT --to-source %s\n", fx, fl)
	}
	s.want = pre.String() + snat.String()
	return s
}

var states = []state{
	{name: "empty", chains: map[string][]Rule{"PREROUTING": nil, "float-snat": nil}},
	floatState("one", [2]string{"192.0.2.10", "10.0.0.5"}),
	floatState("two", [2]string{"192.0.2.10", "10.0.0.5"}, [2]string{"192.0.2.11", "10.0.0.6"}),
	floatState("swapped", [2]string{"192.0.2.11", "10.0.0.6"}, [2]string{"192.0.2.10", "10.0.0.5"}),
	floatState("moved", [2]string{"192.0.2.10", "10.0.0.6"}),
	{
		name: "extra-chain",
		chains: map[string][]Rule{
			"PREROUTING": {{Proto: TCP, DstPort: 80, Target: Jump("meta")}},
			"float-snat": nil,
			"meta":       {{Dst: p4("169.254.169.254/32"), Proto: TCP, DstPort: 80, Target: DNAT(a4("10.0.0.1"), 8775)}},
		},
		want: "-A nn-test-PREROUTING -p tcp -m tcp --dport 80 -j nn-test-meta\n" +
			"-A nn-test-meta -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.1:8775\n",
	},
}

// setState makes m's nat chains exactly s.
func setState(t *testing.T, m *Manager, s state) {
	t.Helper()
	if _, ok := s.chains["meta"]; !ok {
		if err := m.RemoveChain(IPv4, NAT, "meta"); err != nil {
			t.Fatal(err)
		}
	} else if err := m.AddChain(IPv4, NAT, "meta"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"meta", "PREROUTING", "float-snat"} {
		rules, ok := s.chains[c]
		if !ok {
			continue
		}
		if err := m.SetRules(IPv4, NAT, c, rules); err != nil {
			t.Fatal(err)
		}
	}
}

// runStates applies every state, then random transitions between them, and
// checks after each that the save of our varying chains is exactly the
// state's.
func runStates(t *testing.T, m *Manager, save func() string) {
	t.Helper()
	ctx := context.Background()
	check := func(s state, from string) {
		t.Helper()
		setState(t, m, s)
		if err := m.Apply(ctx); err != nil {
			t.Fatalf("%s -> %s: %v", from, s.name, err)
		}
		got := onlyLines(save(), "-A nn-test-PREROUTING", "-A nn-test-float-snat", "-A nn-test-meta")
		want := "*filter\nCOMMIT\n*nat\n" + s.want + "COMMIT\n"
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("%s -> %s (-want +got):\n%s", from, s.name, d)
		}
	}
	prev := "start"
	for _, s := range states {
		check(s, prev)
		prev = s.name
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 40; i++ {
		s := states[rng.IntN(len(states))]
		check(s, prev)
		prev = s.name
	}
}

func TestStateTransitionsFake(t *testing.T) {
	m, f := newFake(t)
	runStates(t, m, func() string { return f.Save(IPv4) })
}

func TestSetRulesValidates(t *testing.T) {
	m, _ := newFake(t)
	err := m.SetRules(IPv4, NAT, "PREROUTING", []Rule{{Target: Accept}, {Target: DNAT(netip.Addr{}, 0)}})
	if !errors.Is(err, ErrInvalidRule) {
		t.Fatalf("err = %v", err)
	}
}

// A resync reads the chains back: a host that matches is not rewritten;
// drift (a flushed chain, a deleted jump, a rule added to our chain) is
// repaired and counted against what was last written.
func TestResyncReadsBackAndCountsDrift(t *testing.T) {
	m, f := newFake(t)
	sampleRules(t, m)
	if err := m.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := m.TakeRepairs(); r != (Repairs{}) {
		t.Errorf("first apply counted %+v: nothing was written before", r)
	}
	want := f.Save(IPv4)
	restores := len(f.Restores())
	m.Resync()
	if err := m.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Restores()); n != restores {
		t.Errorf("resync of a matching host wrote %d restores: %v", n-restores, f.Restores()[restores:])
	}
	if r := m.TakeRepairs(); r != (Repairs{}) {
		t.Errorf("resync of a matching host counted %+v", r)
	}

	fwd := testBinary + "-FORWARD"
	lost := strings.Count(want, "-A "+fwd+" ")
	for _, cmd := range [][]string{{"-F", fwd}, {"-D", "INPUT", "-j", testBinary + "-INPUT"},
		{"-A", testBinary + "-INPUT", "-s", "198.51.100.7/32", "-j", "ACCEPT"}} {
		if err := f.Exec(IPv4, Filter, cmd...); err != nil {
			t.Fatal(err)
		}
	}
	// Without a resync nothing is read back.
	if err := m.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := m.TakeRepairs(); r != (Repairs{}) {
		t.Errorf("apply without resync counted %+v", r)
	}
	m.Resync()
	if err := m.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := m.TakeRepairs(); r != (Repairs{Restored: lost + 1, Removed: 1}) {
		t.Errorf("repairs %+v, want %d restored (chain and jump), 1 removed", r, lost+1)
	}
	if r := m.TakeRepairs(); r != (Repairs{}) {
		t.Errorf("TakeRepairs did not reset: %+v", r)
	}
	if d := cmp.Diff(want, f.Save(IPv4)); d != "" {
		t.Errorf("after the repair (-want +got):\n%s", d)
	}
}
