// Package bench measures composio-guard's cost. Its tests benchmark the whole
// request path in process (middleware chain, guard, list client and
// ReverseProxy against an in-process upstream) and assert allocation
// budgets; bench/run.sh runs the load benchmark over loopback against a bare
// httputil.ReverseProxy (cmd/bareproxy), a naive guard for the guarded links
// (cmd/naiveguard) and a tiny upstream (cmd/upstream), driven by
// cmd/loadbench.
package bench
