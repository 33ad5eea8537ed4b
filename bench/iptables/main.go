// Command iptables measures the iptables manager (run as root; "make bench"):
// the time to apply 10,000 floating-IP NAT rule pairs in one
// iptables-restore against adding the same rules one by one through
// go-iptables, measured in the same run, and the time of one incremental
// change with the 10,000 pairs present. Everything happens in throwaway
// network namespaces that are deleted on exit, even on error or Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	goipt "github.com/coreos/go-iptables/iptables"

	"novanet/bench/internal/floatpairs"
	"novanet/linuxnet/iptables"
	"novanet/linuxnet/nsrun"
)

const binary = "nn-bench"

func main() {
	pairs := flag.Int("pairs", 10000, "floating IP rule pairs")
	budget := flag.Duration("one-by-one-budget", 60*time.Second, "time allowed for the one-by-one run before extrapolating")
	flag.Parse()
	if err := run(*pairs, *budget); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type namespaces struct{ names []string }

func (n *namespaces) add(name string) (string, error) {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return "", fmt.Errorf("netns %s: add: %w: %s", name, err, out)
	}
	n.names = append(n.names, name)
	return "/var/run/netns/" + name, nil
}

func (n *namespaces) cleanup() {
	for _, name := range n.names {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: netns %s: delete: %v: %s\n", name, err, out)
		}
	}
	n.names = nil
}

func run(pairs int, budget time.Duration) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: creates network namespaces")
	}
	var ns namespaces
	defer ns.cleanup()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		ns.cleanup()
		os.Exit(130)
	}()
	ctx := context.Background()
	tag := fmt.Sprintf("nn-bench-%d", os.Getpid())

	// 1. All pairs in one restore.
	pathA, err := ns.add(tag + "-restore")
	if err != nil {
		return err
	}
	m, err := iptables.New(iptables.Config{Binary: binary, Families: []iptables.Family{iptables.IPv4}, NetNS: pathA})
	if err != nil {
		return err
	}
	for i := 0; i < pairs; i++ {
		if err := floatpairs.Add(m, i); err != nil {
			return err
		}
	}
	start := time.Now()
	if err := m.Apply(ctx); err != nil {
		return err
	}
	restore := time.Since(start)

	// 2. One incremental change with all pairs present.
	if err := floatpairs.Add(m, pairs); err != nil {
		return err
	}
	start = time.Now()
	if err := m.Apply(ctx); err != nil {
		return err
	}
	incr := time.Since(start)

	// 3. The same rules one by one through go-iptables, in a fresh namespace.
	pathB, err := ns.add(tag + "-onebyone")
	if err != nil {
		return err
	}
	ipt, err := goipt.New(goipt.IPFamily(goipt.ProtocolIPv4), goipt.Timeout(5))
	if err != nil {
		return err
	}
	pre, snat := binary+"-PREROUTING", binary+"-float-snat"
	done := 0
	var oneByOne time.Duration
	err = nsrun.Do(pathB, func() error {
		for _, c := range []string{pre, snat} {
			if err := ipt.NewChain("nat", c); err != nil {
				return err
			}
		}
		start := time.Now()
		for i := 0; i < pairs; i++ {
			fl, fx := floatpairs.Pair(i)
			if err := ipt.Append("nat", pre, "-d", fl.String()+"/32", "-j", "DNAT", "--to-destination", fx.String()); err != nil {
				return err
			}
			if err := ipt.Append("nat", snat, "-s", fx.String()+"/32", "-j", "SNAT", "--to-source", fl.String()); err != nil {
				return err
			}
			done = i + 1
			if time.Since(start) > budget {
				break
			}
		}
		oneByOne = time.Since(start)
		return nil
	})
	if err != nil {
		return fmt.Errorf("one by one after %d pairs: %w", done, err)
	}
	note := ""
	if done < pairs {
		measured := oneByOne
		oneByOne = time.Duration(float64(oneByOne) * float64(pairs) / float64(done))
		note = fmt.Sprintf(" (extrapolated linearly from %d pairs in %.1fs; per-rule cost grows with the ruleset, so this underestimates)", done, measured.Seconds())
	}
	fmt.Printf("iptables: restore %d pairs: %.2fs | go-iptables one by one: %.1fs%s | ratio %.0fx\n",
		pairs, restore.Seconds(), oneByOne.Seconds(), note, oneByOne.Seconds()/restore.Seconds())
	fmt.Printf("iptables: incremental change (1 pair added with %d present: one restore appending 2 rules): %.3fs\n", pairs, incr.Seconds())
	return nil
}
