package dnsmasq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"novanet/internal/atomicfile"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"novanet/linuxnet/nsrun"
)

// ErrNotRunning is returned by Pid when the pid file is missing, its
// process is dead, or the process is not our dnsmasq.
var ErrNotRunning = errors.New("dnsmasq not running")

// Action says what Ensure did.
type Action int

const (
	Unchanged Action = iota // nothing to do
	Reloaded                // hosts or options rewritten and SIGHUP sent
	Started                 // not running: started
	Restarted               // config changed: stopped and started
)

func (a Action) String() string {
	return [...]string{"unchanged", "reloaded", "started", "restarted"}[a]
}

// Server manages the dnsmasq of one network.
type Server struct {
	cfg   Config
	paths Paths
}

// New returns a Server for cfg after validating it.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Binary == "" {
		cfg.Binary = "dnsmasq"
	}
	return &Server{cfg: cfg, paths: cfg.Paths()}, nil
}

// Paths returns the server's files.
func (s *Server) Paths() Paths { return s.paths }

// Ensure brings dnsmasq to the wanted state: files written (atomically, only
// when their content changes), the process running with the current config.
// A change of hosts or options only sends SIGHUP; a change of config
// restarts the process. Leases survive both through the lease file.
func (s *Server) Ensure(ctx context.Context, hosts []Host, opts []Option) (Action, error) {
	conf, err := RenderConfig(s.cfg)
	if err != nil {
		return Unchanged, err
	}
	hostsText, err := RenderHosts(hosts)
	if err != nil {
		return Unchanged, fmt.Errorf("network %s: %w", s.cfg.Name, err)
	}
	optsText, err := RenderOpts(opts)
	if err != nil {
		return Unchanged, fmt.Errorf("network %s: %w", s.cfg.Name, err)
	}
	if script := RenderScript(s.cfg); script != "" {
		if _, err := writeAtomic(s.paths.Script, script, 0o755); err != nil {
			return Unchanged, err
		}
	}
	hostsChanged, err := writeAtomic(s.paths.Hosts, hostsText, 0o644)
	if err != nil {
		return Unchanged, err
	}
	optsChanged, err := writeAtomic(s.paths.Opts, optsText, 0o644)
	if err != nil {
		return Unchanged, err
	}
	confChanged, err := writeAtomic(s.paths.Conf, conf, 0o644)
	if err != nil {
		return Unchanged, err
	}
	pid, err := s.Pid()
	switch {
	case errors.Is(err, ErrNotRunning):
		return Started, s.start(ctx)
	case err != nil:
		return Unchanged, err
	case confChanged:
		if err := s.stop(ctx, pid); err != nil {
			return Unchanged, err
		}
		return Restarted, s.start(ctx)
	case hostsChanged || optsChanged:
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return Unchanged, fmt.Errorf("dnsmasq %s: pid %d: sighup: %w", s.cfg.Name, pid, err)
		}
		return Reloaded, nil
	}
	return Unchanged, nil
}

// Pid returns the pid of our running dnsmasq. It wraps ErrNotRunning when
// the pid file is missing or stale: the process is dead, a zombie, or not
// a dnsmasq started with our config file (a reused pid).
func (s *Server) Pid() (int, error) {
	return pidOf(s.paths.Pid, s.paths.Conf)
}

func pidOf(pidFile, conf string) (int, error) {
	b, err := os.ReadFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("pid file %s: %w: no pid file", pidFile, ErrNotRunning)
	}
	if err != nil {
		return 0, fmt.Errorf("pid file %s: %w", pidFile, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: %w: bad content %q", pidFile, ErrNotRunning, b)
	}
	if !ours(pid, conf) {
		return 0, fmt.Errorf("pid file %s: %w: pid %d is dead or not our dnsmasq", pidFile, ErrNotRunning, pid)
	}
	return pid, nil
}

// ours reports whether pid is alive and was started with our config file.
func ours(pid int, conf string) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X' {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	for _, arg := range bytes.Split(cmdline, []byte{0}) {
		if string(arg) == "--conf-file="+conf {
			return true
		}
	}
	return false
}

func (s *Server) start(ctx context.Context) error {
	// A stale pid file must not be mistaken for the new process.
	if err := os.Remove(s.paths.Pid); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dnsmasq %s: %w", s.cfg.Name, err)
	}
	// Output goes to a file, not a pipe: the daemon could keep a pipe open.
	logf, err := os.CreateTemp(s.cfg.Dir, ".start-*.log")
	if err != nil {
		return fmt.Errorf("dnsmasq %s: %w", s.cfg.Name, err)
	}
	defer os.Remove(logf.Name())
	defer logf.Close()
	err = nsrun.Do(s.cfg.NetNS, func() error {
		cmd := exec.CommandContext(ctx, s.cfg.Binary, "--conf-file="+s.paths.Conf)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.Dir = "/"
		return cmd.Run()
	})
	if err != nil {
		out, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("dnsmasq %s: start: %w: %s", s.cfg.Name, err, strings.TrimSpace(string(out)))
	}
	// dnsmasq writes its pid file before the parent exits; poll briefly
	// anyway in case of a slow filesystem.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Pid()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dnsmasq %s: started but %w", s.cfg.Name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop stops our dnsmasq if it runs and removes the pid file. Leases stay
// in the lease file.
func (s *Server) Stop(ctx context.Context) error {
	pid, err := s.Pid()
	if errors.Is(err, ErrNotRunning) {
		_ = os.Remove(s.paths.Pid)
		return nil
	}
	if err != nil {
		return err
	}
	return s.stop(ctx, pid)
}

// stop sends SIGTERM to pid (checked to be ours) and waits until the
// process has exited, not merely stopped looking like our dnsmasq: an
// exiting process loses its /proc/PID/cmdline (its memory) before it
// closes its sockets, and a dnsmasq started in between finds port 67 still
// bound ("failed to create listening socket ... Address already in use").
// Gone means no /proc/PID, a zombie, or another process under the pid.
func (s *Server) stop(ctx context.Context, pid int) error {
	start, alive := startTime(pid)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("dnsmasq %s: pid %d: sigterm: %w", s.cfg.Name, pid, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive {
		if st, ok := startTime(pid); !ok || st != start {
			break
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(5 * time.Second)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := os.Remove(s.paths.Pid); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dnsmasq %s: %w", s.cfg.Name, err)
	}
	return nil
}

// startTime returns the start time of pid (field 22 of /proc/PID/stat, in
// clock ticks since boot), and false when the process is gone or a zombie:
// a zombie has closed its files.
func startTime(pid int) (string, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return "", false
	}
	// After "(comm)": state is field 3, starttime field 22.
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return "", false
	}
	return f[19], true
}

// writeAtomic writes content to path through a temporary file in the same
// directory and a rename, unless path already holds exactly content. It
// reports whether it wrote.
func writeAtomic(path, content string, mode os.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && string(old) == content {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm() == mode {
			return false, nil
		}
	}
	if err := atomicfile.Write(path, []byte(content), mode); err != nil {
		return false, err
	}
	return true, nil
}
