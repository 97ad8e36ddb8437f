package server

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/composio-guard/composio-guard/internal/settings"
)

// Settings are the listeners' and the process's own settings (GUARD_*; the
// envDefault tags are the defaults). internal/config reads and validates
// them with every other package's.
type Settings struct {
	// The proxy port, as `host:port`. Every request that arrives here goes
	// to the guard or to Composio.
	ListenAddr string `env:"LISTEN_ADDR" envDefault:":8080"`
	// The admin port: `/livez`, `/readyz`, `/metrics` and, when enabled,
	// `/debug/pprof/`. Nothing is proxied from this port. It must differ
	// from `GUARD_LISTEN_ADDR`; when only one of the two is set, on the
	// other's default port, the two defaults swap. Port `0` picks a free
	// port, and both listeners may use it.
	AdminAddr string `env:"ADMIN_ADDR" envDefault:":9090"`
	// Time allowed for a client to send its request headers; this stops
	// slowloris clients that dribble headers.
	ReadHeaderTimeout time.Duration `env:"READ_HEADER_TIMEOUT" envDefault:"10s"`
	// How long an idle keep-alive client connection stays open.
	IdleTimeout time.Duration `env:"IDLE_TIMEOUT" envDefault:"120s"`
	// Size limit for request headers, at least 4096. Larger headers get `431`.
	MaxHeaderBytes int `env:"MAX_HEADER_BYTES" envDefault:"65536"`
	// When `false`, inbound `Forwarded`, `X-Forwarded-*`, `X-Real-Ip` and
	// `X-Client-Ip` headers are removed before anything reads them. Set it
	// to `true` only when a trusted hop in front of the proxy sets them (the
	// forward then passes `X-Forwarded-*` on).
	TrustForwarded bool `env:"TRUST_FORWARDED" envDefault:"false"`
	// Time from SIGTERM until in-flight requests are cut, the drain delay
	// included. Keep it below the pod's `terminationGracePeriodSeconds` (30 s
	// by default). Set alone below the drain delay's default, it brings the
	// drain delay down to a fifth of it.
	ShutdownGrace time.Duration `env:"SHUTDOWN_GRACE" envDefault:"25s"`
	// Time between `/readyz` turning `503` and the proxy port closing, so
	// that load balancers notice; requests are still served meanwhile, with
	// `Connection: close`. It must be shorter than `GUARD_SHUTDOWN_GRACE`:
	// unset, it is derived to fit inside a grace that was set; set alone,
	// the grace grows to leave in-flight requests their 20 s.
	DrainDelay time.Duration `env:"DRAIN_DELAY" envDefault:"5s"`
	// `debug`, `info`, `warn` or `error`. Logs are JSON lines on stderr,
	// never sampled.
	LogLevel LogLevel `env:"LOG_LEVEL" envDefault:"info"`
	// Serve Go's `/debug/pprof/` on the admin port (never on the proxy port).
	Pprof bool `env:"PPROF" envDefault:"false"`
}

// DefaultSettings are Settings as their envDefault tags set them.
func DefaultSettings() Settings { return settings.Defaults[Settings]() }

// LogLevel is the minimum level logged (GUARD_LOG_LEVEL).
type LogLevel string

// Log levels.
const (
	LevelDebug LogLevel = "debug"
	LevelInfo  LogLevel = "info"
	LevelWarn  LogLevel = "warn"
	LevelError LogLevel = "error"
)

// UnmarshalText reads a level case- and space-insensitively; Validate
// refuses an unknown one.
func (l *LogLevel) UnmarshalText(b []byte) error {
	*l = LogLevel(settings.Fold(b))
	return nil
}

// Validate reports every problem of s, one error per variable.
func (s Settings) Validate() error {
	var p settings.Problems
	lerr := checkAddr(s.ListenAddr)
	if lerr != nil {
		p.Add("LISTEN_ADDR", "%v", lerr)
	}
	aerr := checkAddr(s.AdminAddr)
	if aerr != nil {
		p.Add("ADMIN_ADDR", "%v", aerr)
	}
	if lerr == nil && aerr == nil && sameListener(s.ListenAddr, s.AdminAddr) {
		p.Add("ADMIN_ADDR", "must differ from %sLISTEN_ADDR (%s): admin paths are never served on the proxy port", settings.Prefix, s.ListenAddr)
	}
	p.Positive("READ_HEADER_TIMEOUT", s.ReadHeaderTimeout)
	p.Positive("IDLE_TIMEOUT", s.IdleTimeout)
	if s.MaxHeaderBytes < 4096 {
		p.Add("MAX_HEADER_BYTES", "must be at least 4096, got %d", s.MaxHeaderBytes)
	}
	p.Positive("SHUTDOWN_GRACE", s.ShutdownGrace)
	if s.DrainDelay < 0 {
		p.Add("DRAIN_DELAY", "must not be negative, got %s", s.DrainDelay)
	} else if s.ShutdownGrace > 0 && s.DrainDelay >= s.ShutdownGrace {
		p.Add("DRAIN_DELAY", "(%s) must be shorter than %sSHUTDOWN_GRACE (%s), or in-flight requests get no time to finish", s.DrainDelay, settings.Prefix, s.ShutdownGrace)
	}
	settings.OneOf(&p, "LOG_LEVEL", s.LogLevel, LevelDebug, LevelInfo, LevelWarn, LevelError)
	return p.Err()
}

func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, e.g. :8080 or 127.0.0.1:8080: %w", err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// SameListener reports whether two addresses, both valid, would collide
// (GUARD_LISTEN_ADDR and GUARD_ADMIN_ADDR must not).
func SameListener(a, b string) bool {
	return checkAddr(a) == nil && checkAddr(b) == nil && sameListener(a, b)
}

// sameListener reports whether two valid addresses would collide. Port 0 is
// a fresh ephemeral port each time, so it never collides.
func sameListener(a, b string) bool {
	ha, sa, _ := net.SplitHostPort(a)
	hb, sb, _ := net.SplitHostPort(b)
	// As numbers: 09090 is port 9090.
	pa, errA := strconv.Atoi(sa)
	pb, errB := strconv.Atoi(sb)
	if errA != nil || errB != nil {
		pa, pb = -1, -2 // not numbers: compared as written
		if sa == sb {
			pb = pa
		}
	}
	if pa != pb || pa == 0 {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}
