package natsauth_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"novanet/internal/natsconn"
	"novanet/natsauth"
)

func TestStore(t *testing.T) {
	s := natsauth.Store{Dir: filepath.Join(t.TempDir(), "creds")}
	a, err := s.Add(natsauth.KindHost, "hv1")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(s.SeedPath(natsauth.KindHost, "hv1")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("seed file: %v %v", fi, err)
	}
	if fi, err := os.Stat(s.Dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory: %v %v", fi, err)
	}
	kp, err := natsconn.ReadSeed(s.SeedPath(natsauth.KindHost, "hv1"))
	if err != nil {
		t.Fatal(err)
	}
	if pub, _ := kp.PublicKey(); pub != a.PublicKey {
		t.Errorf("seed's key %s, identity's %s", pub, a.PublicKey)
	}
	if _, err := s.Add(natsauth.KindHost, "hv1"); !errors.Is(err, natsauth.ErrExists) {
		t.Errorf("second add: %v", err)
	}
	for _, bad := range []struct {
		kind natsauth.Kind
		name string
		want string
	}{
		{"admin", "x", `kind "admin"`}, {natsauth.KindHost, "hv.1", `"hv.1"`}, {natsauth.KindCompute, "", `""`},
		{natsauth.KindOperator, "../x", `"../x"`},
	} {
		if _, err := s.Add(bad.kind, bad.name); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("add %s %q: %v, want %s", bad.kind, bad.name, err, bad.want)
		}
	}
	// Ensure keeps an identity, and makes a missing one.
	if again, err := s.Ensure(natsauth.KindHost, "hv1"); err != nil || again != a {
		t.Errorf("ensure hv1: %+v %v, want %+v", again, err, a)
	}
	op, err := s.Ensure(natsauth.KindOperator, "admin")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := s.List()
	if err != nil || len(ids) != 2 || ids[0] != a || ids[1] != op {
		t.Errorf("list: %+v %v", ids, err)
	}
	// The configuration lists both, and nats-server reads it.
	opts, err := server.ProcessConfigFile(s.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Nkeys) != 2 {
		t.Fatalf("configuration users: %+v", opts.Nkeys)
	}
	for _, u := range opts.Nkeys {
		if u.Permissions == nil || u.Permissions.Subscribe == nil || len(u.Permissions.Subscribe.Allow) == 0 {
			t.Errorf("user %s has no subscribe permissions", u.Nkey)
		}
	}
	// Without its seed, an identity cannot be ensured (the embedded server
	// could not connect as it).
	if err := os.Remove(s.SeedPath(natsauth.KindHost, "hv1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ensure(natsauth.KindHost, "hv1"); err == nil {
		t.Error("ensure without a seed")
	}
	if err := s.Revoke(natsauth.KindHost, "hv1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(natsauth.KindHost, "hv1"); !errors.Is(err, natsauth.ErrNotFound) {
		t.Errorf("second revoke: %v", err)
	}
	if opts, err := server.ProcessConfigFile(s.ConfigPath()); err != nil || len(opts.Nkeys) != 1 || opts.Nkeys[0].Nkey != op.PublicKey {
		t.Errorf("configuration after revoke: %+v %v", opts, err)
	}
	// A stray file in the directory is an error, not a silent skip.
	if err := os.WriteFile(filepath.Join(s.Dir, "host.hv2.pub"), []byte("not a key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteConfig(); err == nil || !strings.Contains(err.Error(), "host.hv2.pub") {
		t.Errorf("bad public key: %v", err)
	}
}

func TestDefaultDir(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"HOME": "/home/a"}, "/home/a/.config/novanet/nats"},
		{map[string]string{"HOME": "/home/a", "XDG_CONFIG_HOME": "/cfg"}, "/cfg/novanet/nats"},
		{map[string]string{"HOME": "/home/a", "XDG_CONFIG_HOME": "rel"}, "/home/a/.config/novanet/nats"},
		{map[string]string{}, ""},
	} {
		got, err := natsauth.DefaultDir(env(c.env))
		if got != c.want || (c.want == "") != (err != nil) {
			t.Errorf("%v: %q %v, want %q", c.env, got, err, c.want)
		}
	}
}
