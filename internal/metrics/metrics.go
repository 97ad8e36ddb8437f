// Package metrics owns every metric the binary exposes, on a private registry.
// Labels are closed sets only: never a user id, auth config id, account id,
// credential or raw path.
package metrics

import (
	"math"
	"net/http"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "composio_guard"

// LeaseEvicted is the result of Leases counted when the memory store, full,
// evicts a live pending-link lease (the one closest to expiry).
const LeaseEvicted = "evicted"

// Buckets for latencies of a SaaS reached over the internet (5 ms to 30 s).
var wideBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Buckets for the proxy's own overhead (20 µs to 50 ms).
var fineBuckets = []float64{0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05}

// CreatedOnFirstUse names the labelled families that have no series until
// the first request: their code label is open (whatever status Composio
// answers is passed on), so no combination is known in advance. Every
// other labelled family has its closed label sets created at zero when the
// proxy starts (internal/app, docs/monitoring.md, "Series at the first scrape").
func CreatedOnFirstUse() []string {
	return []string{namespace + "_http_requests_total", namespace + "_http_request_duration_seconds"}
}

// Build describes the running binary for composio_guard_build_info.
type Build struct {
	Version  string
	Revision string
}

// Metrics holds every collector. Fields are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	HTTPRequests  *prometheus.CounterVec   // route, method, code
	HTTPDuration  *prometheus.HistogramVec // route, method, code
	Overhead      *prometheus.HistogramVec // route
	InFlight      prometheus.Gauge
	Decisions     *prometheus.CounterVec   // route, decision, mode
	Lookup        *prometheus.HistogramVec // result: ok, error, timeout, refused (401/403/429), rejected (caller-caused), breaker_open, canceled
	UpstreamErrs  *prometheus.CounterVec   // op (forward, lookup), reason
	RateLimitLeft prometheus.Gauge
	LockWait      *prometheus.HistogramVec // backend
	LockErrors    *prometheus.CounterVec   // backend, reason
	Leases        *prometheus.CounterVec   // result: hit, miss, stale, stored, evicted
	BackendUp     *prometheus.GaugeVec     // backend: 1 when the shared-state backend answers
	Sandbox       *prometheus.CounterVec   // route, size, decision
	BreakerState  *prometheus.GaugeVec     // breaker: the worst of its tenants' states, 0 closed, 1 half-open, 2 open
	Draining      prometheus.Gauge

	// The periodic audit (internal/audit): registered always, neutral (0)
	// while it is off, so that alert rules can test AuditInterval > 0.
	AuditInterval        prometheus.Gauge // seconds between audits; 0: off
	AuditDuplicateGroups prometheus.Gauge
	AuditNewGroups       prometheus.Gauge // duplicate groups the audit before did not report
	AuditScanned         prometheus.Gauge
	AuditLastSuccess     prometheus.Gauge       // unix seconds; 0: never
	AuditErrors          *prometheus.CounterVec // reason: AuditErrorReasons
	// LockUnreplicated counts Redis lock and lease writes that fewer than
	// GUARD_REDIS_MIN_REPLICAS replicas acknowledged in time; op: lock, lease.
	LockUnreplicated *prometheus.CounterVec
}

// AuditErrorReasons is the closed set of composio_guard_audit_errors_total's
// reason label, each series at 0 from the start.
var AuditErrorReasons = []string{"partial", "refused", "rate_limited", "upstream", "bad_answer", "timeout", "lock"}

// New registers every collector on a fresh private registry.
func New(b Build) *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{reg: reg}

	m.HTTPRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "http_requests_total",
		Help: "Requests answered by the proxy, by route, method and status code.",
	}, []string{"route", "method", "code"})
	m.HTTPDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "http_request_duration_seconds",
		Help:    "End-to-end time to answer a request, upstream time included.",
		Buckets: wideBuckets,
	}, []string{"route", "method", "code"})
	m.Overhead = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "proxy_overhead_seconds",
		Help:    "Time the proxy itself spent on a request, upstream and lookup time excluded.",
		Buckets: fineBuckets,
	}, []string{"route"})
	m.InFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "http_requests_in_flight",
		Help: "Requests being served right now.",
	})
	m.Decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "decisions_total",
		Help: "Guard decisions, by route, decision and guard mode.",
	}, []string{"route", "decision", "mode"})
	m.Lookup = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "lookup_duration_seconds",
		Help:    "Time of the guard's connected-account lookup, all pages, by result (ok, error, timeout, refused, rejected, breaker_open, canceled).",
		Buckets: wideBuckets,
	}, []string{"result"})
	m.UpstreamErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "upstream_errors_total",
		Help: "Calls to Composio that got no answer, by operation and reason.",
	}, []string{"op", "reason"})
	m.RateLimitLeft = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "upstream_rate_limit_remaining",
		Help: "The last X-RateLimit-Remaining value Composio sent; NaN until an answer carries one.",
	})
	// NaN, not 0, until Composio answers: a replica that has not heard from
	// it yet (an idle sidecar, a fresh pod) must not read as out of
	// headroom. min() and `< 200` skip it.
	m.RateLimitLeft.Set(math.NaN())
	m.LockWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "lock_wait_seconds",
		Help:    "Time spent waiting for the per-key guard lock, by backend.",
		Buckets: []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30},
	}, []string{"backend"})
	m.LockErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "lock_errors_total",
		Help: "Failures to take or release the guard lock or to use a lease, by backend and reason.",
	}, []string{"backend", "reason"})
	m.Leases = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "pending_leases_total",
		Help: "Pending-link lease look-ups and writes, by result (hit, miss, stale, stored, evicted).",
	}, []string{"result"})
	// The guard creates its own results' series; this one moves in the
	// memory store (cmd/proxy wires it), and is at zero from the start.
	m.Leases.WithLabelValues(LeaseEvicted)
	m.BackendUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "lock_backend_up",
		Help: "1 when the shared-state backend answered its last call, else 0.",
	}, []string{"backend"})
	m.LockUnreplicated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "lock_unreplicated_total",
		Help: "Redis lock and lease writes not acknowledged by GUARD_REDIS_MIN_REPLICAS replicas in time, by op (lock, lease).",
	}, []string{"op"})
	f(m.LockUnreplicated)
	for _, op := range []string{"lock", "lease"} {
		m.LockUnreplicated.WithLabelValues(op) // at zero from the start
	}
	m.Sandbox = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "sandbox_requests_total",
		Help: "Tool Router session requests seen by the sandbox policy, by route, tier and decision.",
	}, []string{"route", "size", "decision"})
	m.BreakerState = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "circuit_breaker_state",
		Help: "State of a circuit breaker, the worst among its tenants: 0 closed, 1 half-open, 2 open.",
	}, []string{"breaker"})
	m.Draining = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "draining",
		Help: "1 while the proxy drains before shutting down.",
	})
	m.AuditInterval = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "audit_interval_seconds",
		Help: "Seconds between two periodic audits of the project's connected accounts (GUARD_AUDIT_INTERVAL); 0 when the audit is off.",
	})
	m.AuditDuplicateGroups = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "audit_duplicate_groups",
		Help: "Duplicate groups (user, auth config, account type) the last complete audit found; 0 before the first.",
	})
	m.AuditNewGroups = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "audit_new_duplicate_groups",
		Help: "Duplicate groups of the last complete audit that the audit before it did not report; 0 after the first.",
	})
	m.AuditScanned = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "audit_accounts_scanned",
		Help: "Connected accounts the last complete audit read.",
	})
	m.AuditLastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "audit_last_success_timestamp_seconds",
		Help: "Unix time the last complete audit finished (by this replica or, with Redis, another); 0 before the first.",
	})
	m.AuditErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "audit_errors_total",
		Help: "Periodic audits that did not complete, by reason (partial, refused, rate_limited, upstream, bad_answer, timeout, lock).",
	}, []string{"reason"})
	for _, r := range AuditErrorReasons {
		m.AuditErrors.WithLabelValues(r)
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; labels describe the running binary.",
	}, []string{"version", "revision", "goversion"})
	buildInfo.WithLabelValues(b.Version, b.Revision, runtime.Version()).Set(1)

	for _, c := range []prometheus.Collector{
		m.HTTPRequests, m.HTTPDuration, m.Overhead, m.InFlight, m.Decisions, m.Lookup,
		m.UpstreamErrs, m.RateLimitLeft, m.LockWait, m.LockErrors, m.Leases, m.BackendUp,
		m.Sandbox, m.BreakerState, m.Draining, buildInfo,
		m.AuditInterval, m.AuditDuplicateGroups, m.AuditNewGroups, m.AuditScanned, m.AuditLastSuccess, m.AuditErrors,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		f(c)
	}
	return m
}

// Registry exposes the private registry (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the exposition format for the admin listener.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
