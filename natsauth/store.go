package natsauth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nats-io/nkeys"

	"novanet/internal/atomicfile"
)

// ConfigFile is the name of the generated authorization block in a Store.
const ConfigFile = "novanet-authorization.conf"

// ErrExists is returned when adding an identity that is already there.
var ErrExists = errors.New("identity exists")

// ErrNotFound is returned when revoking an identity that is not there.
var ErrNotFound = errors.New("no such identity")

// Store is a directory of identities: KIND.NAME.pub holds each one's
// public key, KIND.NAME.nk its seed as written when it was added (move it
// to the machine that uses it; the store needs only the .pub), and
// ConfigFile the nats-server authorization block for all of them.
type Store struct{ Dir string }

// PubPath is where id's public key is kept.
func (s Store) PubPath(kind Kind, name string) string {
	return filepath.Join(s.Dir, string(kind)+"."+name+".pub")
}

// SeedPath is where id's seed is written when it is added.
func (s Store) SeedPath(kind Kind, name string) string {
	return filepath.Join(s.Dir, string(kind)+"."+name+".nk")
}

// ConfigPath is the generated authorization block.
func (s Store) ConfigPath() string { return filepath.Join(s.Dir, ConfigFile) }

func check(kind Kind, name string) error {
	if _, err := ParseKind(string(kind)); err != nil {
		return err
	}
	if err := ValidateName(name); err != nil {
		return fmt.Errorf("%s identity: %w", kind, err)
	}
	return nil
}

// Add creates an nkey user for kind and name, writes its seed to
// SeedPath (mode 0600) and its public key beside it, and rewrites the
// configuration. An identity already there is ErrExists: revoke it first
// to issue a new key.
func (s Store) Add(kind Kind, name string) (Identity, error) {
	if err := check(kind, name); err != nil {
		return Identity{}, err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return Identity{}, err
	}
	if _, err := os.Stat(s.PubPath(kind, name)); err == nil {
		return Identity{}, fmt.Errorf("%s %s: %w (%s)", kind, name, ErrExists, s.PubPath(kind, name))
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Identity{}, err
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return Identity{}, err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return Identity{}, err
	}
	if err := atomicfile.Write(s.SeedPath(kind, name), append(seed, '\n'), 0o600); err != nil {
		return Identity{}, err
	}
	if err := atomicfile.Write(s.PubPath(kind, name), []byte(pub+"\n"), 0o644); err != nil {
		return Identity{}, err
	}
	return Identity{Kind: kind, Name: name, PublicKey: pub}, s.WriteConfig()
}

// Ensure returns the identity kind.name, adding it when it is not there
// (its seed must then be at SeedPath). For the embedded server, which
// makes its own identities.
func (s Store) Ensure(kind Kind, name string) (Identity, error) {
	data, err := os.ReadFile(s.PubPath(kind, name))
	if errors.Is(err, fs.ErrNotExist) {
		return s.Add(kind, name)
	} else if err != nil {
		return Identity{}, err
	}
	if _, err := os.Stat(s.SeedPath(kind, name)); err != nil {
		return Identity{}, fmt.Errorf("%s %s: %w", kind, name, err)
	}
	return Identity{Kind: kind, Name: name, PublicKey: strings.TrimSpace(string(data))}, nil
}

// Revoke removes kind.name (its public key and any seed left in the
// store) and rewrites the configuration. Once the servers reload it, the
// identity's connections are closed and it cannot connect again.
func (s Store) Revoke(kind Kind, name string) error {
	if err := check(kind, name); err != nil {
		return err
	}
	if err := os.Remove(s.PubPath(kind, name)); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s %s: %w in %s", kind, name, ErrNotFound, s.Dir)
	} else if err != nil {
		return err
	}
	if err := os.Remove(s.SeedPath(kind, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return s.WriteConfig()
}

// List returns every identity of the store, sorted by kind and name.
func (s Store) List() ([]Identity, error) {
	files, err := filepath.Glob(filepath.Join(s.Dir, "*.pub"))
	if err != nil {
		return nil, err
	}
	var ids []Identity
	for _, f := range files {
		stem := strings.TrimSuffix(filepath.Base(f), ".pub")
		k, name, _ := strings.Cut(stem, ".")
		kind, err := ParseKind(k)
		if err != nil || ValidateName(name) != nil {
			return nil, fmt.Errorf("%s: not KIND.NAME.pub", f)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		pub := strings.TrimSpace(string(data))
		if !nkeys.IsValidPublicUserKey(pub) {
			return nil, fmt.Errorf("%s: %q is not an nkey user public key", f, pub)
		}
		ids = append(ids, Identity{Kind: kind, Name: name, PublicKey: pub})
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].ID() < ids[j].ID() })
	return ids, nil
}

// WriteConfig rewrites ConfigPath from the identities of the store.
func (s Store) WriteConfig() error {
	ids, err := s.List()
	if err != nil {
		return err
	}
	return atomicfile.Write(s.ConfigPath(), Config(ids), 0o644)
}

// DefaultOperator is the operator identity that the embedded server makes
// for netadm on the same machine.
const DefaultOperator = "admin"

// DefaultDir is the credentials directory of the user running the
// command: novanet/nats in its configuration directory ($XDG_CONFIG_HOME,
// else $HOME/.config), as getenv (os.Getenv) tells. The embedded server
// keeps its identities there, and netadm looks there for the operator's
// seed.
func DefaultDir(getenv func(string) string) (string, error) {
	d := getenv("XDG_CONFIG_HOME")
	if d == "" || !filepath.IsAbs(d) {
		home := getenv("HOME")
		if home == "" {
			return "", errors.New("neither $XDG_CONFIG_HOME nor $HOME is set")
		}
		d = filepath.Join(home, ".config")
	}
	return filepath.Join(d, "novanet", "nats"), nil
}

// DefaultOperatorSeed is the operator seed netadm uses when given no
// credentials: DefaultOperator's in DefaultDir, when it exists.
func DefaultOperatorSeed(getenv func(string) string) (string, bool) {
	d, err := DefaultDir(getenv)
	if err != nil {
		return "", false
	}
	p := Store{Dir: d}.SeedPath(KindOperator, DefaultOperator)
	_, err = os.Stat(p)
	return p, err == nil
}
