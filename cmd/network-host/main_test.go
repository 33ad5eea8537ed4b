package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host.env")
	if err := os.WriteFile(path, []byte("# comment\nNOVANET_DRIVER=vlan\nNOVANET_HOST=\"from-file\"\n\nNOVANET_DHCP_DOMAIN=file.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := newServeCmd(func(k string) (string, bool) {
		if k == "NOVANET_HOST" {
			return "from-env", true
		}
		return "", false
	})
	fs := cmd.Flags()
	if err := fs.Parse([]string{"--config", path, "--dhcp-domain", "flag.example"}); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(fs, func(k string) (string, bool) {
		if k == "NOVANET_HOST" {
			return "from-env", true
		}
		return "", false
	}); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{"driver": "vlan", "host": "from-env", "dhcp-domain": "flag.example"} {
		if got, _ := fs.GetString(flag); got != want {
			t.Errorf("--%s = %q, want %q (flag > env > file)", flag, got, want)
		}
	}
}

func TestConfigErrorsNameTheLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host.env")
	if err := os.WriteFile(path, []byte("NOVANET_DRIVER=vlan\nDRIVER=flat\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readConfig(path); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("readConfig: %v, want an error naming line 2", err)
	}
	var stderr bytes.Buffer
	code := run(t.Context(), []string{"serve", "--routing-source-ip", "300.1.1.1", "--dhcp-dir", t.TempDir()}, &stderr, &stderr,
		func(string) (string, bool) { return "", false })
	if code != 1 || !strings.Contains(stderr.String(), `--routing-source-ip "300.1.1.1"`) {
		t.Errorf("bad address: exit %d, %q", code, stderr.String())
	}
}

func FuzzReadConfig(f *testing.F) {
	f.Add("NOVANET_DRIVER=vlan\n# x\nNOVANET_HOST=\"a\"\n")
	f.Add("=\n")
	f.Fuzz(func(t *testing.T, data string) {
		path := filepath.Join(t.TempDir(), "c")
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		m, err := readConfig(path)
		if err != nil {
			return
		}
		for k := range m {
			if !strings.HasPrefix(k, envPrefix) {
				t.Fatalf("key %q accepted without the %s prefix", k, envPrefix)
			}
		}
	})
}
