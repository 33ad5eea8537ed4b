package manager

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"novanet/rpc"
)

// noticeWorkers is how many notices a replica has in flight at once.
const noticeWorkers = 16

// notices sends the notices to agents with a few workers, coalescing them
// per (host, network): every notice makes the agent re-read the network's
// state, so a notice for a target that is already waiting to be sent is
// the same notice, and one for a target whose notice is in flight is
// sent once more after it (the agent may have read the state before the
// change), however many come meanwhile. A burst of allocations on one
// network so costs its agent two reads, not one per allocation, and the
// replica runs noticeWorkers requests, not a goroutine per notice.
type notices struct {
	nc      *nats.Conn
	log     *zap.Logger
	metrics *metrics

	mu      sync.Mutex
	pending map[hostTarget]*notice // waiting or in flight
	queue   []hostTarget           // waiting, in order
	kick    chan struct{}          // a worker may have work
}

type notice struct {
	method  string // the last method asked for: the agent does the same for each
	running bool   // in flight
	again   bool   // another was asked for while in flight
}

func newNotices(nc *nats.Conn, log *zap.Logger, mt *metrics) *notices {
	return &notices{nc: nc, log: log, metrics: mt, pending: map[hostTarget]*notice{}, kick: make(chan struct{}, 1)}
}

func (n *notices) add(method string, t hostTarget) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch p := n.pending[t]; {
	case p == nil:
		n.pending[t] = &notice{method: method}
		n.queue = append(n.queue, t)
		n.signal()
	case p.running:
		if p.again {
			n.metrics.noticesCoalesced.Inc()
		}
		p.method, p.again = method, true
	default: // waiting: that one will do
		p.method = method
		n.metrics.noticesCoalesced.Inc()
	}
}

// signal wakes a worker; n.mu is held.
func (n *notices) signal() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// next takes the first waiting target, or returns false when none is.
func (n *notices) next() (hostTarget, string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.queue) == 0 {
		return hostTarget{}, "", false
	}
	t := n.queue[0]
	n.queue = n.queue[1:]
	if len(n.queue) > 0 {
		n.signal() // for another worker
	}
	p := n.pending[t]
	p.running = true
	return t, p.method, true
}

// done ends t's notice in flight, queueing it again when another was asked
// for meanwhile.
func (n *notices) done(t hostTarget) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.pending[t]
	if p.again {
		p.running, p.again = false, false
		n.queue = append(n.queue, t)
		n.signal()
		return
	}
	delete(n.pending, t)
}

// size is how many targets are waiting or in flight.
func (n *notices) size() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.pending)
}

// run is one worker, until ctx ends.
func (n *notices) run(ctx context.Context) {
	for {
		t, method, ok := n.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-n.kick:
				continue
			}
		}
		n.send(ctx, method, t)
		n.done(t)
	}
}

func (n *notices) send(ctx context.Context, method string, t hostTarget) {
	body, _ := json.Marshal(rpc.HostNetworkRequest{NetworkID: t.network})
	subject := rpc.HostSubject(t.host, method)
	rctx, cancel := context.WithTimeout(ctx, notifyTimeout)
	defer cancel()
	msg, err := n.nc.RequestWithContext(rctx, subject, body)
	switch {
	case ctx.Err() != nil:
		n.log.Info("agent not told: shutting down", zap.String("subject", subject))
	case errors.Is(err, nats.ErrNoResponders):
		n.log.Info("agent not listening; it converges when it starts", zap.String("subject", subject))
	case err != nil:
		n.log.Warn("notify agent", zap.String("subject", subject), zap.Error(err))
	case msg.Header.Get(rpc.HeaderErrorCode) != "":
		n.log.Warn("agent reported an error", zap.String("subject", subject),
			zap.String("error", strings.TrimSpace(string(msg.Data))))
	}
	n.metrics.notifications.WithLabelValues(method).Inc()
}
