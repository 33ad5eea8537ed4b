// Package floating is everything about floating IPs on a host: which are
// associated here (Parse, from the manager's host state), their NAT rules
// (AddRules, into the host's hostnet.Ruleset), and binding them (Binder):
// each floating address is added as a /32 (or /128) on its public
// interface through linuxnet/link, announced with a gratuitous ARP
// (Arping), and removed once it is no longer associated with this host.
//
// Only addresses this package added are ever removed: it keeps the list in
// a state file, written before an address is added, so that after a crash
// an address of ours is still known to be ours.
package floating

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"novanet/internal/atomicfile"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"
)

// Addrs is the part of the kernel the binder uses: addresses of one
// interface in the host's namespace. *link.Manager implements it.
type Addrs interface {
	// AddAddr adds p to iface; an address already there is fine.
	AddAddr(ctx context.Context, iface string, p netip.Prefix) error
	// DelAddr removes p from iface; an address or interface already gone
	// is fine.
	DelAddr(ctx context.Context, iface string, p netip.Prefix) error
	// Addrs returns the addresses iface carries.
	Addrs(ctx context.Context, iface string) ([]netip.Prefix, error)
}

// Announcer sends a gratuitous ARP for addr on iface.
type Announcer func(ctx context.Context, iface string, addr netip.Addr) error

// Binder keeps the floating addresses of a host bound.
type Binder struct {
	addrs    Addrs
	announce Announcer
	// onAnnounceError hears of gratuitous ARPs that failed; they are sent
	// in the background, after Ensure has returned.
	onAnnounceError func(error)
	announcing      sync.WaitGroup
	statePath       string
}

// New returns a binder whose record lives in stateDir/floating.json.
// announce may be nil (no gratuitous ARP).
func New(addrs Addrs, announce Announcer, stateDir string) (*Binder, error) {
	if err := os.MkdirAll(stateDir, 0o750); err != nil {
		return nil, fmt.Errorf("floating state directory: %w", err)
	}
	return &Binder{addrs: addrs, announce: announce, statePath: filepath.Join(stateDir, "floating.json")}, nil
}

// Bound is one address on one interface.
type Bound struct {
	Interface string       `json:"interface"`
	Prefix    netip.Prefix `json:"prefix"`
}

func (b *Binder) load() ([]Bound, error) {
	data, err := os.ReadFile(b.statePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read floating state: %w", err)
	}
	var out []Bound
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("floating state %s: %w", b.statePath, err)
	}
	return out, nil
}

func (b *Binder) save(bs []Bound) error {
	sort.Slice(bs, func(i, j int) bool {
		if bs[i].Interface != bs[j].Interface {
			return bs[i].Interface < bs[j].Interface
		}
		return bs[i].Prefix.Addr().Less(bs[j].Prefix.Addr())
	})
	data, err := json.Marshal(bs)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(b.statePath, data, 0o640); err != nil {
		return fmt.Errorf("floating state: %w", err)
	}
	return nil
}

// Ensure binds exactly want (interface → addresses) of the addresses that
// are ours: missing ones are added and announced, ours that are no longer
// wanted are removed. It returns what it changed.
func (b *Binder) Ensure(ctx context.Context, want map[string][]netip.Prefix) ([]string, error) {
	have, err := b.load()
	if err != nil {
		return nil, err
	}
	var wantList []Bound
	wantSet, haveSet := map[Bound]bool{}, map[Bound]bool{}
	for iface, ps := range want {
		for _, p := range ps {
			w := Bound{Interface: iface, Prefix: p}
			if !wantSet[w] {
				wantSet[w] = true
				wantList = append(wantList, w)
			}
		}
	}
	for _, h := range have {
		haveSet[h] = true
	}
	// Record the union first: whatever we add below is known to be ours.
	union := slices.Clone(have)
	for _, w := range wantList {
		if !haveSet[w] {
			union = append(union, w)
		}
	}
	if len(union) != len(have) {
		if err := b.save(union); err != nil {
			return nil, err
		}
	}
	var (
		changes []string
		errs    []error
		added   []Bound
	)
	present := map[string]map[netip.Prefix]bool{}
	for iface := range want {
		ps, err := b.addrs.Addrs(ctx, iface)
		if err != nil {
			errs = append(errs, fmt.Errorf("public interface %s: %w", iface, err))
			continue
		}
		present[iface] = map[netip.Prefix]bool{}
		for _, p := range ps {
			present[iface][p] = true
		}
	}
	for _, w := range wantList {
		if present[w.Interface] == nil || present[w.Interface][w.Prefix] {
			continue
		}
		if err := b.addrs.AddAddr(ctx, w.Interface, w.Prefix); err != nil {
			errs = append(errs, fmt.Errorf("bind floating %s on %s: %w", w.Prefix.Addr(), w.Interface, err))
			continue
		}
		changes = append(changes, fmt.Sprintf("bound floating %s on %s", w.Prefix.Addr(), w.Interface))
		added = append(added, w)
	}
	b.announceAll(added)
	kept := slices.Clone(wantList)
	for _, h := range have {
		if wantSet[h] {
			continue
		}
		if err := b.addrs.DelAddr(ctx, h.Interface, h.Prefix); err != nil {
			errs = append(errs, fmt.Errorf("unbind floating %s from %s: %w", h.Prefix.Addr(), h.Interface, err))
			kept = append(kept, h) // still ours; try again next time
			continue
		}
		changes = append(changes, fmt.Sprintf("unbound floating %s from %s", h.Prefix.Addr(), h.Interface))
	}
	if len(kept) != len(union) {
		if err := b.save(kept); err != nil {
			errs = append(errs, err)
		}
	}
	return changes, errors.Join(errs...)
}

// OnAnnounceError sets what hears of failed gratuitous ARPs (default:
// nothing).
func (b *Binder) OnAnnounceError(f func(error)) { b.onAnnounceError = f }

// announceAll sends a gratuitous ARP for each newly bound address, one
// after the other, in the background: the address already works, the ARP
// only hastens neighbours' caches, and an arping waits out its deadline,
// which a caller converging a host should not.
func (b *Binder) announceAll(bs []Bound) {
	if b.announce == nil || len(bs) == 0 {
		return
	}
	b.announcing.Add(1)
	go func() {
		defer b.announcing.Done()
		for _, w := range bs {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := b.announce(ctx, w.Interface, w.Prefix.Addr())
			cancel()
			if err != nil && b.onAnnounceError != nil {
				b.onAnnounceError(fmt.Errorf("gratuitous ARP for %s on %s: %w", w.Prefix.Addr(), w.Interface, err))
			}
		}
	}()
}

// Wait waits for the gratuitous ARPs under way.
func (b *Binder) Wait() { b.announcing.Wait() }
