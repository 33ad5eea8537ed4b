// Package nstest provides throwaway network namespaces for privileged tests.
//
// Every namespace is named after the test and the process id
// (nn-<test>-<pid>-<seq>), is created fresh, and is deleted (after killing
// any process still inside it) by t.Cleanup. A test binary killed before
// its cleanups ran (go test's -timeout, say) leaves its namespaces behind:
// the first New of every later run sweeps them (Sweep). Nothing in this
// package touches the caller's own namespace.
package nstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"novanet/linuxnet/nsrun"
)

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces (run the tests as root, as CI does)")
	}
}

// NS is a named network namespace that lives for the duration of a test.
type NS struct {
	Name   string          // name under /var/run/netns
	Path   string          // path of the bind mount, usable with nsrun.Do
	Handle *netlink.Handle // netlink handle bound to the namespace
}

var seq atomic.Int64

// New creates a named network namespace with lo up and registers its
// deletion with t.Cleanup. It skips the test when not root.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	sweepOnce.Do(func() {
		for _, err := range Sweep() {
			t.Logf("sweeping leftover namespaces: %v", err)
		}
	})
	name := uniqueName(t.Name())

	created := make(chan error, 1)
	var handle netns.NsHandle
	go func() {
		// NewNamed switches the thread into the new namespace; switch back
		// and only then unlock. On failure the thread stays locked and is
		// discarded when this goroutine exits.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			created <- err
			return
		}
		defer orig.Close()
		h, err := netns.NewNamed(name)
		handle = h
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		created <- err
	}()
	if err := <-created; err != nil {
		t.Fatalf("netns %s: create: %v", name, err)
	}
	ns := &NS{Name: name, Path: filepath.Join("/var/run/netns", name)}
	t.Cleanup(func() {
		ns.killAll(t)
		if ns.Handle != nil {
			ns.Handle.Close()
		}
		handle.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("netns %s: delete: %v", name, err)
		}
	})
	h, err := netlink.NewHandleAt(handle)
	if err != nil {
		t.Fatalf("netns %s: netlink handle: %v", name, err)
	}
	ns.Handle = h
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatalf("netns %s: lo: %v", name, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("netns %s: lo up: %v", name, err)
	}
	return ns
}

func uniqueName(testName string) string {
	var b strings.Builder
	for _, r := range testName {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 40 {
		s = s[:40]
	}
	return fmt.Sprintf("nn-%s-%d-%d", s, os.Getpid(), seq.Add(1))
}

var sweepOnce sync.Once

// leftover matches the names New makes; the group is the process id.
var leftover = regexp.MustCompile(`^nn-.*-([0-9]+)-[0-9]+$`)

// Sweep deletes the namespaces New made in processes that are gone (test
// binaries killed before their cleanups ran), after killing every process
// still inside them (a dnsmasq, a udhcpc), and returns what it could not
// do. Namespaces of live processes, and any not named by New, are left
// alone. New calls it once per process.
func Sweep() []error {
	ents, err := os.ReadDir("/var/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, e := range ents {
		m := leftover.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		ns := &NS{Name: e.Name(), Path: filepath.Join("/var/run/netns", e.Name())}
		if err := ns.killEverything(); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := netns.DeleteNamed(e.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("netns %s: delete: %w", e.Name(), err))
		}
	}
	return errs
}

// alive tells whether process pid exists (and is not a zombie).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return (err == nil || errors.Is(err, syscall.EPERM)) && !zombie(pid)
}

// killEverything kills every process in the namespace and waits (up to
// 5s) until none is left alive.
func (n *NS) killEverything() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := n.Pids()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns %s: processes %v still alive after SIGKILL", n.Name, pids)
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Do runs fn with the calling goroutine's work moved into the namespace.
func (n *NS) Do(fn func() error) error { return nsrun.Do(n.Path, fn) }

// Command returns a command that runs name inside the namespace via
// "ip netns exec".
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its combined output.
// It fails the test when the command fails.
func (n *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("netns %s: %s %s: %v\n%s", n.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Pids lists the live processes in the namespace, leaving out zombies
// (already dead, waiting for init to reap them) and the test process itself.
func (n *NS) Pids() ([]int, error) {
	all, err := n.allPids()
	if err != nil {
		return nil, err
	}
	var live []int
	for _, p := range all {
		if p == os.Getpid() || zombie(p) {
			continue
		}
		live = append(live, p)
	}
	return live, nil
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // gone
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

func (n *NS) allPids() ([]int, error) {
	out, err := exec.Command("ip", "netns", "pids", n.Name).Output()
	if err != nil {
		return nil, fmt.Errorf("netns %s: pids: %w", n.Name, err)
	}
	var pids []int
	for _, f := range bytes.Fields(out) {
		p, err := strconv.Atoi(string(f))
		if err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// killAll kills processes the test left in the namespace and reports them,
// because a test that leaks a process is a bug.
func (n *NS) killAll(t testing.TB) {
	pids, err := n.Pids()
	if err != nil {
		t.Logf("%v", err)
		return
	}
	for _, p := range pids {
		t.Errorf("netns %s: process %d left running; killing it", n.Name, p)
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
}

// Eventually polls cond every 50ms until it returns true or the deadline
// passes, then fails the test with msg.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %s", timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
