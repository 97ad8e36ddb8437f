package config

import (
	"fmt"
	"math"
	"net"
	"time"

	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/server"
)

// fitTogether makes a default give way to the setting of its pair that was
// given, for every pair of settings that must fit together (see
// docs/settings-rules.md): a default must never make the only setting given
// invalid. Two explicit settings that contradict are left as given, for
// Validate to refuse naming both. Each change is a note (Notes).
func (c *Config) fitTogether(set func(name string) bool) {
	c.fitBodyBudget(set)
	c.fitDrainDelay(set)
	c.fitListeners(set)
	c.fitLockBackend(set)
	c.warnAuditOff(set)
}

// fitListeners fits GUARD_LISTEN_ADDR and GUARD_ADMIN_ADDR together: they
// must not share a port. When the one given takes the other's default port
// (GUARD_LISTEN_ADDR=:9090 alone), the other takes the port the given one
// left: the two default ports swap.
func (c *Config) fitListeners(set func(name string) bool) {
	s := &c.Server
	if !server.SameListener(s.ListenAddr, s.AdminAddr) {
		return
	}
	def := server.DefaultSettings()
	_, listenPort, _ := net.SplitHostPort(def.ListenAddr)
	adminHost, adminPort, _ := net.SplitHostPort(def.AdminAddr)
	listenHost, _, _ := net.SplitHostPort(def.ListenAddr)
	switch listenSet, adminSet := set("LISTEN_ADDR"), set("ADMIN_ADDR"); {
	case listenSet && !adminSet:
		want := net.JoinHostPort(adminHost, listenPort)
		if server.SameListener(s.ListenAddr, want) {
			return
		}
		c.notes = append(c.notes, fmt.Sprintf("%sADMIN_ADDR moved from its default %s to %s, since %sLISTEN_ADDR (%s) takes its port",
			Prefix, s.AdminAddr, want, Prefix, s.ListenAddr))
		s.AdminAddr = want
	case adminSet && !listenSet:
		want := net.JoinHostPort(listenHost, adminPort)
		if server.SameListener(want, s.AdminAddr) {
			return
		}
		c.notes = append(c.notes, fmt.Sprintf("%sLISTEN_ADDR moved from its default %s to %s, since %sADMIN_ADDR (%s) takes its port",
			Prefix, s.ListenAddr, want, Prefix, s.AdminAddr))
		s.ListenAddr = want
	}
}

// fitDrainDelay fits GUARD_DRAIN_DELAY and GUARD_SHUTDOWN_GRACE together: the
// drain delay runs inside the grace, and must end before it so that
// in-flight requests keep time to finish.
//
//   - Only the grace set: the drain delay is derived from it, in the
//     defaults' proportion (a fifth of the grace), at most its default.
//     GUARD_SHUTDOWN_GRACE=5s alone gives a drain delay of 1s.
//   - Only the drain delay set: the grace leaves in-flight requests at least
//     what the defaults leave them (grace minus drain delay), and is at least
//     its default.
func (c *Config) fitDrainDelay(set func(name string) bool) {
	s := &c.Server
	def := server.DefaultSettings()
	if def.DrainDelay <= 0 || def.ShutdownGrace <= def.DrainDelay {
		return // nothing to derive from
	}
	switch graceSet, drainSet := set("SHUTDOWN_GRACE"), set("DRAIN_DELAY"); {
	case graceSet && !drainSet:
		if s.ShutdownGrace <= 0 {
			return // invalid on its own: Validate says so
		}
		ratio := def.ShutdownGrace / def.DrainDelay
		want := min(def.DrainDelay, s.ShutdownGrace/ratio)
		if want == s.DrainDelay {
			return
		}
		c.notes = append(c.notes, fmt.Sprintf("%sDRAIN_DELAY lowered from its default %s to %s, 1/%d of %sSHUTDOWN_GRACE (%s), so that in-flight requests keep time to finish within the grace",
			Prefix, s.DrainDelay, want, ratio, Prefix, s.ShutdownGrace))
		s.DrainDelay = want
	case drainSet && !graceSet:
		if s.DrainDelay < 0 {
			return // invalid on its own: Validate says so
		}
		inFlight := def.ShutdownGrace - def.DrainDelay
		if s.DrainDelay > time.Duration(math.MaxInt64)-inFlight {
			return // no grace can be longer: Validate refuses the pair
		}
		want := max(def.ShutdownGrace, s.DrainDelay+inFlight)
		if want == s.ShutdownGrace {
			return
		}
		c.notes = append(c.notes, fmt.Sprintf("%sSHUTDOWN_GRACE raised from its default %s to %s, %sDRAIN_DELAY (%s) plus the %s the defaults leave in-flight requests to finish",
			Prefix, s.ShutdownGrace, want, Prefix, s.DrainDelay, inFlight))
		s.ShutdownGrace = want
	}
}

// fitLockBackend fits GUARD_LOCK_BACKEND to GUARD_REDIS_URL: a Redis URL
// given alone means Redis. Kept at its default (memory), the backend would
// leave the URL unused and every replica with locks of its own, which is how
// replicas let a duplicate through. With the backend memory on purpose (or by
// default, with Redis settings but no URL), the Redis settings given have no
// effect, and Warnings says so.
func (c *Config) fitLockBackend(set func(name string) bool) {
	l := &c.Lock
	if l.Backend != lock.BackendMemory {
		return
	}
	if l.RedisURL != "" && !set("LOCK_BACKEND") {
		c.notes = append(c.notes, fmt.Sprintf("%sLOCK_BACKEND set from its default %s to %s, since %sREDIS_URL is given: replicas share locks and pending-link leases through it",
			Prefix, l.Backend, lock.BackendRedis, Prefix))
		l.Backend = lock.BackendRedis
		return
	}
	how := "as set"
	if !set("LOCK_BACKEND") {
		how = "its default"
	}
	for _, name := range []string{"REDIS_URL", "REDIS_MIN_REPLICAS", "REDIS_KEY_PREFIX", "REDIS_CA_FILE"} {
		if set(name) {
			c.warnings = append(c.warnings, fmt.Sprintf("%s%s has no effect: %sLOCK_BACKEND is %s (%s), which keeps locks and leases in this process, unshared with other replicas",
				Prefix, name, Prefix, l.Backend, how))
		}
	}
}

// warnAuditOff names the periodic audit's settings given while the audit is
// off (GUARD_AUDIT_INTERVAL unset or 0): a key given alone starts nothing,
// and the operator who set it should not believe an audit runs.
func (c *Config) warnAuditOff(set func(name string) bool) {
	if c.Audit.AuditInterval != 0 {
		return
	}
	for _, name := range []string{"AUDIT_API_KEY", "AUDIT_MAX_RATE", "AUDIT_MIN_REMAINING", "AUDIT_TIMEOUT", "AUDIT_INCLUDE_INITIATED", "AUDIT_API_PREFIX"} {
		if set(name) {
			c.warnings = append(c.warnings, fmt.Sprintf("%s%s has no effect: the periodic audit is off until %sAUDIT_INTERVAL is set (e.g. 1h)",
				Prefix, name, Prefix))
		}
	}
}
