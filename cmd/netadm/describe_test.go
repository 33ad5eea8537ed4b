package main

import (
	"bytes"
	"testing"

	"novanet/rpc"
)

func TestPrintDescription(t *testing.T) {
	d := rpc.HostDescription{
		Host: "hv1",
		Want: []rpc.HostObject{
			{Kind: "bridge", Name: "br100", Attrs: []string{"kind bridge", "address 10.0.0.1/28"}},
			{Kind: "dhcp", Name: "br100", Attrs: []string{"running yes"}},
			{Kind: "chain", Name: "ipv4 filter nn-FORWARD", Attrs: []string{"rule -A nn-FORWARD -i br100 -j ACCEPT"}},
		},
		Have: []rpc.HostObject{
			{Kind: "dhcp", Name: "br100", Attrs: []string{"running no"}, Info: []string{"lease 1 aa:bb 10.0.0.3 \x1b[2J"}},
			{Kind: "chain", Name: "ipv4 filter nn-FORWARD", Attrs: []string{"rule -A nn-FORWARD -i br100 -j ACCEPT"}},
		},
		Diff: []rpc.HostObjectDiff{
			{Kind: "bridge", Name: "br100", Missing: true, Want: []string{"kind bridge", "address 10.0.0.1/28"}},
			{Kind: "dhcp", Name: "br100", Want: []string{"running yes"}, Have: []string{"running no"}},
		},
		Foreign: []rpc.HostObject{{Kind: "bridge", Name: "virbr0", Attrs: []string{"kind bridge"}}},
	}
	var b bytes.Buffer
	(&app{stdout: &b}).printDescription(d)
	want := `+ bridge br100
+   kind bridge
+   address 10.0.0.1/28
  dhcp br100
+   running yes
-   running no
    # lease 1 aa:bb 10.0.0.3 \x1b[2J
  chain ipv4 filter nn-FORWARD
    rule -A nn-FORWARD -i br100 -j ACCEPT
not ours (never touched):
  bridge virbr0
    kind bridge
hv1: 2 of 3 objects differ
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	(&app{stdout: &b}).printDescription(rpc.HostDescription{Host: "hv1", Want: d.Want[2:], Have: d.Have[1:]})
	if want := "  chain ipv4 filter nn-FORWARD\n    rule -A nn-FORWARD -i br100 -j ACCEPT\nhv1: in sync (1 objects)\n"; b.String() != want {
		t.Errorf("in sync: got\n%s\nwant\n%s", b.String(), want)
	}
}
