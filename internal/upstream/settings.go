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
	URL                   string        `env:"UPSTREAM_URL" envDefault:"https://backend.composio.dev"`
	DialTimeout           time.Duration `env:"UPSTREAM_DIAL_TIMEOUT" envDefault:"5s"`
	TLSHandshakeTimeout   time.Duration `env:"UPSTREAM_TLS_HANDSHAKE_TIMEOUT" envDefault:"5s"`
	ResponseHeaderTimeout time.Duration `env:"UPSTREAM_RESPONSE_HEADER_TIMEOUT" envDefault:"60s"` // bounds a stalled upstream (the proxy port has no write timeout)
	IdleConnTimeout       time.Duration `env:"UPSTREAM_IDLE_CONN_TIMEOUT" envDefault:"90s"`
	MaxIdleConnsPerHost   int           `env:"UPSTREAM_MAX_IDLE_CONNS_PER_HOST" envDefault:"256"` // one host behind the proxy: the per-host cap is the one that matters
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
	// Timeout bounds the whole lookup (every page, the retry included).
	// 0 takes the default.
	Timeout time.Duration `env:"LOOKUP_TIMEOUT" envDefault:"5s"`
	// PageLimit is the page size asked with `limit`. The SDK's own check
	// sends none and gets the server's default page; asking for a bigger one
	// finds an ACTIVE account behind many INITIATED ones in one call.
	// 0 sends no `limit` (byte for byte the SDK's query).
	PageLimit int `env:"LOOKUP_PAGE_LIMIT" envDefault:"100"`
	// MaxPages bounds the pages read by following next_cursor; an answer
	// that still has a next page after MaxPages is ErrTooManyPages rather
	// than a silent miss (unless ListQuery.StopAtActive ended the lookup
	// before). 0 takes the default.
	MaxPages int `env:"LOOKUP_MAX_PAGES" envDefault:"10"`
	// BreakerThreshold consecutive failed lookups of one tenant (Composio's
	// own failures: no connection, timeouts, 5xx, a 2xx that is no list;
	// never 401/403/429 nor a caller-caused error, see CallerCaused) open
	// that tenant's circuit breaker. 0 disables the breakers.
	BreakerThreshold int `env:"LOOKUP_BREAKER_THRESHOLD" envDefault:"5"`
	// BreakerCooldown is how long a breaker stays open before one probe is
	// let through.
	BreakerCooldown time.Duration `env:"LOOKUP_BREAKER_COOLDOWN" envDefault:"10s"`
}

// DefaultLookupSettings are LookupSettings as their envDefault tags set them.
func DefaultLookupSettings() LookupSettings { return settings.Defaults[LookupSettings]() }

// Validate reports every problem of s, one error per variable.
func (s LookupSettings) Validate() error {
	var p settings.Problems
	p.Positive("LOOKUP_TIMEOUT", s.Timeout)
	if s.PageLimit < 1 || s.PageLimit > 1000 {
		p.Add("LOOKUP_PAGE_LIMIT", "must be between 1 and 1000, got %d", s.PageLimit)
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
