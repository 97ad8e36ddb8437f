package app

import (
	"github.com/composio-guard/composio-guard/internal/intercept"
	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/reqscope"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

// createSeries creates at zero, before the first request, every series of a
// closed label set the proxy can count, from the label lists of the
// packages that count them: dashboards and rules then read zeros, not "No
// data", and rate() and absent() behave from the first scrape. It is the
// one place that says which series exist at start (docs/monitoring.md, "Series at the first scrape").
//
// Left to their first use: the HTTP request families, whose code label is
// open (metrics.CreatedOnFirstUse). The lock series carry only the backend
// in use: a Redis series has no true value in a process without Redis.
func createSeries(m *metrics.Metrics, backend string) {
	for _, r := range reqscope.Routes() {
		m.Overhead.WithLabelValues(r)
	}
	for _, s := range intercept.DecisionSeries() {
		m.Decisions.WithLabelValues(s[0], s[1], s[2])
	}
	for _, s := range intercept.SandboxSeries() {
		m.Sandbox.WithLabelValues(s[0], s[1], s[2])
	}
	for _, r := range upstream.LookupResults() {
		m.Lookup.WithLabelValues(r)
	}
	for _, s := range upstream.ErrorSeries() {
		m.UpstreamErrs.WithLabelValues(s[0], s[1])
	}
	for _, b := range upstream.Breakers() {
		m.BreakerState.WithLabelValues(b) // 0: closed
	}
	for _, r := range intercept.LeaseResults() {
		m.Leases.WithLabelValues(r)
	}
	m.LockWait.WithLabelValues(backend)
	for _, r := range lockErrorReasons(backend) {
		m.LockErrors.WithLabelValues(backend, r)
	}
	up := m.BackendUp.WithLabelValues(backend)
	if backend == string(lock.BackendMemory) {
		up.Set(1) // the process's own memory always answers; the Redis store sets its own from its calls
	}
}

// lockErrorReasons are the reasons of composio_guard_lock_errors_total
// counted with backend: the guard's own and the backend's.
func lockErrorReasons(backend string) []string {
	return append(intercept.LockErrorReasons(), lock.ErrorReasons(lock.Backend(backend))...)
}
