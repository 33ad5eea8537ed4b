package dnsmasq

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// State is what one dnsmasq instance has on the host, read back from its
// own files and process: whether it runs, the lines of its config and
// hosts files, and its leases.
type State struct {
	Exists  bool // its directory exists
	Running bool
	Pid     int      // 0 when not running
	Conf    []string // lines of dnsmasq.conf
	Hosts   []string // lines of the hosts file (the reservations)
	Leases  []string // lines of the leases file
}

// Read reads the instance whose files are in dir (Config.Dir). A missing
// directory is State{Exists: false}; missing files are empty.
func Read(dir string) (State, error) {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return State{}, nil
	} else if err != nil {
		return State{}, fmt.Errorf("dnsmasq %s: %w", dir, err)
	}
	p := Config{Dir: dir}.Paths()
	st := State{Exists: true}
	if pid, err := pidOf(p.Pid, p.Conf); err == nil {
		st.Running, st.Pid = true, pid
	}
	for _, f := range []struct {
		path string
		into *[]string
	}{{p.Conf, &st.Conf}, {p.Hosts, &st.Hosts}, {p.Leases, &st.Leases}} {
		b, err := os.ReadFile(f.path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return State{}, fmt.Errorf("dnsmasq %s: %w", filepath.Base(dir), err)
		}
		*f.into = Lines(string(b))
	}
	return st, nil
}

// Lines splits rendered file content into its non-empty lines.
func Lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
