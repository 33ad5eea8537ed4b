// Package natsconn is how every novanet binary connects to NATS: the
// credential and TLS flags they share (--nats-creds, --nats-nkey,
// --nats-tls-ca, --nats-tls-cert, --nats-tls-key), the per-identity inbox
// prefix that keeps one identity's replies from another, and URLs with
// their passwords masked for logs.
package natsconn

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"novanet/internal/envflags"
)

// InboxRoot is the first token of every reply subject: an identity with
// public key K receives replies on InboxRoot.K.> and may subscribe there
// only (see natsauth).
const InboxRoot = "_INBOX"

// InboxPrefix returns the inbox prefix of the identity with NATS public
// key pub: requests it sends carry reply subjects under it.
func InboxPrefix(pub string) string { return InboxRoot + "." + pub }

// Options are the credentials and TLS files of one connection. Zero
// values: none (an anonymous, plain connection).
type Options struct {
	Creds   string // a JWT user credentials file (nsc, decentralized auth)
	NKey    string // an nkey seed file (a user of the server's configuration)
	TLSCA   string // CA certificates that sign the servers' certificates
	TLSCert string // client certificate, for servers that verify clients
	TLSKey  string // its key
}

// AddFlags adds the credential and TLS flags to fs, bound to o.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Creds, "nats-creds", "", "NATS user credentials file (JWT and seed, as nsc writes)")
	fs.StringVar(&o.NKey, "nats-nkey", "", "NATS nkey seed file of this identity (as \"network-manager creds add\" writes)")
	fs.StringVar(&o.TLSCA, "nats-tls-ca", "", "CA certificates (PEM) to verify the NATS servers with; set it to use TLS")
	fs.StringVar(&o.TLSCert, "nats-tls-cert", "", "client certificate (PEM) for NATS servers that verify clients")
	fs.StringVar(&o.TLSKey, "nats-tls-key", "", "key (PEM) of --nats-tls-cert")
}

// Anonymous reports whether no credentials are set.
func (o Options) Anonymous() bool { return o.Creds == "" && o.NKey == "" }

// NATSOptions checks o and returns the nats.go options that apply it: the
// credentials, the identity's inbox prefix, and TLS.
func (o Options) NATSOptions() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case o.Creds != "" && o.NKey != "":
		return nil, errors.New("--nats-creds and --nats-nkey: give one or the other")
	case o.NKey != "":
		kp, err := ReadSeed(o.NKey)
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey: %w", err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey %s: %w", o.NKey, err)
		}
		opts = append(opts, nats.Nkey(pub, kp.Sign), nats.CustomInboxPrefix(InboxPrefix(pub)))
	case o.Creds != "":
		data, err := os.ReadFile(o.Creds)
		if err != nil {
			return nil, fmt.Errorf("--nats-creds: %w", err)
		}
		kp, err := nkeys.ParseDecoratedNKey(data)
		if err != nil {
			return nil, fmt.Errorf("--nats-creds %s: no user seed: %w", o.Creds, err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("--nats-creds %s: %w", o.Creds, err)
		}
		kp.Wipe()
		opts = append(opts, nats.UserCredentials(o.Creds), nats.CustomInboxPrefix(InboxPrefix(pub)))
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return nil, errors.New("--nats-tls-cert and --nats-tls-key: give both or neither")
	}
	for _, f := range []struct{ flag, path string }{{"--nats-tls-ca", o.TLSCA}, {"--nats-tls-cert", o.TLSCert}, {"--nats-tls-key", o.TLSKey}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("%s: %w", f.flag, err)
		}
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if o.TLSCert != "" {
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	return opts, nil
}

// A server that stops answering without closing the connection (its
// machine died, the network between is cut) is given up after MaxPingsOut
// pings PingInterval apart, about a minute, and the client reconnects to
// another node; nats.go's default is 2 minutes apart. The nats-server
// configuration in deploy/nats does the same for its clients.
const (
	PingInterval = 20 * time.Second
	MaxPingsOut  = 3
)

// Connect connects to the comma-separated servers of url as name, with o,
// the ping interval above and then extra applied.
func (o Options) Connect(url, name string, extra ...nats.Option) (*nats.Conn, error) {
	opts, err := o.NATSOptions()
	if err != nil {
		return nil, err
	}
	opts = append(append(opts, nats.Name(name), nats.PingInterval(PingInterval), nats.MaxPingsOutstanding(MaxPingsOut)), extra...)
	return nats.Connect(url, opts...)
}

// ReadSeed reads an nkey seed file: the seed alone (SU...) or decorated as
// nsc writes it. The file should be readable by its owner only; a file
// that others may read is refused, since the seed is the identity.
func ReadSeed(path string) (nkeys.KeyPair, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("seed file %s is readable by others (mode %04o): chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.ParseDecoratedNKey(data)
	if err != nil {
		// A bare seed with surrounding space.
		if kp2, err2 := nkeys.FromSeed([]byte(strings.TrimSpace(string(data)))); err2 == nil {
			return kp2, nil
		}
		return nil, fmt.Errorf("seed file %s: %w", path, err)
	}
	return kp, nil
}

// FlagNames are the flags AddFlags adds.
var FlagNames = []string{"nats-creds", "nats-nkey", "nats-tls-ca", "nats-tls-cert", "nats-tls-key"}

// DefaultsFromEnv gives each flag of FlagNames in fs its value from the
// environment (NOVANET_NATS_CREDS, ...), if set and not empty, as its
// default, and names the variable in its usage. For commands that read the
// environment with getenv rather than internal/envflags.
func DefaultsFromEnv(fs *pflag.FlagSet, getenv func(string) string) {
	for _, name := range FlagNames {
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		env := envflags.Name("NOVANET_", name)
		if v := getenv(env); v != "" {
			_ = f.Value.Set(v)
			f.DefValue = v
		}
		f.Usage += " (env " + env + ")"
	}
}

// LogErrors logs the errors the server reports asynchronously, such as a
// permissions violation (a publish or subscription the identity may not
// make), which would otherwise go unnoticed.
func LogErrors(log *zap.Logger) nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		if sub != nil {
			log.Error("NATS", zap.String("subscription", sub.Subject), zap.Error(err))
			return
		}
		log.Error("NATS", zap.Error(err))
	})
}
