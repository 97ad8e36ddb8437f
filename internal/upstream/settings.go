package upstream

import (
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/composio-guard/composio-guard/internal/settings"
)

// TransportSettings say where Composio is and how the one transport reaches
// it (GUARD_UPSTREAM_*; the envDefault tags are the defaults). A zero
// duration or count takes its default.
type TransportSettings struct {
	// The Composio API the proxy forwards to: an absolute `http` or `https`
	// URL with a host, and no query, fragment or user info (credentials
	// always come from each caller). A path prefix is allowed.
	URL string `env:"UPSTREAM_URL" envDefault:"https://backend.composio.dev"`
	// Time limit for opening a TCP connection to Composio.
	DialTimeout time.Duration `env:"UPSTREAM_DIAL_TIMEOUT" envDefault:"5s"`
	// Time limit for the TLS handshake with Composio.
	TLSHandshakeTimeout time.Duration `env:"UPSTREAM_TLS_HANDSHAKE_TIMEOUT" envDefault:"5s"`
	// Time limit for Composio's response headers once the request is sent;
	// when it runs out, the client gets `504`. It bounds a stalled upstream
	// (the proxy port has no write timeout).
	ResponseHeaderTimeout time.Duration `env:"UPSTREAM_RESPONSE_HEADER_TIMEOUT" envDefault:"60s"`
	// How long idle upstream connections are kept.
	IdleConnTimeout time.Duration `env:"UPSTREAM_IDLE_CONN_TIMEOUT" envDefault:"90s"`
	// Idle upstream connections kept for reuse (one host is behind the
	// proxy, so the per-host cap is the one that matters).
	MaxIdleConnsPerHost int `env:"UPSTREAM_MAX_IDLE_CONNS_PER_HOST" envDefault:"256"`
}

// DefaultTransportSettings are TransportSettings as their envDefault tags set them.
func DefaultTransportSettings() TransportSettings { return settings.Defaults[TransportSettings]() }

// Base returns the parsed upstream URL; nil only when Validate fails.
func (s TransportSettings) Base() *url.URL {
	u, err := url.Parse(s.URL)
	if err != nil {
		return nil
	}
	return u
}

// Validate reports every problem of s, one error per variable.
func (s TransportSettings) Validate() error {
	var p settings.Problems
	if err := checkUpstreamURL(s.URL); err != nil {
		p.Add("UPSTREAM_URL", "%v", err)
	}
	p.Positive("UPSTREAM_DIAL_TIMEOUT", s.DialTimeout)
	p.Positive("UPSTREAM_TLS_HANDSHAKE_TIMEOUT", s.TLSHandshakeTimeout)
	p.Positive("UPSTREAM_RESPONSE_HEADER_TIMEOUT", s.ResponseHeaderTimeout)
	p.Positive("UPSTREAM_IDLE_CONN_TIMEOUT", s.IdleConnTimeout)
	if s.MaxIdleConnsPerHost < 1 {
		p.Add("UPSTREAM_MAX_IDLE_CONNS_PER_HOST", "must be at least 1, got %d", s.MaxIdleConnsPerHost)
	}
	return p.Err()
}

// checkUpstreamURL wants an absolute http(s) URL with a host and nothing a
// reverse proxy base cannot carry. Its error never echoes user info.
func checkUpstreamURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	var problems []string
	if u.Scheme != "http" && u.Scheme != "https" {
		problems = append(problems, "scheme must be http or https")
	}
	if u.Host == "" {
		problems = append(problems, "a host is required")
	}
	if u.User != nil {
		problems = append(problems, "must not carry user info (credentials come from each caller)")
	}
	if u.RawQuery != "" || u.ForceQuery {
		problems = append(problems, "must not carry a query")
	}
	if u.Fragment != "" {
		problems = append(problems, "must not carry a fragment")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// LookupSettings tune the guard's lookup, the list call to Composio
// (GUARD_LOOKUP_*; the envDefault tags are the defaults).
type LookupSettings struct {
	// Time limit for one lookup, every page (and the one retry) included.
	Timeout time.Duration `env:"LOOKUP_TIMEOUT" envDefault:"5s"`
	// The page size asked with `limit`, from 1 to 1000. The SDK's own check
	// sends none and gets the server's default page; a bigger page finds an
	// ACTIVE account behind many INITIATED ones in one call. `0` sends no
	// `limit` (byte for byte the SDK's query).
	PageLimit int `env:"LOOKUP_PAGE_LIMIT" envDefault:"100"`
	// Most pages followed through `next_cursor`. An answer that still has a
	// next page after them fails the check (`422`
	// `ComposioGuard_CheckNotPossible`) rather than reading as a miss,
	// unless an ACTIVE account ended the lookup before.
	MaxPages int `env:"LOOKUP_MAX_PAGES" envDefault:"10"`
	// Consecutive failed lookups of one credential (Composio's own failures:
	// no connection, timeouts, 5xx, a 2xx that is no list; never 401, 403,
	// 429 nor a caller-caused error) that open that credential's circuit
	// breaker. While it is open, guarded requests fail fast per
	// `GUARD_FAILURE_MODE`. `0` turns the breakers off.
	BreakerThreshold int `env:"LOOKUP_BREAKER_THRESHOLD" envDefault:"5"`
	// How long a breaker stays open before one trial lookup is let through.
	BreakerCooldown time.Duration `env:"LOOKUP_BREAKER_COOLDOWN" envDefault:"10s"`
}

// DefaultLookupSettings are LookupSettings as their envDefault tags set them.
func DefaultLookupSettings() LookupSettings { return settings.Defaults[LookupSettings]() }

// Validate reports every problem of s, one error per variable.
func (s LookupSettings) Validate() error {
	var p settings.Problems
	p.Positive("LOOKUP_TIMEOUT", s.Timeout)
	if s.PageLimit < 0 || s.PageLimit > 1000 {
		p.Add("LOOKUP_PAGE_LIMIT", "must be between 0 (no limit sent) and 1000, got %d", s.PageLimit)
	}
	if s.MaxPages < 1 || s.MaxPages > 1000 {
		p.Add("LOOKUP_MAX_PAGES", "must be between 1 and 1000, got %d", s.MaxPages)
	}
	if s.BreakerThreshold < 0 {
		p.Add("LOOKUP_BREAKER_THRESHOLD", "must be 0 (breaker off) or more, got %d", s.BreakerThreshold)
	}
	p.Positive("LOOKUP_BREAKER_COOLDOWN", s.BreakerCooldown)
	return p.Err()
}
