// Package iptables is an iptables manager in the spirit of nova-network's
// IptablesManager.
//
// The manager owns chains wrapped with the binary name (<binary>-INPUT,
// <binary>-PREROUTING, <binary>-snat, ...) in the filter and nat tables of
// IPv4 and IPv6. Callers add and remove typed rules in memory; Apply writes
// every chain that changed since the last Apply in one
// "iptables-restore --noflush" call per family, declaring and rewriting only
// our chains, so rules that are not ours are never touched. The jump rules
// from the built-in chains into ours, and our rule in the chains shared by
// all novanet binaries (novanet-filter-top, novanet-postrouting-bottom), are
// ensured one by one with go-iptables.
//
// The layout, per family:
//
//	filter: INPUT   -> <binary>-INPUT
//	        OUTPUT  -> novanet-filter-top, <binary>-OUTPUT
//	        FORWARD -> novanet-filter-top, <binary>-FORWARD
//	        novanet-filter-top -> <binary>-local
//	nat:    PREROUTING  -> <binary>-PREROUTING
//	        OUTPUT      -> <binary>-OUTPUT
//	        POSTROUTING -> <binary>-POSTROUTING, novanet-postrouting-bottom
//	        novanet-postrouting-bottom -> <binary>-snat
//	        <binary>-snat -> <binary>-float-snat (first rule)
package iptables

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
)

const (
	// TopChain is the filter chain shared by all novanet binaries, jumped to
	// first from FORWARD and OUTPUT.
	TopChain = "novanet-filter-top"
	// BottomChain is the nat chain shared by all novanet binaries, jumped to
	// last from POSTROUTING.
	BottomChain = "novanet-postrouting-bottom"
	// maxChainLen is the longest chain name iptables accepts.
	maxChainLen = 28
)

// ErrInvalidChain is returned (wrapped) for a bad or unknown chain name.
var ErrInvalidChain = errors.New("invalid chain")

var (
	binaryRe = regexp.MustCompile(`^[a-z][a-z0-9-]{0,15}$`)
	chainRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)
)

// builtin lists, per table, the built-in chains we wrap.
var builtin = map[Table][]string{
	Filter: {"INPUT", "OUTPUT", "FORWARD"},
	NAT:    {"PREROUTING", "OUTPUT", "POSTROUTING"},
}

// extra lists, per table, the wrapped chains that always exist.
var extra = map[Table][]string{
	Filter: {"local"},
	NAT:    {"snat", "float-snat"},
}

// jumpRule is a rule ensured with go-iptables rather than written by restore.
type jumpRule struct {
	chain  string // chain the rule lives in
	target string // full name of the chain jumped to
	shared string // if set, the rule lives in this shared chain
}

// Config configures a Manager.
type Config struct {
	// Binary is the name our chains are wrapped with: 1-16 characters of
	// [a-z0-9-], starting with a letter, e.g. "novanet-network".
	Binary string
	// Families lists the families to manage; nil means IPv4 and IPv6.
	Families []Family
	// Backend selects the iptables binaries; BackendDefault uses
	// "iptables"/"iptables-restore" as found on PATH.
	Backend Backend
	// NetNS is the path of the network namespace to work in (for example
	// /var/run/netns/NAME); empty means the caller's namespace.
	NetNS string
}

type tkey struct {
	fam   Family
	table Table
}

// chainState holds one chain's rules, rendered when added.
type chainState struct {
	lines []string // rendered rule arguments, in order
	set   map[string]struct{}
	body  string // cached restore lines, valid unless dirty
	dirty bool
}

func newChain() *chainState { return &chainState{set: map[string]struct{}{}, dirty: true} }

func (c *chainState) add(line string) {
	if _, ok := c.set[line]; ok {
		return
	}
	c.set[line] = struct{}{}
	c.lines = append(c.lines, line)
	c.dirty = true
}

func (c *chainState) remove(line string) {
	if _, ok := c.set[line]; !ok {
		return
	}
	delete(c.set, line)
	c.lines = slices.DeleteFunc(c.lines, func(l string) bool { return l == line })
	c.dirty = true
}

func (c *chainState) render(full string) string {
	if c.dirty {
		var b strings.Builder
		for _, l := range c.lines {
			b.WriteString("-A " + full + " " + l + "\n")
		}
		c.body = b.String()
		c.dirty = false
	}
	return c.body
}

// Manager holds the desired rules and applies them.
type Manager struct {
	mu       sync.Mutex
	binary   string
	families []Family
	run      runner
	chains   map[tkey]map[string]*chainState // short name -> state
	applied  map[tkey]map[string]string      // full name -> body as last written
	synced   map[tkey]bool                   // jumps ensured and stale chains known
	repairs  Repairs                         // drift found by read-backs, until TakeRepairs
}

// Repairs counts the drift a resynchronizing Apply found and repaired:
// rules of ours that were no longer in the kernel (a flushed chain, a
// deleted jump) and rules in our chains that we had not written. Only
// chains the manager had written before count: the first Apply of a
// process repairs silently.
type Repairs struct {
	Restored int
	Removed  int
}

// New returns a Manager using the real iptables binaries.
func New(cfg Config) (*Manager, error) {
	if err := validateConfig(&cfg); err != nil {
		return nil, err
	}
	r, err := newExecRunner(cfg.Backend, cfg.NetNS, cfg.Families)
	if err != nil {
		return nil, err
	}
	return newManager(cfg, r), nil
}

func validateConfig(cfg *Config) error {
	if !binaryRe.MatchString(cfg.Binary) {
		return fmt.Errorf("iptables: binary name %q: want 1-16 of [a-z0-9-] starting with a letter", cfg.Binary)
	}
	if cfg.Families == nil {
		cfg.Families = []Family{IPv4, IPv6}
	}
	for _, f := range cfg.Families {
		if f != IPv4 && f != IPv6 {
			return fmt.Errorf("iptables: unknown family %d", f)
		}
	}
	return nil
}

func newManager(cfg Config, r runner) *Manager {
	m := &Manager{
		binary:   cfg.Binary,
		families: slices.Clone(cfg.Families),
		run:      r,
		chains:   map[tkey]map[string]*chainState{},
		applied:  map[tkey]map[string]string{},
		synced:   map[tkey]bool{},
	}
	for _, f := range m.families {
		for _, t := range tables {
			cs := map[string]*chainState{}
			for _, c := range builtin[t] {
				cs[c] = newChain()
			}
			for _, c := range extra[t] {
				cs[c] = newChain()
			}
			m.chains[tkey{f, t}] = cs
		}
		// nova: the snat chain first jumps to float-snat.
		m.chains[tkey{f, NAT}]["snat"].add("-j " + m.Wrap("float-snat"))
	}
	return m
}

// Binary returns the name our chains are wrapped with.
func (m *Manager) Binary() string { return m.binary }

// Wrap returns the full name of our chain short, e.g. "novanet-network-snat".
func (m *Manager) Wrap(short string) string { return m.binary + "-" + short }

func (m *Manager) table(fam Family, t Table) (map[string]*chainState, error) {
	cs, ok := m.chains[tkey{fam, t}]
	if !ok {
		return nil, fmt.Errorf("iptables: %s %s: not managed", fam, t)
	}
	return cs, nil
}

func (m *Manager) fixed(t Table, short string) bool {
	return slices.Contains(builtin[t], short) || slices.Contains(extra[t], short)
}

// AddChain adds our (wrapped) chain short to a table. Adding an existing
// chain is a no-op.
func (m *Manager) AddChain(fam Family, t Table, short string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cs, err := m.table(fam, t)
	if err != nil {
		return err
	}
	if !chainRe.MatchString(short) || len(m.Wrap(short)) > maxChainLen {
		return fmt.Errorf("%w %q: want [A-Za-z0-9_-], at most %d characters wrapped", ErrInvalidChain, short, maxChainLen)
	}
	if _, ok := cs[short]; !ok {
		cs[short] = newChain()
	}
	return nil
}

// RemoveChain removes our chain short and every rule jumping to it. The
// built-in wrapped chains cannot be removed.
func (m *Manager) RemoveChain(fam Family, t Table, short string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cs, err := m.table(fam, t)
	if err != nil {
		return err
	}
	if m.fixed(t, short) {
		return fmt.Errorf("%w %q: built-in wrapped chain", ErrInvalidChain, short)
	}
	delete(cs, short)
	jump := "-j " + m.Wrap(short)
	for _, c := range cs {
		for _, l := range slices.Clone(c.lines) {
			if l == jump || strings.HasSuffix(l, " "+jump) {
				c.remove(l)
			}
		}
	}
	return nil
}

// AddRule appends r to our chain short. Adding a rule that is already in the
// chain is a no-op. The rule is validated here.
func (m *Manager) AddRule(fam Family, t Table, short string, r Rule) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, line, err := m.lookup(fam, t, short, r)
	if err != nil {
		return err
	}
	c.add(line)
	return nil
}

// RemoveRule removes r from our chain short. Removing a missing rule is a
// no-op.
func (m *Manager) RemoveRule(fam Family, t Table, short string, r Rule) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, line, err := m.lookup(fam, t, short, r)
	if err != nil {
		return err
	}
	c.remove(line)
	return nil
}

// SetRules replaces the rules of our chain short with rules, in order.
func (m *Manager) SetRules(fam Family, t Table, short string, rules []Rule) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	fresh := newChain()
	for _, r := range rules {
		_, line, err := m.lookup(fam, t, short, r)
		if err != nil {
			return err
		}
		fresh.add(line)
	}
	cs, _ := m.table(fam, t)
	cs[short] = fresh
	return nil
}

func (m *Manager) lookup(fam Family, t Table, short string, r Rule) (*chainState, string, error) {
	cs, err := m.table(fam, t)
	if err != nil {
		return nil, "", err
	}
	c, ok := cs[short]
	if !ok {
		return nil, "", fmt.Errorf("%w %q: not in %s %s", ErrInvalidChain, short, fam, t)
	}
	line, err := m.renderRule(fam, t, r)
	if err != nil {
		return nil, "", fmt.Errorf("iptables: %s %s %s: %w", fam, t, m.Wrap(short), err)
	}
	return c, line, nil
}

func (m *Manager) renderRule(fam Family, t Table, r Rule) (string, error) {
	cs := m.chains[tkey{fam, t}]
	return r.render(fam, t, m.Wrap, func(c string) bool { _, ok := cs[c]; return ok })
}

// desired renders the chains of one table: full name -> body lines.
func (m *Manager) desired(k tkey) (map[string]string, error) {
	out := map[string]string{}
	for short, c := range m.chains[k] {
		full := m.Wrap(short)
		out[full] = c.render(full)
	}
	return out, nil
}

// Render returns the complete iptables-restore input for fam, as the first
// Apply would write it (without chains left over from an earlier run).
func (m *Manager) Render(fam Family) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	for _, t := range tables {
		k := tkey{fam, t}
		if _, ok := m.chains[k]; !ok {
			continue
		}
		want, err := m.desired(k)
		if err != nil {
			return "", err
		}
		writeTable(&b, t, want, nil, nil)
	}
	return b.String(), nil
}

// writeTable writes one table section. A chain whose new rules only append
// to, or only remove from, what was last written is patched with -A or -D
// lines; any other changed chain is declared (which creates or flushes it)
// and refilled. Deleted chains are declared (flushed) and removed with -X.
func writeTable(b *strings.Builder, t Table, want map[string]string, have map[string]string, deleted []string) {
	var changed, patched []string
	patches := map[string]string{}
	for name, body := range want {
		old, ok := have[name]
		if ok && old == body {
			continue
		}
		if p, ok := patch(old, body, ok); ok {
			patched = append(patched, name)
			patches[name] = p
			continue
		}
		changed = append(changed, name)
	}
	if len(changed) == 0 && len(deleted) == 0 && len(patched) == 0 {
		return
	}
	sort.Strings(changed)
	sort.Strings(patched)
	sort.Strings(deleted)
	b.WriteString("*" + string(t) + "\n")
	for _, name := range changed {
		b.WriteString(":" + name + " - [0:0]\n")
	}
	for _, name := range deleted {
		b.WriteString(":" + name + " - [0:0]\n")
	}
	for _, name := range patched {
		b.WriteString(patches[name])
	}
	for _, name := range changed {
		b.WriteString(want[name])
	}
	for _, name := range deleted {
		b.WriteString("-X " + name + "\n")
	}
	b.WriteString("COMMIT\n")
}

// patch returns the -A or -D lines turning the chain body old into body,
// when body only appends rules to old or only removes rules from it.
func patch(old, body string, known bool) (string, bool) {
	if !known || old == "" || strings.HasPrefix(old, "\x00") {
		return "", false
	}
	if strings.HasPrefix(body, old) {
		return body[len(old):], true
	}
	if len(body) >= len(old) {
		return "", false
	}
	oldLines := strings.SplitAfter(old, "\n")
	newLines := strings.SplitAfter(body, "\n")
	var b strings.Builder
	j := 0
	for _, l := range oldLines {
		if l == "" {
			continue
		}
		if j < len(newLines) && newLines[j] == l {
			j++
			continue
		}
		b.WriteString("-D" + strings.TrimPrefix(l, "-A"))
	}
	if j < len(newLines) && newLines[j] != "" {
		return "", false // body is not a subsequence of old
	}
	return b.String(), true
}

// jumps lists the rules ensured with go-iptables for a table, in the order
// they should appear.
func (m *Manager) jumps(t Table) []jumpRule {
	switch t {
	case Filter:
		return []jumpRule{
			{chain: "INPUT", target: m.Wrap("INPUT")},
			{chain: "OUTPUT", target: TopChain},
			{chain: "OUTPUT", target: m.Wrap("OUTPUT")},
			{chain: "FORWARD", target: TopChain},
			{chain: "FORWARD", target: m.Wrap("FORWARD")},
			{shared: TopChain, target: m.Wrap("local")},
		}
	case NAT:
		return []jumpRule{
			{chain: "PREROUTING", target: m.Wrap("PREROUTING")},
			{chain: "OUTPUT", target: m.Wrap("OUTPUT")},
			{chain: "POSTROUTING", target: m.Wrap("POSTROUTING")},
			{chain: "POSTROUTING", target: BottomChain},
			{shared: BottomChain, target: m.Wrap("snat")},
		}
	}
	return nil
}

func sharedChain(t Table) string {
	if t == Filter {
		return TopChain
	}
	return BottomChain
}

// Apply writes every chain that changed since the last successful Apply,
// with one iptables-restore --noflush call per family, then ensures the
// jump rules. On the first Apply (and after Resync) it also removes chains
// of ours left over from an earlier run and ensures the jumps.
func (m *Manager) Apply(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, fam := range m.families {
		if err := m.applyFamily(ctx, fam); err != nil {
			return err
		}
	}
	return nil
}

func (m *Manager) applyFamily(ctx context.Context, fam Family) error {
	var b strings.Builder
	wants := map[Table]map[string]string{}
	drift := map[Table]Repairs{}
	for _, t := range tables {
		k := tkey{fam, t}
		want, err := m.desired(k)
		if err != nil {
			return err
		}
		wants[t] = want
		have := m.applied[k]
		if !m.synced[k] {
			// Read back what is in the kernel: chains with our prefix that
			// we no longer want are deleted; the others are rewritten or
			// patched where they differ from what we want, and the drift
			// from what we last wrote is counted.
			existing, err := m.run.save(ctx, fam, t)
			if err != nil {
				return fmt.Errorf("iptables: %s %s: read back: %w", fam, t, err)
			}
			have = map[string]string{}
			for c, rules := range existing {
				if strings.HasPrefix(c, m.binary+"-") {
					have[c] = renderLines(c, rules)
				}
			}
			drift[t] = countDrift(m.applied[k], have)
		}
		var deleted []string
		for name := range have {
			if _, ok := want[name]; !ok {
				deleted = append(deleted, name)
			}
		}
		writeTable(&b, t, want, have, deleted)
	}
	if b.Len() > 0 {
		if err := m.run.restore(ctx, fam, []byte(b.String())); err != nil {
			for _, t := range tables {
				// The kernel state is unknown now: relearn it next time.
				m.synced[tkey{fam, t}] = false
			}
			return fmt.Errorf("iptables: %s restore: %w", fam, err)
		}
	}
	for _, t := range tables {
		k := tkey{fam, t}
		known := m.applied[k] != nil
		m.applied[k] = wants[t]
		if m.synced[k] {
			continue
		}
		m.repairs.Restored += drift[t].Restored
		m.repairs.Removed += drift[t].Removed
		added, err := m.ensureJumps(ctx, fam, t)
		if known {
			m.repairs.Restored += added
		}
		if err != nil {
			return err
		}
		m.synced[k] = true
	}
	return nil
}

// renderLines renders rules (their arguments) as the body of chain.
func renderLines(chain string, rules []string) string {
	var b strings.Builder
	for _, r := range rules {
		b.WriteString("-A " + chain + " " + r + "\n")
	}
	return b.String()
}

// countDrift compares the chains as last written (nil: unknown) with the
// chains read back: rules missing from the kernel are restored, rules we
// did not write are removed.
func countDrift(written, kernel map[string]string) Repairs {
	var r Repairs
	for name, body := range written {
		want := lineCounts(body)
		got := lineCounts(kernel[name])
		for l, n := range want {
			r.Restored += max(0, n-got[l])
		}
		for l, n := range got {
			r.Removed += max(0, n-want[l])
		}
	}
	return r
}

func lineCounts(body string) map[string]int {
	out := map[string]int{}
	for _, l := range strings.Split(body, "\n") {
		if l != "" {
			out[l]++
		}
	}
	return out
}

// TakeRepairs returns the drift repaired by Applies since the last call,
// and starts counting again.
func (m *Manager) TakeRepairs() Repairs {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.repairs
	m.repairs = Repairs{}
	return r
}

// ensureJumps ensures the jump rules of t and returns how many it added.
func (m *Manager) ensureJumps(ctx context.Context, fam Family, t Table) (int, error) {
	shared := sharedChain(t)
	if err := m.run.ensureChain(ctx, fam, t, shared); err != nil {
		return 0, fmt.Errorf("iptables: %s %s chain %s: %w", fam, t, shared, err)
	}
	added := 0
	pos := map[string]int{}
	for _, j := range m.jumps(t) {
		chain := j.chain
		if j.shared != "" {
			chain = j.shared
		}
		pos[chain]++
		spec := []string{"-j", j.target}
		ok, err := m.run.exists(ctx, fam, t, chain, spec)
		if err != nil {
			return added, fmt.Errorf("iptables: %s %s %s -j %s: %w", fam, t, chain, j.target, err)
		}
		if ok {
			continue
		}
		if j.shared != "" || chain == "POSTROUTING" && j.target == BottomChain {
			err = m.run.appendRule(ctx, fam, t, chain, spec)
		} else {
			err = m.run.insert(ctx, fam, t, chain, pos[chain], spec)
		}
		if err != nil {
			return added, fmt.Errorf("iptables: %s %s %s -j %s: %w", fam, t, chain, j.target, err)
		}
		added++
	}
	return added, nil
}

// Resync makes the next Apply read our chains back from the kernel
// (iptables-save), rewrite or patch every chain that differs from what is
// wanted, and re-ensure the jump rules (for example after someone flushed
// a chain or the built-in chains). What it finds changed since the last
// Apply is counted (TakeRepairs).
func (m *Manager) Resync() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.synced)
}

// Teardown removes everything of ours: the jump rules, our rule in the
// shared chains (and a shared chain that is then empty, with the jumps to
// it), and every chain with our prefix. The in-memory rules are kept, so a
// later Apply recreates them.
func (m *Manager) Teardown(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, fam := range m.families {
		var b strings.Builder
		for _, t := range tables {
			k := tkey{fam, t}
			m.synced[k] = false
			delete(m.applied, k)
			if err := m.removeJumps(ctx, fam, t); err != nil {
				errs = append(errs, err)
				continue
			}
			existing, err := m.run.listChains(ctx, fam, t)
			if err != nil {
				errs = append(errs, fmt.Errorf("iptables: %s %s: %w", fam, t, err))
				continue
			}
			var ours []string
			for _, c := range existing {
				if strings.HasPrefix(c, m.binary+"-") {
					ours = append(ours, c)
				}
			}
			writeTable(&b, t, nil, nil, ours)
		}
		if b.Len() > 0 {
			if err := m.run.restore(ctx, fam, []byte(b.String())); err != nil {
				errs = append(errs, fmt.Errorf("iptables: %s teardown restore: %w", fam, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) removeJumps(ctx context.Context, fam Family, t Table) error {
	shared := sharedChain(t)
	sharedExists := false
	chains, err := m.run.listChains(ctx, fam, t)
	if err != nil {
		return fmt.Errorf("iptables: %s %s: %w", fam, t, err)
	}
	sharedExists = slices.Contains(chains, shared)
	for _, j := range m.jumps(t) {
		if j.target == shared {
			continue // only if the shared chain becomes empty, below
		}
		chain := j.chain
		if j.shared != "" {
			if !sharedExists {
				continue
			}
			chain = j.shared
		}
		if err := m.run.delete(ctx, fam, t, chain, []string{"-j", j.target}); err != nil {
			return fmt.Errorf("iptables: %s %s %s -j %s: delete: %w", fam, t, chain, j.target, err)
		}
	}
	if !sharedExists {
		return nil
	}
	rules, err := m.run.listRules(ctx, fam, t, shared)
	if err != nil {
		return fmt.Errorf("iptables: %s %s %s: %w", fam, t, shared, err)
	}
	if len(rules) > 0 {
		return nil // another binary still uses the shared chain
	}
	for _, j := range m.jumps(t) {
		if j.target != shared {
			continue
		}
		if err := m.run.delete(ctx, fam, t, j.chain, []string{"-j", shared}); err != nil {
			return fmt.Errorf("iptables: %s %s %s -j %s: delete: %w", fam, t, j.chain, shared, err)
		}
	}
	if err := m.run.deleteChain(ctx, fam, t, shared); err != nil {
		return fmt.Errorf("iptables: %s %s chain %s: delete: %w", fam, t, shared, err)
	}
	return nil
}
