package upstream

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// TransportOptions tune the one transport to Composio. Zero durations and
// counts take the defaults below.
type TransportOptions struct {
	DialTimeout           time.Duration // default 5s
	TLSHandshakeTimeout   time.Duration // default 5s
	ResponseHeaderTimeout time.Duration // default 60s: bounds a stalled upstream (the proxy port has no write timeout)
	IdleConnTimeout       time.Duration // default 90s
	ExpectContinueTimeout time.Duration // default 1s
	MaxIdleConns          int           // default 512
	MaxIdleConnsPerHost   int           // default 256: one host behind the proxy, so the per-host cap is the one that matters
	// TLSClientConfig, when set, is cloned (tests trust a test server's
	// certificate through it). nil means the system roots.
	TLSClientConfig *tls.Config
}

// Transport defaults.
const (
	DefaultDialTimeout           = 5 * time.Second
	DefaultTLSHandshakeTimeout   = 5 * time.Second
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultIdleConnTimeout       = 90 * time.Second
	DefaultExpectContinueTimeout = time.Second
	DefaultMaxIdleConns          = 512
	DefaultMaxIdleConnsPerHost   = 256
)

// NewTransport builds the transport to Composio. Build it once at start-up
// and share it: connections are pooled per transport.
func NewTransport(o TransportOptions) *http.Transport {
	d := &net.Dialer{Timeout: orDur(o.DialTimeout, DefaultDialTimeout), KeepAlive: 30 * time.Second}
	t := &http.Transport{
		// Explicitly no proxy from HTTP_PROXY / HTTPS_PROXY: the upstream is
		// the one configured URL, reached directly.
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   orDur(o.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout),
		ResponseHeaderTimeout: orDur(o.ResponseHeaderTimeout, DefaultResponseHeaderTimeout),
		IdleConnTimeout:       orDur(o.IdleConnTimeout, DefaultIdleConnTimeout),
		ExpectContinueTimeout: orDur(o.ExpectContinueTimeout, DefaultExpectContinueTimeout),
		MaxIdleConns:          orInt(o.MaxIdleConns, DefaultMaxIdleConns),
		MaxIdleConnsPerHost:   orInt(o.MaxIdleConnsPerHost, DefaultMaxIdleConnsPerHost),
		// The client's own Accept-Encoding goes up as sent; the transport
		// must not add gzip and decode answers behind the client's back.
		DisableCompression: true,
	}
	if o.TLSClientConfig != nil {
		t.TLSClientConfig = o.TLSClientConfig.Clone()
	}
	return t
}

func orDur(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

func orInt(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}
