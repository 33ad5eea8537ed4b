// Package deploy holds systemd units and example configuration; this test
// checks them against the binaries they start.
package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// build compiles the commands into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	// nats-server at the version go.mod pins, the embedded server's.
	cmd := exec.Command("go", "build", "-o", bin+"/", "novanet/cmd/network-manager", "novanet/cmd/network-host",
		"github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestUnitsVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian package systemd)")
	}
	bin := build(t)
	dir := t.TempDir()
	units, _ := filepath.Glob("systemd/*.service")
	if len(units) != 3 {
		t.Fatalf("units: %v", units)
	}
	var paths []string
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		// The units name /usr/local/bin, where "make install" puts the
		// binaries; point them at the ones just built.
		text := strings.ReplaceAll(string(b), "/usr/local/bin/", bin+"/")
		p := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command(sa, append([]string{"verify"}, paths...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestExampleConfig checks that every variable in the example environment
// files is one the binary reads, so the examples cannot drift from the code.
func TestExampleConfig(t *testing.T) {
	bin := build(t)
	for file, args := range map[string][]string{
		"network-manager.env.example": {filepath.Join(bin, "network-manager"), "serve", "--help"},
		"network-host.env.example":    {filepath.Join(bin, "network-host"), "serve", "--help"},
	} {
		help, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(`^#?(NOVANET_[A-Z0-9_]+)=`)
		sc := bufio.NewScanner(f)
		n := 0
		for sc.Scan() {
			m := re.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			n++
			if !strings.Contains(string(help), "(env "+m[1]+")") {
				t.Errorf("%s sets %s, which %s does not read", file, m[1], strings.Join(args[:2], " "))
			}
		}
		f.Close()
		if n == 0 {
			t.Errorf("%s sets no variable", file)
		}
	}
}
