// Package upstream owns everything that talks to Composio: the one tuned
// transport, its instrumentation, the pass-through ReverseProxy, the guard's
// typed list client with its per-tenant circuit breakers, and StatusFor, the
// one mapping from a failed call to the status the client sees. It knows
// nothing of policy: the guard (package intercept) decides what a lookup
// result means.
package upstream
