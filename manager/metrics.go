package manager

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests         *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	macCollisions    prometheus.Counter
	notifications    *prometheus.CounterVec
	expired          prometheus.Counter
	shed             prometheus.Counter
	noticesCoalesced prometheus.Counter
	replays          *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "novanet", Subsystem: "manager", Name: "requests_total",
			Help: "RPC requests handled, by method and result code (ok or an error code).",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "novanet", Subsystem: "manager", Name: "request_duration_seconds",
			Help:    "Time to handle an RPC request, by method.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method"}),
		macCollisions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "novanet", Subsystem: "manager", Name: "mac_collisions_total",
			Help: "Random MACs that were already taken and replaced.",
		}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "novanet", Subsystem: "manager", Name: "agent_notifications_total",
			Help: "Requests sent to host agents, by method.",
		}, []string{"method"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "novanet", Subsystem: "manager", Name: "requests_expired_total",
			Help: "Requests not run because their deadline passed while they waited for a worker.",
		}),
		shed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "novanet", Subsystem: "manager", Name: "requests_shed_total",
			Help: "Requests answered unavailable at once because the queue of requests waiting for a worker was full.",
		}),
		noticesCoalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "novanet", Subsystem: "manager", Name: "agent_notices_coalesced_total",
			Help: "Notices to host agents folded into one already waiting or sent once more after the one in flight.",
		}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "novanet", Subsystem: "manager", Name: "request_id_replays_total",
			Help: "Requests answered with the stored reply of an earlier request with the same request id, by method.",
		}, []string{"method"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.macCollisions, m.notifications, m.expired, m.shed, m.noticesCoalesced, m.replays} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(method, code string, d time.Duration) {
	m.requests.WithLabelValues(method, code).Inc()
	m.duration.WithLabelValues(method).Observe(d.Seconds())
}
