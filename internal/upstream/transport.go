package upstream

import (
	"net"
	"net/http"
	"time"
)

// Fixed tuning of the transport, beside TransportSettings.
const (
	expectContinueTimeout = time.Second
	maxIdleConns          = 512
)

// NewTransport builds the transport to Composio. Build it once at start-up
// and share it: connections are pooled per transport. A zero field of s
// takes its default (DefaultTransportSettings); s.URL is not read here.
func NewTransport(s TransportSettings) *http.Transport {
	def := DefaultTransportSettings()
	d := &net.Dialer{Timeout: orDur(s.DialTimeout, def.DialTimeout), KeepAlive: 30 * time.Second}
	return &http.Transport{
		// Explicitly no proxy from HTTP_PROXY / HTTPS_PROXY: the upstream is
		// the one configured URL, reached directly.
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   orDur(s.TLSHandshakeTimeout, def.TLSHandshakeTimeout),
		ResponseHeaderTimeout: orDur(s.ResponseHeaderTimeout, def.ResponseHeaderTimeout),
		IdleConnTimeout:       orDur(s.IdleConnTimeout, def.IdleConnTimeout),
		ExpectContinueTimeout: expectContinueTimeout,
		MaxIdleConns:          maxIdleConns,
		MaxIdleConnsPerHost:   orInt(s.MaxIdleConnsPerHost, def.MaxIdleConnsPerHost),
		// The client's own Accept-Encoding goes up as sent; the transport
		// must not add gzip and decode answers behind the client's back.
		DisableCompression: true,
	}
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
