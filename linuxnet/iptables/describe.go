package iptables

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// ChainState is one chain as the manager wants it and as the kernel has
// it: rules as "-A <chain> ..." lines, the form iptables -S prints.
type ChainState struct {
	Family Family
	Table  Table
	Name   string // full name
	// Ours: a chain of this manager; false for a chain Describe found
	// that belongs to someone else (only with foreign).
	Ours   bool
	Exists bool     // the kernel has the chain
	Want   []string // our rules (nil for a foreign chain)
	Have   []string // the kernel's rules
}

// Describe reads every chain of ours back from the kernel, beside the
// rules the manager holds for it; with foreign, also the other user
// chains of our tables (not the built-in ones), which it only reads. The
// jump rules from the built-in chains into ours are not described.
func (m *Manager) Describe(ctx context.Context, foreign bool) ([]ChainState, error) {
	type want struct {
		k     tkey
		full  string
		lines []string
	}
	m.mu.Lock()
	var wants []want
	for _, f := range m.families {
		for _, t := range tables {
			k := tkey{f, t}
			for short, c := range m.chains[k] {
				full := m.Wrap(short)
				var lines []string
				for _, l := range c.lines {
					lines = append(lines, "-A "+full+" "+l)
				}
				wants = append(wants, want{k, full, lines})
			}
		}
	}
	m.mu.Unlock()
	slices.SortFunc(wants, func(a, b want) int {
		if a.k != b.k {
			if a.k.fam != b.k.fam {
				return int(a.k.fam) - int(b.k.fam)
			}
			return strings.Compare(string(a.k.table), string(b.k.table))
		}
		return strings.Compare(a.full, b.full)
	})
	var out []ChainState
	listed := map[tkey][]string{}
	for _, w := range wants {
		chains, ok := listed[w.k]
		if !ok {
			var err error
			chains, err = m.run.listChains(ctx, w.k.fam, w.k.table)
			if err != nil {
				return nil, fmt.Errorf("iptables: %s %s: list chains: %w", w.k.fam, w.k.table, err)
			}
			listed[w.k] = chains
		}
		cs := ChainState{Family: w.k.fam, Table: w.k.table, Name: w.full, Ours: true, Want: w.lines}
		if slices.Contains(chains, w.full) {
			cs.Exists = true
			have, err := m.run.listRules(ctx, w.k.fam, w.k.table, w.full)
			if err != nil {
				return nil, fmt.Errorf("iptables: %s %s: list %s: %w", w.k.fam, w.k.table, w.full, err)
			}
			cs.Have = have
		}
		out = append(out, cs)
	}
	if !foreign {
		return out, nil
	}
	for _, f := range m.families {
		for _, t := range tables {
			k := tkey{f, t}
			for _, c := range listed[k] {
				if slices.Contains(builtin[t], c) || strings.HasPrefix(c, m.binary+"-") || c == TopChain || c == BottomChain {
					continue
				}
				have, err := m.run.listRules(ctx, f, t, c)
				if err != nil {
					return nil, fmt.Errorf("iptables: %s %s: list %s: %w", f, t, c, err)
				}
				out = append(out, ChainState{Family: f, Table: t, Name: c, Exists: true, Have: have})
			}
		}
	}
	return out, nil
}
