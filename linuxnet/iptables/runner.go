package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	goipt "github.com/coreos/go-iptables/iptables"

	"novanet/linuxnet/nsrun"
)

// runner is what the manager needs from the system. execRunner is the real
// one; Fake keeps the tables in memory.
type runner interface {
	// restore feeds input to iptables-restore --noflush for fam.
	restore(ctx context.Context, fam Family, input []byte) error
	listChains(ctx context.Context, fam Family, t Table) ([]string, error)
	// save reads table t back (iptables-save -t): every chain, with its
	// rules' arguments in order (what follows "-A <chain> ").
	save(ctx context.Context, fam Family, t Table) (map[string][]string, error)
	// listRules returns the rules of chain as "-A chain ..." lines.
	listRules(ctx context.Context, fam Family, t Table, chain string) ([]string, error)
	exists(ctx context.Context, fam Family, t Table, chain string, spec []string) (bool, error)
	insert(ctx context.Context, fam Family, t Table, chain string, pos int, spec []string) error
	appendRule(ctx context.Context, fam Family, t Table, chain string, spec []string) error
	// delete removes a rule; a missing rule is not an error.
	delete(ctx context.Context, fam Family, t Table, chain string, spec []string) error
	// ensureChain creates chain unless it exists.
	ensureChain(ctx context.Context, fam Family, t Table, chain string) error
	deleteChain(ctx context.Context, fam Family, t Table, chain string) error
}

// Backend selects the iptables binaries.
type Backend int

const (
	// BackendDefault uses iptables, ip6tables, iptables-restore and
	// ip6tables-restore from PATH (whatever the alternatives point to).
	BackendDefault Backend = iota
	// BackendNFT uses the iptables-nft binaries (nf_tables kernel API).
	BackendNFT
	// BackendLegacy uses the iptables-legacy binaries (x_tables kernel API).
	BackendLegacy
)

// Commands returns the iptables and iptables-restore binaries for fam.
func (b Backend) Commands(fam Family) (iptables, restore string) {
	base := "iptables"
	if fam == IPv6 {
		base = "ip6tables"
	}
	switch b {
	case BackendNFT:
		return base + "-nft", base + "-nft-restore"
	case BackendLegacy:
		return base + "-legacy", base + "-legacy-restore"
	}
	return base, base + "-restore"
}

type execRunner struct {
	netns      string
	restoreCmd map[Family]string
	saveCmd    map[Family]string
	ipt        map[Family]*goipt.IPTables
}

func newExecRunner(b Backend, netns string, fams []Family) (*execRunner, error) {
	r := &execRunner{netns: netns, restoreCmd: map[Family]string{}, saveCmd: map[Family]string{}, ipt: map[Family]*goipt.IPTables{}}
	for _, f := range fams {
		bin, rest := b.Commands(f)
		path, err := exec.LookPath(rest)
		if err != nil {
			return nil, fmt.Errorf("iptables: %s: %w", rest, err)
		}
		r.restoreCmd[f] = path
		save := strings.TrimSuffix(rest, "-restore") + "-save"
		if path, err = exec.LookPath(save); err != nil {
			return nil, fmt.Errorf("iptables: %s: %w", save, err)
		}
		r.saveCmd[f] = path
		proto := goipt.ProtocolIPv4
		if f == IPv6 {
			proto = goipt.ProtocolIPv6
		}
		ipt, err := goipt.New(goipt.IPFamily(proto), goipt.Path(bin), goipt.Timeout(5))
		if err != nil {
			return nil, fmt.Errorf("iptables: %s: %w", bin, err)
		}
		r.ipt[f] = ipt
	}
	return r, nil
}

func (r *execRunner) do(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return nsrun.Do(r.netns, fn)
}

func (r *execRunner) restore(ctx context.Context, fam Family, input []byte) error {
	return r.do(ctx, func() error {
		cmd := exec.CommandContext(ctx, r.restoreCmd[fam], "--noflush", "--wait", "5")
		cmd.Stdin = bytes.NewReader(input)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w: %s", r.restoreCmd[fam], err, strings.TrimSpace(stderr.String()))
		}
		return nil
	})
}

func (r *execRunner) save(ctx context.Context, fam Family, t Table) (map[string][]string, error) {
	var out []byte
	err := r.do(ctx, func() error {
		cmd := exec.CommandContext(ctx, r.saveCmd[fam], "-t", string(t))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		var err error
		if out, err = cmd.Output(); err != nil {
			return fmt.Errorf("%s: %w: %s", r.saveCmd[fam], err, strings.TrimSpace(stderr.String()))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return parseSave(string(out)), nil
}

// parseSave returns the chains of one table of iptables-save output, each
// with its rules' arguments.
func parseSave(save string) map[string][]string {
	chains := map[string][]string{}
	for _, line := range strings.Split(save, "\n") {
		switch {
		case strings.HasPrefix(line, ":"):
			if f := strings.Fields(line[1:]); len(f) > 0 {
				if _, ok := chains[f[0]]; !ok {
					chains[f[0]] = nil
				}
			}
		case strings.HasPrefix(line, "-A "):
			chain, rest, _ := strings.Cut(line[3:], " ")
			chains[chain] = append(chains[chain], strings.TrimSpace(rest))
		}
	}
	return chains
}

func (r *execRunner) listChains(ctx context.Context, fam Family, t Table) (out []string, err error) {
	err = r.do(ctx, func() error {
		out, err = r.ipt[fam].ListChains(string(t))
		return err
	})
	return out, err
}

func (r *execRunner) listRules(ctx context.Context, fam Family, t Table, chain string) (out []string, err error) {
	err = r.do(ctx, func() error {
		all, err := r.ipt[fam].List(string(t), chain)
		for _, l := range all {
			if strings.HasPrefix(l, "-A ") {
				out = append(out, l)
			}
		}
		return err
	})
	return out, err
}

func (r *execRunner) exists(ctx context.Context, fam Family, t Table, chain string, spec []string) (ok bool, err error) {
	err = r.do(ctx, func() error {
		ok, err = r.ipt[fam].Exists(string(t), chain, spec...)
		return err
	})
	return ok, err
}

func (r *execRunner) insert(ctx context.Context, fam Family, t Table, chain string, pos int, spec []string) error {
	return r.do(ctx, func() error { return r.ipt[fam].Insert(string(t), chain, pos, spec...) })
}

func (r *execRunner) appendRule(ctx context.Context, fam Family, t Table, chain string, spec []string) error {
	return r.do(ctx, func() error { return r.ipt[fam].Append(string(t), chain, spec...) })
}

func (r *execRunner) delete(ctx context.Context, fam Family, t Table, chain string, spec []string) error {
	return r.do(ctx, func() error {
		err := r.ipt[fam].DeleteIfExists(string(t), chain, spec...)
		var e *goipt.Error
		if errors.As(err, &e) && e.IsNotExist() {
			return nil // the chain itself is gone
		}
		return err
	})
}

func (r *execRunner) ensureChain(ctx context.Context, fam Family, t Table, chain string) error {
	return r.do(ctx, func() error {
		ok, err := r.ipt[fam].ChainExists(string(t), chain)
		if err != nil || ok {
			return err
		}
		err = r.ipt[fam].NewChain(string(t), chain)
		if ok, _ := r.ipt[fam].ChainExists(string(t), chain); ok {
			return nil // created, possibly concurrently by another binary
		}
		return err
	})
}

func (r *execRunner) deleteChain(ctx context.Context, fam Family, t Table, chain string) error {
	return r.do(ctx, func() error { return r.ipt[fam].DeleteChain(string(t), chain) })
}
