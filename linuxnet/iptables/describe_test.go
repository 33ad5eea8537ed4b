package iptables

import (
	"context"
	"testing"
)

func TestDescribe(t *testing.T) {
	ctx := context.Background()
	m, f, err := NewFake(Config{Binary: "nn", Families: []Family{IPv4}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddRule(IPv4, Filter, "FORWARD", Rule{InIface: "br100", Target: Accept}); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Exec(IPv4, Filter, "-N", "other"); err != nil {
		t.Fatal(err)
	}
	if err := f.Exec(IPv4, Filter, "-F", "nn-FORWARD"); err != nil {
		t.Fatal(err)
	}
	cs, err := m.Describe(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var fwd, other *ChainState
	for i, c := range cs {
		switch c.Name {
		case "nn-FORWARD":
			fwd = &cs[i]
		case "other":
			other = &cs[i]
		}
	}
	if fwd == nil || !fwd.Ours || !fwd.Exists || len(fwd.Want) != 1 || fwd.Want[0] != "-A nn-FORWARD -i br100 -j ACCEPT" || len(fwd.Have) != 0 {
		t.Errorf("nn-FORWARD: %+v, want our one rule wanted and none had", fwd)
	}
	if other == nil || other.Ours {
		t.Errorf("the foreign chain: %+v", other)
	}
}
