package agent

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"novanet/internal/atomicfile"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"novanet/hostnet"
)

// store keeps one record per network that a driver set up, in
// <dir>/networks/<id>.json. A record is written before its network is set
// up and removed after it is torn down, so after a crash at any point the
// records name everything of ours that may exist on the host.
type store struct{ dir string }

// errMissing: no record of the network; it was never set up here.
var errMissing = errors.New("no record")

func newStore(stateDir string) (*store, error) {
	dir := filepath.Join(stateDir, "networks")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return &store{dir: dir}, nil
}

func (s *store) path(id int64) string {
	return filepath.Join(s.dir, strconv.FormatInt(id, 10)+".json")
}

// list returns the records, by network id.
func (s *store) list() ([]hostnet.Record, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var out []hostnet.Record
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") {
			continue
		}
		id, err := strconv.ParseInt(strings.TrimSuffix(name, ".json"), 10, 64)
		if err != nil {
			continue
		}
		rec, err := s.get(id)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NetworkID < out[j].NetworkID })
	return out, nil
}

func (s *store) get(id int64) (hostnet.Record, error) {
	var rec hostnet.Record
	b, err := os.ReadFile(s.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return rec, fmt.Errorf("network %d: %w", id, errMissing)
	}
	if err != nil {
		return rec, fmt.Errorf("read state of network %d: %w", id, err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("state of network %d in %s: %w", id, s.path(id), err)
	}
	if rec.NetworkID != id {
		return rec, fmt.Errorf("state file %s holds network %d", s.path(id), rec.NetworkID)
	}
	return rec, nil
}

// put writes rec atomically and durably.
func (s *store) put(rec hostnet.Record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.path(rec.NetworkID), append(b, '\n'), 0o640); err != nil {
		return fmt.Errorf("state of network %d: %w", rec.NetworkID, err)
	}
	return nil
}

func (s *store) remove(id int64) error {
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove state of network %d: %w", id, err)
	}
	return syncDir(s.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// loadInstance returns the agent instance id kept in <stateDir>/instance,
// making a random one at the first start. The id is the host's state: a
// restarted agent (same machine, same records) is the same instance,
// another machine started under the same host name is another.
func loadInstance(stateDir string) (string, error) {
	p := filepath.Join(stateDir, "instance")
	b, err := os.ReadFile(p)
	if err == nil {
		if id := strings.TrimSpace(string(b)); id != "" && len(id) <= 64 {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("agent instance: %w", err)
	}
	id := rand.Text()
	if err := os.MkdirAll(stateDir, 0o750); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	if err := atomicfile.Write(p, []byte(id+"\n"), 0o640); err != nil {
		return "", fmt.Errorf("agent instance: %w", err)
	}
	return id, nil
}

// LockStateDir takes <stateDir>/lock for the life of the process (the
// lock goes with the returned file, or the process): two agents sharing
// one state directory would tear down each other's networks. It fails,
// naming the holder's pid, when another process holds it.
func LockStateDir(stateDir string) (*os.File, error) {
	if err := os.MkdirAll(stateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	p := filepath.Join(stateDir, "lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("state directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(p)
		f.Close()
		return nil, fmt.Errorf("state directory %s is in use by another network-host (pid %s): %w",
			stateDir, strings.TrimSpace(string(holder)), err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
