package upstream

// The closed label sets of the upstream metrics, every combination the
// lookup client and the instrumented transports can count. The assembly
// (internal/app) creates each at zero before the first request; the tests
// check that nothing else is counted.

// BreakerLookup is the breaker label of the lookup's circuit breakers
// (composio_guard_circuit_breaker_state).
const BreakerLookup = "lookup"

// Breakers lists the breaker label's values.
func Breakers() []string { return []string{BreakerLookup} }

// LookupResults lists the result label of
// composio_guard_lookup_duration_seconds.
func LookupResults() []string { return append([]string(nil), lookupResults[:]...) }

// ErrorReasons lists the reasons StatusFor gives a call that got no answer.
func ErrorReasons() []string {
	return []string{ReasonClientGone, ReasonTimeout, ReasonBodyTooLarge, ReasonConnRefused, ReasonConnReset,
		ReasonDNS, ReasonTLS, ReasonEOF, ReasonOther}
}

// ErrorSeries returns every {op, reason} of composio_guard_upstream_errors_total:
// a forward can fail for every reason; a lookup sends no body of the
// caller's, so never for body_too_large.
func ErrorSeries() [][2]string {
	var out [][2]string
	for _, r := range ErrorReasons() {
		out = append(out, [2]string{OpForward, r})
		if r != ReasonBodyTooLarge {
			out = append(out, [2]string{OpLookup, r})
		}
	}
	return out
}
