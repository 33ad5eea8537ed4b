package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"novanet/internal/atomicfile"
	"novanet/natsauth"
	"novanet/natsembed"
)

// embeddedManager and embeddedOperator are the identities the embedded
// server makes for itself and for netadm on the same machine.
const (
	embeddedManager  = "embedded"
	embeddedOperator = natsauth.DefaultOperator
)

// PIDFile is where the embedded server's process writes its pid in the
// credentials directory, so that "creds add" and "creds revoke" can have
// it reload.
const pidFile = "nats.pid"

func newCredsCmd(o *options) *cobra.Command {
	var pid string
	cmd := &cobra.Command{
		Use:   "creds",
		Short: "Issue and revoke NATS identities (nkey users and their permissions)",
		Long: `creds keeps novanet's NATS identities in --creds-dir: for each, KIND.NAME.pub
(its public key) and, when it is added, KIND.NAME.nk (its seed, mode 0600:
move it to the machine that uses it and pass it with --nats-nkey). From them
it writes ` + natsauth.ConfigFile + `, the nats-server authorization block
(users and permissions) to include in every NATS server's configuration.

Kinds: manager (serves the manager's subjects in its queue group), host
(one hypervisor's agent; NAME is the host's name, and it may speak for that
host only), compute (allocation and floating methods) and operator (netadm:
every method; it serves nothing). See docs/security.md.

After a change the servers must reload the file: creds sends SIGHUP to the
process in --pid-file when that exists (nats-server's pid_file, or the
manager running the embedded server, which writes DIR/` + pidFile + `), else it
says what to run.`,
	}
	cmd.PersistentFlags().StringVar(&pid, "pid-file", "", "pid file of the NATS server to reload (default DIR/"+pidFile+")")
	store := func() (natsauth.Store, error) {
		dir, err := credsDir(o.credsDir)
		return natsauth.Store{Dir: dir}, err
	}
	args := func(args []string) (natsauth.Kind, string, error) {
		kind, err := natsauth.ParseKind(args[0])
		if err != nil {
			return "", "", err
		}
		if err := natsauth.ValidateName(args[1]); err != nil {
			return "", "", err
		}
		return kind, args[1], nil
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "add KIND NAME",
		Short: "Issue a new identity: write its seed and rewrite the server configuration",
		Example: `  network-manager creds add host compute-1 --creds-dir /etc/novanet/nats
  scp /etc/novanet/nats/host.compute-1.nk compute-1:/etc/novanet/nats.nk   # then NOVANET_NATS_NKEY there`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, a []string) error {
			kind, name, err := args(a)
			if err != nil {
				return err
			}
			s, err := store()
			if err != nil {
				return err
			}
			id, err := s.Add(kind, name)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "added %s %s: public key %s\nseed: %s (mode 0600; give it with --nats-nkey)\n", kind, name, id.PublicKey, s.SeedPath(kind, name))
			return reload(w, s, pid)
		},
	}, &cobra.Command{
		Use:   "revoke KIND NAME",
		Short: "Remove an identity: once the servers reload, it is disconnected and refused",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, a []string) error {
			kind, name, err := args(a)
			if err != nil {
				return err
			}
			s, err := store()
			if err != nil {
				return err
			}
			if err := s.Revoke(kind, name); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s %s\n", kind, name)
			return reload(cmd.OutOrStdout(), s, pid)
		},
	}, &cobra.Command{
		Use:   "list",
		Short: "List the identities",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := store()
			if err != nil {
				return err
			}
			ids, err := s.List()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tNAME\tPUBLIC KEY")
			for _, id := range ids {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", id.Kind, id.Name, id.PublicKey)
			}
			return tw.Flush()
		},
	}, &cobra.Command{
		Use:   "config",
		Short: "Rewrite " + natsauth.ConfigFile + " from the identities (and reload)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := store()
			if err != nil {
				return err
			}
			if err := s.WriteConfig(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", s.ConfigPath())
			return reload(cmd.OutOrStdout(), s, pid)
		},
	})
	return cmd
}

// credsDir is dir, or by default novanet/nats in the user's configuration
// directory ($XDG_CONFIG_HOME, else ~/.config).
func credsDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	d, err := natsauth.DefaultDir(os.Getenv)
	if err != nil {
		return "", fmt.Errorf("no credentials directory: set --creds-dir (%w)", err)
	}
	return d, nil
}

// reload has the NATS server of pidPath (default DIR/nats.pid) re-read its
// configuration, or says how to.
func reload(w io.Writer, s natsauth.Store, pidPath string) error {
	if pidPath == "" {
		pidPath = filepath.Join(s.Dir, pidFile)
	}
	data, err := os.ReadFile(pidPath)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(w, "wrote %s; reload every NATS server that includes it (nats-server --signal reload, or systemctl reload nats-server)\n", s.ConfigPath())
		return nil
	} else if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("pid file %s: %q is no pid", pidPath, strings.TrimSpace(string(data)))
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("reload the NATS server (pid %d from %s): %w; run nats-server --signal reload", pid, pidPath, err)
	}
	fmt.Fprintf(w, "wrote %s; told the NATS server (pid %d) to reload it\n", s.ConfigPath(), pid)
	return nil
}

// embeddedIdentities makes sure the credentials directory has the embedded
// server's manager and operator identities and a current configuration,
// and returns the store and the manager's seed.
func embeddedIdentities(o options) (natsauth.Store, string, error) {
	dir, err := credsDir(o.credsDir)
	if err != nil {
		return natsauth.Store{}, "", err
	}
	s := natsauth.Store{Dir: dir}
	for _, id := range []struct {
		kind natsauth.Kind
		name string
	}{{natsauth.KindManager, embeddedManager}, {natsauth.KindOperator, embeddedOperator}} {
		if _, err := s.Ensure(id.kind, id.name); err != nil {
			return s, "", fmt.Errorf("embedded nats identities in %s: %w", dir, err)
		}
	}
	if err := s.WriteConfig(); err != nil {
		return s, "", err
	}
	return s, s.SeedPath(natsauth.KindManager, embeddedManager), nil
}

// reloadOnHUP writes the pid file of the credentials directory and reloads
// the embedded server's identities on SIGHUP (what "creds add" and "creds
// revoke" send), until the returned function is called.
func reloadOnHUP(ns *natsembed.Server, s natsauth.Store, log *zap.Logger) func() {
	path := filepath.Join(s.Dir, pidFile)
	if err := atomicfile.Write(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		log.Warn("no pid file: creds changes need a restart", zap.Error(err))
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
				if err := ns.Reload(); err != nil {
					log.Error("reload NATS identities", zap.String("config", s.ConfigPath()), zap.Error(err))
				} else {
					log.Info("reloaded NATS identities", zap.String("config", s.ConfigPath()))
				}
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		_ = os.Remove(path)
	}
}
