package nstest_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"novanet/linuxnet/nstest"
)

// helperEnv makes the test binary, run again, play a test run of its own.
const helperEnv = "NSTEST_SWEEP_HELPER"

// TestSweepHelper is not a test: run by TestLeftoversSweptByALaterRun as
// a child test binary. "leave": make a namespace with a process in it,
// say so, and wait to be killed (as go test kills a binary at its
// -timeout, with no cleanup run). "later": a later run's first namespace.
func TestSweepHelper(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "leave":
		ns := nstest.New(t)
		cmd := ns.Command(context.Background(), "sleep", "600")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		nstest.Eventually(t, 10*time.Second, "sleep in "+ns.Name, func() bool {
			ps, _ := ns.Pids()
			return len(ps) == 1
		})
		ps, _ := ns.Pids()
		if err := os.WriteFile(os.Getenv(helperEnv+"_OUT"), fmt.Appendf(nil, "%s %d", ns.Name, ps[0]), 0o644); err != nil {
			t.Fatal(err)
		}
		select {}
	case "later":
		nstest.New(t)
	default:
		t.Skip("helper of TestLeftoversSweptByALaterRun")
	}
}

func helper(t *testing.T, mode, out string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestSweepHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperEnv+"_OUT="+out)
	return cmd
}

// A test binary killed in the middle of a test leaves its namespace and
// the processes in it; the next run's first New removes both.
func TestLeftoversSweptByALaterRun(t *testing.T) {
	nstest.RequireRoot(t)
	out := filepath.Join(t.TempDir(), "left")
	first := helper(t, "leave", out)
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	var name string
	var pid int
	nstest.Eventually(t, 30*time.Second, "the first run made its namespace", func() bool {
		b, err := os.ReadFile(out)
		if err != nil {
			return false
		}
		f := strings.Fields(string(b))
		if len(f) != 2 {
			return false
		}
		name = f[0]
		pid, _ = strconv.Atoi(f[1])
		return true
	})
	_ = first.Process.Kill()
	_ = first.Wait()
	path := filepath.Join("/var/run/netns", name)
	t.Cleanup(func() { // in case the sweep fails
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = exec.Command("ip", "netns", "delete", name).Run()
	})
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the killed run left no namespace %s: %v", name, err)
	}

	if b, err := helper(t, "later", out).CombinedOutput(); err != nil {
		t.Fatalf("later run: %v\n%s", err, b)
	}
	if _, err := os.Stat(path); err == nil {
		t.Errorf("namespace %s of the killed run still there after a later run", name)
	}
	if alive(pid) {
		t.Errorf("process %d left in %s still alive after a later run", pid, name)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}
