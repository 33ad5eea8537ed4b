package main

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"novanet/internal/testenv"
	"novanet/manager"
)

// readmeStep is one "$ bin/netadm ..." line of the README's First steps
// and the output printed under it.
type readmeStep struct {
	line  int // in README.md
	cmd   string
	want  []string
	check bool // false when the line ends in a comment instead of output
}

// firstSteps reads the console blocks of README.md's "First steps", except
// those under "### Hypervisors", which need a running agent.
func firstSteps(t *testing.T) []readmeStep {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var (
		steps               []readmeStep
		in, block, skipping bool
	)
	for i, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "## "):
			in = l == "## First steps"
			continue
		case !in:
			continue
		case strings.HasPrefix(l, "### "):
			skipping = strings.HasPrefix(l, "### Hypervisors")
			continue
		case l == "```console":
			block = true
			continue
		case l == "```":
			block = false
			continue
		case !block || skipping:
			continue
		}
		if cmd, ok := strings.CutPrefix(l, "$ "); ok {
			s := readmeStep{line: i + 1, cmd: cmd, check: true}
			if j := strings.Index(cmd, " #"); j >= 0 {
				s.cmd, s.check = strings.TrimSpace(cmd[:j]), false
			}
			steps = append(steps, s)
			continue
		}
		if len(steps) == 0 {
			t.Fatalf("README.md:%d: output before any command: %q", i+1, l)
		}
		steps[len(steps)-1].want = append(steps[len(steps)-1].want, l)
	}
	return steps
}

var (
	uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	timeRE = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)
	macRE  = regexp.MustCompile(`\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b`)
)

// mask replaces what differs from run to run (UUIDs, times, random MACs) by text of the
// same width, so that table columns still line up.
func mask(s string) string {
	s = uuidRE.ReplaceAllString(s, "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")
	s = macRE.ReplaceAllString(s, "xx:xx:xx:xx:xx:xx")
	return timeRE.ReplaceAllString(s, "YYYY-MM-DDTHH:MM:SSZ")
}

// matchLines compares output with the README's, where a line "..." stands
// for any number of lines.
func matchLines(got, want []string) bool {
	if len(want) == 0 {
		return len(got) == 0
	}
	if strings.TrimSpace(want[0]) == "..." {
		for i := 0; i <= len(got); i++ {
			if matchLines(got[i:], want[1:]) {
				return true
			}
		}
		return false
	}
	return len(got) > 0 && mask(got[0]) == mask(want[0]) && matchLines(got[1:], want[1:])
}

// TestReadmeFirstSteps runs the README's First steps with netadm against a
// manager, command by command, and compares what each prints (stdout and
// stderr) and its exit status with the README.
func TestReadmeFirstSteps(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	steps := firstSteps(t)
	if len(steps) < 10 {
		t.Fatalf("found %d steps in README.md's First steps", len(steps))
	}
	last := 0
	for _, s := range steps {
		var got []string
		switch {
		case s.cmd == "echo $?":
			got = []string{strconv.Itoa(last)}
		case strings.HasPrefix(s.cmd, "bin/netadm "):
			args := strings.Fields(strings.TrimPrefix(s.cmd, "bin/netadm "))
			code, out, errs := netadm(t, env, args...)
			last = code
			got = strings.Split(strings.TrimSuffix(out+errs, "\n"), "\n")
			if out+errs == "" {
				got = nil
			}
		default:
			t.Fatalf("README.md:%d: not a netadm command: %q", s.line, s.cmd)
		}
		if s.check && !matchLines(got, s.want) {
			t.Errorf("README.md:%d: $ %s\nprinted:\n%s\nREADME says:\n%s", s.line, s.cmd,
				strings.Join(got, "\n"), strings.Join(s.want, "\n"))
		}
	}
}
