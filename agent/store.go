package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"novanet/internal/atomicfile"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

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
