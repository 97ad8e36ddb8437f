// Package e2e owns the end-to-end suite of the guarding proxy: it builds the
// real binaries (cmd/proxy and cmd/fakecomposio), runs them as processes on
// loopback and plays every guard scenario over real HTTP, asserting what a
// client gets back and what reached the (fake) Composio API. Everything is in
// the tests; this file only documents the package.
//
// Run it with: go test -race -count=1 ./test/e2e/
package e2e
