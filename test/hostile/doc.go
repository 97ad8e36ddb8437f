// Package hostile owns the hostile-client suite: the proxy binary runs as a
// real process and is fed slowloris headers and bodies, oversized headers,
// ambiguous framing (Content-Length with Transfer-Encoding), clients that
// vanish mid-request, and spoofed Host, absolute-form URIs and forwarding
// headers. Each test asserts what an honest client and the upstream see.
// Everything is in the tests.
package hostile
