package iptables

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Fake is an in-memory iptables for unit tests: it understands the
// restore input the manager writes and the rule operations it makes, and
// renders its state like iptables-save (see CanonicalSave). Drivers use it
// through NewFake to test their rules without root.
type Fake struct {
	mu       sync.Mutex
	tables   map[tkey]*fakeTable
	restores []Restore
	// FailRestore, when set, makes the next restore calls fail with it.
	FailRestore error
}

// Restore records one iptables-restore call.
type Restore struct {
	Family Family
	Input  string
}

type fakeTable struct {
	chains map[string][]string // chain -> rule arguments
	policy map[string]string   // built-in chain -> policy
}

var fakeBuiltins = map[Table][]string{
	Filter: {"INPUT", "FORWARD", "OUTPUT"},
	NAT:    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
}

// NewFake returns a Manager backed by a new in-memory Fake.
func NewFake(cfg Config) (*Manager, *Fake, error) {
	if err := validateConfig(&cfg); err != nil {
		return nil, nil, err
	}
	f := &Fake{tables: map[tkey]*fakeTable{}}
	for _, fam := range []Family{IPv4, IPv6} {
		for _, t := range tables {
			ft := &fakeTable{chains: map[string][]string{}, policy: map[string]string{}}
			for _, c := range fakeBuiltins[t] {
				ft.chains[c] = nil
				ft.policy[c] = "ACCEPT"
			}
			f.tables[tkey{fam, t}] = ft
		}
	}
	return newManager(cfg, f), f, nil
}

// Restores returns the restore calls made so far.
func (f *Fake) Restores() []Restore {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.restores)
}

// Exec runs an iptables-style rule command against the fake, for tests that
// add foreign rules: "-N chain", "-A chain args...", "-I chain args...", "-F chain".
func (f *Fake) Exec(fam Family, t Table, args ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ft := f.tables[tkey{fam, t}]
	if len(args) < 2 {
		return fmt.Errorf("fake: bad command %q", args)
	}
	switch args[0] {
	case "-N":
		if _, ok := ft.chains[args[1]]; ok {
			return fmt.Errorf("fake: chain %s exists", args[1])
		}
		ft.chains[args[1]] = nil
	case "-A":
		return ft.appendLine(args[1], strings.Join(args[2:], " "))
	case "-F":
		if _, ok := ft.chains[args[1]]; !ok {
			return fmt.Errorf("fake: no chain %s", args[1])
		}
		ft.chains[args[1]] = nil
	case "-I":
		if _, ok := ft.chains[args[1]]; !ok {
			return fmt.Errorf("fake: no chain %s", args[1])
		}
		ft.chains[args[1]] = slices.Insert(ft.chains[args[1]], 0, strings.Join(args[2:], " "))
	default:
		return fmt.Errorf("fake: unsupported command %q", args[0])
	}
	return nil
}

// Save renders fam's tables like iptables-save, in CanonicalSave form.
func (f *Fake) Save(fam Family) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, t := range tables {
		ft := f.tables[tkey{fam, t}]
		b.WriteString("*" + string(t) + "\n")
		for c := range ft.chains {
			pol := "-"
			if p, ok := ft.policy[c]; ok {
				pol = p
			}
			b.WriteString(":" + c + " " + pol + " [0:0]\n")
		}
		for c, rules := range ft.chains {
			for _, r := range rules {
				b.WriteString("-A " + c + " " + r + "\n")
			}
		}
		b.WriteString("COMMIT\n")
	}
	return CanonicalSave(b.String())
}

func (ft *fakeTable) clone() *fakeTable {
	c := &fakeTable{chains: map[string][]string{}, policy: ft.policy}
	for k, v := range ft.chains {
		c.chains[k] = slices.Clone(v)
	}
	return c
}

func (ft *fakeTable) appendLine(chain, rule string) error {
	if _, ok := ft.chains[chain]; !ok {
		return fmt.Errorf("fake: -A %s: no such chain", chain)
	}
	if i := strings.Index(rule, "-j "); i >= 0 {
		target := strings.Fields(rule[i+3:])[0]
		if _, ok := ft.chains[target]; !ok && strings.ToUpper(target) != target {
			return fmt.Errorf("fake: -A %s: no chain/target %s", chain, target)
		}
	}
	ft.chains[chain] = append(ft.chains[chain], rule)
	return nil
}

func (ft *fakeTable) referenced(chain string) bool {
	for _, rules := range ft.chains {
		for _, r := range rules {
			if strings.HasSuffix(r, "-j "+chain) {
				return true
			}
		}
	}
	return false
}

func (f *Fake) restore(ctx context.Context, fam Family, input []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restores = append(f.restores, Restore{Family: fam, Input: string(input)})
	if f.FailRestore != nil {
		return f.FailRestore
	}
	// Work on copies: a failed restore changes nothing.
	work := map[Table]*fakeTable{}
	var cur *fakeTable
	var curName Table
	sc := bufio.NewScanner(strings.NewReader(string(input)))
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		bad := func(format string, args ...any) error {
			return fmt.Errorf("fake restore line %d %q: %s", n, line, fmt.Sprintf(format, args...))
		}
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			curName = Table(line[1:])
			ft, ok := f.tables[tkey{fam, curName}]
			if !ok {
				return bad("unknown table")
			}
			cur = ft.clone()
		case line == "COMMIT":
			if cur == nil {
				return bad("COMMIT outside a table")
			}
			work[curName] = cur
			cur = nil
		case cur == nil:
			return bad("outside a table")
		case strings.HasPrefix(line, ":"):
			name := strings.Fields(line[1:])[0]
			if _, builtin := cur.policy[name]; builtin {
				return bad("manager must not declare built-in chains")
			}
			cur.chains[name] = nil // create or flush
		case strings.HasPrefix(line, "-A "):
			parts := strings.SplitN(line[3:], " ", 2)
			if len(parts) != 2 {
				return bad("short rule")
			}
			if err := cur.appendLine(parts[0], parts[1]); err != nil {
				return bad("%v", err)
			}
		case strings.HasPrefix(line, "-D "):
			parts := strings.SplitN(line[3:], " ", 2)
			if len(parts) != 2 {
				return bad("short rule")
			}
			i := slices.Index(cur.chains[parts[0]], parts[1])
			if i < 0 {
				return bad("no such rule")
			}
			cur.chains[parts[0]] = slices.Delete(cur.chains[parts[0]], i, i+1)
		case strings.HasPrefix(line, "-X "):
			name := strings.TrimSpace(line[3:])
			if _, ok := cur.chains[name]; !ok {
				return bad("no such chain")
			}
			if len(cur.chains[name]) > 0 || cur.referenced(name) {
				return bad("chain not empty or in use")
			}
			delete(cur.chains, name)
		default:
			return bad("unsupported")
		}
	}
	if cur != nil {
		return fmt.Errorf("fake restore: missing COMMIT")
	}
	for t, ft := range work {
		f.tables[tkey{fam, t}] = ft
	}
	return nil
}

func (f *Fake) table(fam Family, t Table) *fakeTable {
	f.mu.Lock()
	return f.tables[tkey{fam, t}]
}

func (f *Fake) listChains(ctx context.Context, fam Family, t Table) ([]string, error) {
	ft := f.table(fam, t)
	defer f.mu.Unlock()
	var out []string
	for c := range ft.chains {
		out = append(out, c)
	}
	sort.Strings(out)
	return out, nil
}

func (f *Fake) listRules(ctx context.Context, fam Family, t Table, chain string) ([]string, error) {
	ft := f.table(fam, t)
	defer f.mu.Unlock()
	rules, ok := ft.chains[chain]
	if !ok {
		return nil, fmt.Errorf("fake: no chain %s", chain)
	}
	var out []string
	for _, r := range rules {
		out = append(out, "-A "+chain+" "+r)
	}
	return out, nil
}

func (f *Fake) exists(ctx context.Context, fam Family, t Table, chain string, spec []string) (bool, error) {
	ft := f.table(fam, t)
	defer f.mu.Unlock()
	rules, ok := ft.chains[chain]
	if !ok {
		return false, fmt.Errorf("fake: no chain %s", chain)
	}
	return slices.Contains(rules, strings.Join(spec, " ")), nil
}

func (f *Fake) insert(ctx context.Context, fam Family, t Table, chain string, pos int, spec []string) error {
	ft := f.table(fam, t)
	defer f.mu.Unlock()
	rules, ok := ft.chains[chain]
	if !ok || pos < 1 || pos > len(rules)+1 {
		return fmt.Errorf("fake: insert %s at %d: bad chain or index", chain, pos)
	}
	ft.chains[chain] = slices.Insert(rules, pos-1, strings.Join(spec, " "))
	return nil
}

func (f *Fake) appendRule(ctx context.Context, fam Family, t Table, chain string, spec []string) error {
	ft := f.table(fam, t)
	defer f.mu.Unlock()
	return ft.appendLine(chain, strings.Join(spec, " "))
}

func (f *Fake) delete(ctx context.Context, fam Family, t Table, chain string, spec []string) error {
	ft := f.table(fam, t)
	defer f.mu.Unlock()
	rules := ft.chains[chain]
	if i := slices.Index(rules, strings.Join(spec, " ")); i >= 0 {
		ft.chains[chain] = slices.Delete(rules, i, i+1)
	}
	return nil
}

func (f *Fake) ensureChain(ctx context.Context, fam Family, t Table, chain string) error {
	ft := f.table(fam, t)
	defer f.mu.Unlock()
	if _, ok := ft.chains[chain]; !ok {
		ft.chains[chain] = nil
	}
	return nil
}

func (f *Fake) deleteChain(ctx context.Context, fam Family, t Table, chain string) error {
	ft := f.table(fam, t)
	defer f.mu.Unlock()
	if len(ft.chains[chain]) > 0 || ft.referenced(chain) {
		return fmt.Errorf("fake: chain %s not empty or in use", chain)
	}
	delete(ft.chains, chain)
	return nil
}

// CanonicalSave normalizes iptables-save output so that two saves of the same
// rules compare equal: comments dropped, counters zeroed, tables and chain
// declarations sorted, rules grouped by chain (built-in chains first, in
// iptables order, then user chains sorted) keeping their order within a
// chain, and tables holding nothing but empty ACCEPT built-in chains left
// out.
func CanonicalSave(save string) string {
	type tbl struct {
		decl  map[string]string // chain -> policy
		rules map[string][]string
	}
	tabs := map[string]*tbl{}
	var cur *tbl
	for _, line := range strings.Split(save, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || line == "COMMIT":
		case strings.HasPrefix(line, "*"):
			cur = &tbl{decl: map[string]string{}, rules: map[string][]string{}}
			tabs[line[1:]] = cur
		case cur == nil:
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			pol := "-"
			if len(f) > 1 {
				pol = f[1]
			}
			cur.decl[f[0]] = pol
		case strings.HasPrefix(line, "-A "):
			parts := strings.SplitN(line[3:], " ", 2)
			rest := ""
			if len(parts) == 2 {
				rest = parts[1]
			}
			cur.rules[parts[0]] = append(cur.rules[parts[0]], rest)
		}
	}
	var names []string
	for n := range tabs {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		t := tabs[n]
		empty := len(t.rules) == 0
		for _, pol := range t.decl {
			if pol != "ACCEPT" {
				empty = false
			}
		}
		if empty {
			continue
		}
		order := slices.Clone(fakeBuiltins[Table(n)])
		var user []string
		for c := range t.decl {
			if !slices.Contains(order, c) {
				user = append(user, c)
			}
		}
		sort.Strings(user)
		order = append(order, user...)
		b.WriteString("*" + n + "\n")
		for _, c := range order {
			if pol, ok := t.decl[c]; ok {
				b.WriteString(":" + c + " " + pol + "\n")
			}
		}
		for _, c := range order {
			for _, r := range t.rules[c] {
				b.WriteString("-A " + c + " " + r + "\n")
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}
