// Package manager is novanet's central service: it keeps network state in
// PostgreSQL and answers RPC over NATS as a micro service whose replicas
// share one queue group.
package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"novanet/rpc"
)

// Mode is the network mode of the deployment, as nova-network's
// network_manager setting: it decides how networks are created and chosen.
type Mode string

// Network modes.
const (
	ModeFlat     Mode = "flat"
	ModeFlatDHCP Mode = "flatdhcp"
	ModeVLAN     Mode = "vlan"
)

// ParseMode checks a mode name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeFlat, ModeFlatDHCP, ModeVLAN:
		return m, nil
	}
	return "", fmt.Errorf("network mode %q: want flat, flatdhcp or vlan", s)
}

// Config tunes a Manager. Zero values take the defaults noted.
type Config struct {
	Mode    Mode // default flatdhcp
	Workers int  // requests handled at once by this replica; default 64
	// Queue: requests that may wait for a worker; past it a request is
	// answered unavailable at once (load shed) rather than left to time
	// out; default 64 per worker.
	Queue int
	// RequestTimeout bounds each request from when it reaches the replica,
	// also when the caller's deadline is later; default 30s.
	RequestTimeout time.Duration
	// RequestIDWindow: replies to requests with a request id are kept this
	// long, and a retry with the same id within it gets the same reply;
	// default 24 hours.
	RequestIDWindow time.Duration
	Version         string // semantic version reported to NATS discovery
	// DisassociateTimeout: a deallocated address whose DHCP release never
	// came is freed this long after deallocation; default 10 minutes.
	DisassociateTimeout time.Duration
	MACRetries          int // random MACs tried per interface on collision; default 5
	// AutoAssignFloatingIP: allocate_for_instance also allocates a floating
	// IP from DefaultFloatingPool and associates it with the instance's
	// first fixed IP, as nova's auto_assign_floating_ip.
	AutoAssignFloatingIP bool
	// DefaultFloatingPool is the pool of requests that name none; default
	// "nova".
	DefaultFloatingPool string
	// FloatingIPQuota is a project's floating IP limit without a quota of
	// its own: default (0) 10, -1 unlimited. Give a project none with a
	// quota of its own (quota_set).
	FloatingIPQuota int
}

// Manager serves the RPC API over a database pool.
type Manager struct {
	pool    *pgxpool.Pool
	log     *zap.Logger
	cfg     Config
	metrics *metrics
	// notifyCtx bounds notifications to agents; Stop cancels it, so that
	// shutdown does not wait for agents that do not answer.
	notifyCtx    context.Context
	cancelNotify context.CancelFunc
	notices      *notices // set by Serve

	sem    chan struct{} // one per running request
	queued chan struct{} // one per request waiting for a worker
	wg     sync.WaitGroup
}

// New returns a Manager. reg receives its Prometheus metrics (nil: none).
func New(pool *pgxpool.Pool, log *zap.Logger, cfg Config, reg prometheus.Registerer) (*Manager, error) {
	if cfg.Mode == "" {
		cfg.Mode = ModeFlatDHCP
	}
	if _, err := ParseMode(string(cfg.Mode)); err != nil {
		return nil, err
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.Queue <= 0 {
		cfg.Queue = cfg.Workers * queueFactor
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.DisassociateTimeout <= 0 {
		cfg.DisassociateTimeout = 10 * time.Minute
	}
	if cfg.MACRetries <= 0 {
		cfg.MACRetries = 5
	}
	if cfg.DefaultFloatingPool == "" {
		cfg.DefaultFloatingPool = rpc.DefaultFloatingPool
	}
	if err := checkPoolName("default floating pool", cfg.DefaultFloatingPool); err != nil {
		return nil, err
	}
	if cfg.FloatingIPQuota == 0 {
		cfg.FloatingIPQuota = rpc.DefaultFloatingIPQuota
	}
	if cfg.FloatingIPQuota < rpc.QuotaUnlimited {
		return nil, fmt.Errorf("floating IP quota %d: want -1 (unlimited) or at least 1", cfg.FloatingIPQuota)
	}
	if cfg.Version == "" {
		cfg.Version = "0.1.0"
	}
	if cfg.RequestIDWindow <= 0 {
		cfg.RequestIDWindow = 24 * time.Hour
	}
	m := &Manager{pool: pool, log: log, cfg: cfg, sem: make(chan struct{}, cfg.Workers),
		queued: make(chan struct{}, cfg.Queue)}
	var err error
	if m.metrics, err = newMetrics(reg); err != nil {
		return nil, err
	}
	return m, nil
}

// Service is a running manager service on one NATS connection.
type Service struct {
	svc micro.Service
	m   *Manager
}

type handlerFunc func(ctx context.Context, data []byte) (any, error)

// decoding makes a handler of a method that takes its request decoded.
func decoding[Req, Reply any](f func(context.Context, Req) (Reply, error)) handlerFunc {
	return func(ctx context.Context, data []byte) (any, error) {
		var req Req
		if err := rpc.Decode(data, &req); err != nil {
			return nil, err
		}
		return f(ctx, req)
	}
}

func (m *Manager) handlers() map[string]handlerFunc {
	return map[string]handlerFunc{
		rpc.MethodCreateNetworks: m.handleCreateNetworks,
		rpc.MethodGetAllNetworks: m.handleGetAllNetworks,
		rpc.MethodGetNetwork:     m.handleGetNetwork,
		rpc.MethodDeleteNetwork:  m.handleDeleteNetwork,
		rpc.MethodStopNetwork:    m.handleSetNetworkStopped(true),
		rpc.MethodStartNetwork:   m.handleSetNetworkStopped(false),

		rpc.MethodAllocateForInstance:       decoding(m.AllocateForInstance),
		rpc.MethodDeallocateForInstance:     m.handleDeallocateForInstance,
		rpc.MethodAddFixedIPToInstance:      decoding(m.AddFixedIPToInstance),
		rpc.MethodRemoveFixedIPFromInstance: m.handleRemoveFixedIP,
		rpc.MethodGetInstanceNWInfo:         m.handleGetInstanceNWInfo,
		rpc.MethodLeaseFixedIP:              decoding(m.LeaseFixedIP),
		rpc.MethodReleaseFixedIP:            decoding(m.ReleaseFixedIP),
		rpc.MethodGetFixedIPByAddress:       m.handleGetFixedIPByAddress,
		rpc.MethodGetFixedIPsByInstance:     m.handleGetFixedIPsByInstance,
		rpc.MethodListFixedIPs:              m.handleListFixedIPs,
		rpc.MethodReserveFixedIP:            m.handleReserveFixedIP,
		rpc.MethodUnreserveFixedIP:          m.handleUnreserveFixedIP,

		rpc.MethodListHosts: m.handleListHosts,

		rpc.MethodCreateFloatingIPs:            decoding(m.CreateFloatingIPs),
		rpc.MethodDeleteFloatingIPs:            m.handleDeleteFloatingIPs,
		rpc.MethodListFloatingIPs:              decoding(m.ListFloatingIPs),
		rpc.MethodGetFloatingPools:             m.handleGetFloatingPools,
		rpc.MethodAllocateFloatingIP:           decoding(m.AllocateFloatingIP),
		rpc.MethodDeallocateFloatingIP:         decoding(m.DeallocateFloatingIP),
		rpc.MethodAssociateFloatingIP:          decoding(m.AssociateFloatingIP),
		rpc.MethodDisassociateFloatingIP:       decoding(m.DisassociateFloatingIP),
		rpc.MethodGetFloatingIPsByProject:      m.handleGetFloatingIPsByProject,
		rpc.MethodGetFloatingIPByAddress:       m.handleGetFloatingIPByAddress,
		rpc.MethodGetFloatingIPsByFixedAddress: m.handleGetFloatingIPsByFixedAddress,
		rpc.MethodQuotaSet:                     decoding(m.QuotaSet),
		rpc.MethodQuotaShow:                    m.handleQuotaShow,
	}
}

// Serve registers the manager's endpoints on nc. Requests run until ctx
// is cancelled; call Stop on the result to stop taking requests and wait
// for those under way.
func (m *Manager) Serve(ctx context.Context, nc *nats.Conn) (*Service, error) {
	svc, err := micro.AddService(nc, micro.Config{
		Name:        rpc.ServiceName,
		Version:     m.cfg.Version,
		Description: "novanet network manager (" + string(m.cfg.Mode) + " mode)",
		QueueGroup:  rpc.QueueGroup,
		Metadata:    map[string]string{"mode": string(m.cfg.Mode)},
	})
	if err != nil {
		return nil, fmt.Errorf("add micro service: %w", err)
	}
	m.notifyCtx, m.cancelNotify = context.WithCancel(context.WithoutCancel(ctx))
	m.notices = newNotices(nc, m.log, m.metrics)
	for range noticeWorkers {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.notices.run(m.notifyCtx)
		}()
	}
	g := svc.AddGroup(rpc.ManagerPrefix)
	hs := m.handlers()
	for _, name := range rpc.ManagerMethods {
		h, ok := hs[name]
		if !ok {
			_ = svc.Stop()
			return nil, fmt.Errorf("no handler for method %s", name)
		}
		if err := g.AddEndpoint(name, m.dispatch(ctx, nc, name, h)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("add endpoint %s: %w", name, err)
		}
	}
	if err := m.addHostEndpoints(ctx, nc, g); err != nil {
		_ = svc.Stop()
		return nil, err
	}
	// Flush: when Serve returns, the server has our subscriptions, so a
	// request sent right after on another connection finds a responder.
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("flush subscriptions: %w", err)
	}
	return &Service{svc: svc, m: m}, nil
}

// Info is this replica's answer to $SRV.INFO: its id and endpoints.
func (s *Service) Info() micro.Info { return s.svc.Info() }

// Stats is this replica's answer to $SRV.STATS: requests per endpoint.
func (s *Service) Stats() micro.Stats { return s.svc.Stats() }

// Stop unsubscribes the endpoints and waits for requests under way.
func (s *Service) Stop() error {
	err := s.svc.Stop()
	s.m.cancelNotify()
	s.m.wg.Wait()
	return err
}

// dispatch turns a handler into a micro.Handler that runs each request on
// its own goroutine, at most cfg.Workers at a time across all endpoints,
// in the order they came. Up to cfg.Queue requests wait for a worker; one
// more is answered unavailable at once (shed: the caller backs off and
// retries, rather than every queued request timing out). A request whose
// deadline (the caller's Novanet-Deadline, or RequestTimeout after it
// came) passes while it waits is answered unavailable without being run,
// and one that runs is cancelled at its deadline. The reply is published
// on nc directly: micro's request object is not safe to use once its
// handler has returned, so $SRV.STATS counts requests but not errors (the
// Prometheus metrics have both).
func (m *Manager) dispatch(ctx context.Context, nc *nats.Conn, method string, h handlerFunc) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		received := time.Now()
		reply, data, hdr := req.Reply(), req.Data(), req.Headers()
		select {
		case m.queued <- struct{}{}:
		default:
			m.metrics.shed.Inc()
			m.send(nc, method, reply, nil, errOverloaded)
			m.metrics.observe(method, string(rpc.CodeUnavailable), 0)
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.sem <- struct{}{}
			<-m.queued
			defer func() { <-m.sem }()
			start := time.Now()
			res, err := m.handle(ctx, method, h, hdr, data, received)
			code := m.send(nc, method, reply, res, err)
			m.metrics.observe(method, code, time.Since(start))
		}()
	})
}

// replyRoom is what a reply's subject and headers may take of NATS's
// max payload beside its body.
const replyRoom = 1024

// send publishes the reply to a request (none when it has no reply
// subject) and returns its code: res, or err as an error reply. A reply
// too large for the connection's max payload is not published as is
// (NATS would drop it and the caller wait for its timeout): the caller
// gets too_large instead.
func (m *Manager) send(nc *nats.Conn, method, reply string, res []byte, err error) string {
	if err == nil && int64(len(res))+replyRoom > nc.MaxPayload() {
		m.log.Warn("reply too large for NATS: sent too_large instead", zap.String("method", method),
			zap.Int("bytes", len(res)), zap.Int64("max_payload", nc.MaxPayload()))
		err = rpc.Errorf(rpc.CodeTooLarge, "the %s reply is %d bytes, over what NATS carries (max payload %d); ask for less: a smaller limit, the next page, one network",
			method, len(res), nc.MaxPayload())
	}
	code := "ok"
	msg := &nats.Msg{Subject: reply, Data: res}
	if err != nil {
		e := m.toRPCError(method, err)
		code = string(e.Code)
		msg = rpc.ErrorMsg(reply, e)
	}
	if reply != "" {
		if perr := nc.PublishMsg(msg); perr != nil {
			m.log.Warn("reply", zap.String("method", method), zap.Error(perr))
		}
	}
	return code
}

// queueFactor: requests that may wait for a worker, per worker.
const queueFactor = 64

// errOverloaded: the replica's queue of requests waiting for a worker is
// full.
var errOverloaded = rpc.Errorf(rpc.CodeUnavailable, "manager overloaded: too many requests waiting for a worker; retry with backoff")

// errExpired: the request's deadline passed before a worker took it.
var errExpired = rpc.Errorf(rpc.CodeUnavailable, "not run: the caller's deadline passed while the request waited for a worker; retry")

// handle runs one request within its deadline, through the request id
// store for the methods that need it (requests.go), and returns the JSON
// reply.
func (m *Manager) handle(ctx context.Context, method string, h handlerFunc, hdr micro.Headers, data []byte, received time.Time) ([]byte, error) {
	id, err := rpc.ParseRequestID(hdr.Get(rpc.HeaderRequestID))
	if err != nil {
		return nil, err
	}
	deadline, err := rpc.ParseDeadline(hdr.Get(rpc.HeaderDeadline))
	if err != nil {
		return nil, err
	}
	if limit := received.Add(m.cfg.RequestTimeout); deadline.IsZero() || deadline.After(limit) {
		deadline = limit
	}
	if late := time.Since(deadline); late >= 0 {
		m.metrics.expired.Inc()
		m.log.Info("request not run: its deadline passed while it waited", zap.String("method", method),
			zap.String("request_id", id), zap.Duration("late", late), zap.Duration("waited", time.Since(received)))
		return nil, errExpired
	}
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if id != "" && requestIDs[method] {
		rctx = withRequestKey(rctx, method, id, data)
	}
	res, err := h(rctx, data)
	if err != nil {
		return nil, err
	}
	return json.Marshal(res)
}

// toRPCError turns any error into the one sent on the wire: *rpc.Error as
// is, database constraint violations as conflict or invalid_argument,
// transient database failures (see transient) and running out of time as
// unavailable, which callers retry, and anything else as internal (the
// details go to the log, not to the caller).
func (m *Manager) toRPCError(method string, err error) *rpc.Error {
	if e := rpc.AsError(err); e != nil {
		return e
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505", "23P01": // unique_violation, exclusion_violation
			return rpc.Errorf(rpc.CodeConflict, "%s (%s)", pe.Message, pe.ConstraintName)
		case "23514", "22P02", "22023": // check_violation, invalid_text_representation, invalid_parameter_value
			return rpc.Errorf(rpc.CodeInvalidArgument, "%s", pe.Message)
		case "23503":
			return rpc.Errorf(rpc.CodeConflict, "%s", pe.Message)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		m.log.Warn("request timed out", zap.String("method", method), zap.Error(err))
		return rpc.Errorf(rpc.CodeUnavailable, "%s ran out of time; retry", method)
	}
	if why := transient(err); why != "" {
		m.log.Warn("database unavailable", zap.String("method", method), zap.String("why", why), zap.Error(err))
		return rpc.Errorf(rpc.CodeUnavailable, "database unavailable (%s); retry", why)
	}
	m.log.Error("request failed", zap.String("method", method), zap.Error(err))
	return rpc.Errorf(rpc.CodeInternal, "internal error in %s; see the manager's log", method)
}

// transient says why err is a failure that the same request may not meet
// again, or "" when it is not one: the database restarting, shutting down
// or refusing connections, a lost connection, a serialization failure or
// deadlock (PostgreSQL rolled the transaction back), running out of
// connections or resources, a cancelled statement. Every such error rolls
// the transaction back, so the request changed nothing.
func transient(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "40001":
			return "serialization failure"
		case pe.Code == "40P01":
			return "deadlock detected"
		case pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", pe.Code == "57P04":
			return "database restarting: " + pe.Message
		case pe.Code == "57014":
			return "statement cancelled"
		case pe.Code == "55P03":
			return "lock not available"
		case pe.Code == "25006":
			return "database is read-only (a standby?)"
		case strings.HasPrefix(pe.Code, "08"):
			return "connection failure: " + pe.Message
		case strings.HasPrefix(pe.Code, "53"):
			return "database out of resources: " + pe.Message
		}
		return ""
	}
	var (
		ce *pgconn.ConnectError
		ne net.Error
	)
	switch {
	case errors.As(err, &ce):
		return "cannot connect"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "connection lost"
	case errors.Is(err, pgconn.ErrConnClosed):
		return "connection closed"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNREFUSED):
		return "connection lost"
	case pgconn.Timeout(err), errors.As(err, &ne):
		return "network error"
	case pgconn.SafeToRetry(err):
		return "connection not usable"
	}
	return ""
}

// Ready reports whether the database answers.
func (m *Manager) Ready(ctx context.Context) error {
	return m.pool.Ping(ctx)
}
