package envflags

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestApply(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	url := fs.String("database-url", "", "")
	n := fs.Int("workers", 1, "")
	mode := fs.String("network-mode", "flat", "")
	if err := fs.Parse([]string{"--network-mode", "vlan"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"P_DATABASE_URL": "postgres://x", "P_WORKERS": "8", "P_NETWORK_MODE": "flat"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := Apply(fs, "P_", lookup); err != nil {
		t.Fatal(err)
	}
	if *url != "postgres://x" || *n != 8 || *mode != "vlan" {
		t.Errorf("got %q %d %q", *url, *n, *mode)
	}
	env["P_WORKERS"] = "many"
	fs2 := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs2.Int("workers", 1, "")
	err := Apply(fs2, "P_", lookup)
	if err == nil || !strings.Contains(err.Error(), `P_WORKERS="many"`) {
		t.Errorf("bad value: %v", err)
	}
}

func TestApplyEmptyValue(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	listen := fs.String("http-listen", "127.0.0.1:9696", "")
	if err := Apply(fs, "P_", func(k string) (string, bool) { return "", k == "P_HTTP_LISTEN" }); err != nil {
		t.Fatal(err)
	}
	if *listen != "" {
		t.Errorf("P_HTTP_LISTEN= left %q", *listen)
	}
}
