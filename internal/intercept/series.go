package intercept

import "github.com/composio-guard/composio-guard/internal/reqscope"

// The closed label sets of the guard's metrics, every combination the guard
// can count in any configuration. The assembly (internal/app) creates each
// at zero before the first request, so that dashboards and rules see zeros,
// not "No data"; the guard's tests check that it never counts a combination
// outside them.

// Modes lists the guard modes. A guard runs in one, but its decisions'
// series exist for all three: a counter at zero for a mode the process is
// not in is true, and the dashboard selects on mode.
func Modes() []Mode { return []Mode{ModeEnforce, ModeShadow, ModeOff} }

// Decisions of the duplicate guard (link, create, session link).
func linkDecisions() []string {
	return []string{
		DecisionAllowed, DecisionAllowedMultiple, DecisionRejectedDuplicate, DecisionReplayedPending,
		DecisionRejectedPending, DecisionFailedOpen, DecisionFailedClosed, DecisionInvalidRequest,
		DecisionLookupRefused, DecisionRejectedUnverifiable, DecisionClientGone,
	}
}

// Decisions of the sandbox and session policies on a session route: only
// a create gets a default inserted (defaulted).
func sessionDecisions(route string) []string {
	d := []string{DecisionAllowed, DecisionRejectedInvalid, DecisionRejectedPolicy, DecisionInvalidRequest, DecisionClientGone}
	if route == reqscope.RouteSessionCreate {
		d = append(d, DecisionDefaulted)
	}
	return d
}

// DecisionSeries returns every {route, decision, mode} of
// composio_guard_decisions_total: in enforce and shadow, the decisions of
// each route's policy (a disguised request on a pass-through route is
// invalid_request); with the guard off, "off" on every route.
func DecisionSeries() [][3]string {
	var out [][3]string
	for _, mode := range []Mode{ModeEnforce, ModeShadow} {
		add := func(route string, decisions []string) {
			for _, d := range decisions {
				out = append(out, [3]string{route, d, string(mode)})
			}
		}
		add(reqscope.RoutePassthrough, []string{DecisionInvalidRequest})
		add(reqscope.RouteLink, linkDecisions())
		add(reqscope.RouteCreate, linkDecisions())
		add(reqscope.RouteSessionLink, linkDecisions())
		add(reqscope.RouteSessionCreate, sessionDecisions(reqscope.RouteSessionCreate))
		add(reqscope.RouteSessionUpdate, sessionDecisions(reqscope.RouteSessionUpdate))
	}
	for _, route := range reqscope.Routes() {
		out = append(out, [3]string{route, DecisionOff, string(ModeOff)})
	}
	return out
}

// SandboxSeries returns every {route, size, decision} of
// composio_guard_sandbox_requests_total: on the session routes, a tier or
// "default" is allowed or refused by the policy (and, on a create, may get
// a default inserted: defaulted); a body that cannot be read or a tier that
// is none is "invalid".
func SandboxSeries() [][3]string {
	var out [][3]string
	for _, route := range []string{reqscope.RouteSessionCreate, reqscope.RouteSessionUpdate} {
		decisions := []string{DecisionAllowed, DecisionRejectedPolicy}
		if route == reqscope.RouteSessionCreate {
			decisions = append(decisions, DecisionDefaulted)
		}
		sizes := []string{sizeDefault}
		for _, s := range SandboxSizes {
			sizes = append(sizes, string(s))
		}
		for _, size := range sizes {
			for _, d := range decisions {
				out = append(out, [3]string{route, size, d})
			}
		}
		out = append(out, [3]string{route, sizeInvalid, DecisionRejectedInvalid}, [3]string{route, sizeInvalid, DecisionInvalidRequest})
	}
	return out
}

// LeaseResults are the results of composio_guard_pending_leases_total the
// guard counts (the memory store counts metrics.LeaseEvicted).
func LeaseResults() []string { return []string{leaseHit, leaseMiss, leaseStale, leaseStored} }

// LockErrorReasons are the reasons of composio_guard_lock_errors_total the
// guard counts itself, for any backend; a backend counts its own
// (lock.ErrorReasons).
func LockErrorReasons() []string { return []string{lockErrTimeout} }
