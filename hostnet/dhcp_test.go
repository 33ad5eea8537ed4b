package hostnet_test

import (
	"os"
	"path/filepath"
	"testing"

	"novanet/hostnet"
)

func TestDHCPServersStop(t *testing.T) {
	dir := t.TempDir()
	s, err := hostnet.NewDHCPServers(dir)
	if err != nil {
		t.Fatal(err)
	}
	if did, err := s.Stop(t.Context(), "br100"); err != nil || did {
		t.Errorf("Stop of nothing = %v, %v", did, err)
	}
	// Files left by a dnsmasq that is gone (a stale pid file included).
	sub := filepath.Join(dir, "br100")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "dnsmasq.pid"), []byte("999999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if did, err := s.Stop(t.Context(), "br100"); err != nil || !did {
		t.Errorf("Stop of leftovers = %v, %v", did, err)
	}
	if _, err := os.Stat(sub); !os.IsNotExist(err) {
		t.Errorf("directory left: %v", err)
	}
	for _, bad := range []string{"", "..", "a/b", "br 1"} {
		if _, err := s.Stop(t.Context(), bad); err == nil {
			t.Errorf("Stop(%q) succeeded", bad)
		}
	}
	if _, err := hostnet.NewDHCPServers("rel"); err == nil {
		t.Error("NewDHCPServers with a relative dir succeeded")
	}
}
