package iptables

import (
	"context"
	"novanet/internal/golden"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"novanet/linuxnet/nstest"
)

func saveCmd(b Backend, fam Family) string {
	bin, _ := b.Commands(fam)
	return bin + "-save"
}

// TestRealIptables runs the manager against the real iptables in a
// throwaway namespace, for both backends: iptables-save shows exactly our
// rules plus the foreign ones (the same golden file the fake is checked
// against), every state transition is clean, and teardown leaves only the
// foreign rules.
func TestRealIptables(t *testing.T) {
	nstest.RequireRoot(t)
	for _, tc := range []struct {
		name    string
		backend Backend
	}{{"nft", BackendDefault}, {"legacy", BackendLegacy}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := nstest.New(t)
			ctx := context.Background()
			if tc.backend == BackendLegacy {
				if _, err := exec.LookPath("iptables-legacy-restore"); err != nil {
					t.Skip("iptables-legacy not installed")
				}
				if out, err := ns.Command(ctx, "ip6tables-legacy", "-t", "nat", "-S").CombinedOutput(); err != nil {
					t.Skipf("legacy backend unusable in this kernel (ip6tables-legacy -t nat: %v: %s)", err, out)
				}
			}
			m, err := New(Config{Binary: testBinary, Backend: tc.backend, NetNS: ns.Path})
			if err != nil {
				t.Fatal(err)
			}
			save := func(fam Family) string {
				return CanonicalSave(ns.Run(t, saveCmd(tc.backend, fam)))
			}
			bin4, _ := tc.backend.Commands(IPv4)
			bin6, _ := tc.backend.Commands(IPv6)
			addForeign(t, func(fam Family, tb Table, args ...string) error {
				bin := bin4
				if fam == IPv6 {
					bin = bin6
				}
				out, err := ns.Command(ctx, bin, append([]string{"-t", string(tb)}, args...)...).CombinedOutput()
				if err != nil {
					t.Logf("%s", out)
				}
				return err
			})
			// The same rules in the fake, as the oracle for IPv6.
			fm, fake := newFake(t)
			addForeign(t, fake.Exec)
			sampleRules(t, fm)
			if err := fm.Apply(ctx); err != nil {
				t.Fatal(err)
			}

			sampleRules(t, m)
			for i := 0; i < 2; i++ { // the second Apply must change nothing
				if err := m.Apply(ctx); err != nil {
					t.Fatalf("Apply #%d: %v", i, err)
				}
			}
			golden.Check(t, "save_v4.golden", save(IPv4))
			if d := cmp.Diff(fake.Save(IPv6), save(IPv6)); d != "" {
				t.Errorf("ip6tables-save differs from the fake (-fake +real):\n%s", d)
			}

			// A restart (new manager, same rules) converges without change.
			m2, err := New(Config{Binary: testBinary, Backend: tc.backend, NetNS: ns.Path})
			if err != nil {
				t.Fatal(err)
			}
			sampleRules(t, m2)
			if err := m2.Apply(ctx); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, "save_v4.golden", save(IPv4))

			t.Run("states", func(t *testing.T) {
				m3, err := New(Config{Binary: testBinary, Backend: tc.backend, NetNS: ns.Path, Families: []Family{IPv4}})
				if err != nil {
					t.Fatal(err)
				}
				runStates(t, m3, func() string { return save(IPv4) })
			})

			if err := m.Teardown(ctx); err != nil {
				t.Fatal(err)
			}
			for _, fam := range []Family{IPv4, IPv6} {
				got := save(fam)
				if d := cmp.Diff(foreignOnly, got); d != "" {
					t.Errorf("%s after teardown (-want +got):\n%s", fam, d)
				}
				if strings.Contains(got, "novanet") || strings.Contains(got, testBinary) {
					t.Errorf("%s: something of ours survived teardown", fam)
				}
			}
		})
	}
}
