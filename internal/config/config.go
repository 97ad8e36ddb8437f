// Package config composes the proxy's settings: each package owns its own
// (an env-tagged struct, its defaults in envDefault tags, its Validate), and
// Config gathers them, reads every GUARD_* variable at once, runs every
// Validate and the checks that span packages, reports all problems together,
// and renders the whole with secrets masked. config imports the packages;
// none imports config.
package config

//go:generate go run ./settingsdoc

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v10"

	"github.com/composio-guard/composio-guard/internal/audit"
	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/server"
	"github.com/composio-guard/composio-guard/internal/settings"
	"github.com/composio-guard/composio-guard/internal/upstream"

	"github.com/composio-guard/composio-guard/internal/intercept"
)

// Prefix of every environment variable the proxy reads.
const Prefix = settings.Prefix

// Config is every setting, read from GUARD_* variables. The field comments of
// each package's settings are the user's documentation: docs/settings.md is
// generated from them (go generate; its test fails on drift), each section
// titled by the first line of the field's comment here. String lists them
// in this order.
type Config struct {
	// Listeners and lifecycle
	// The two ports, the proxy port's timeouts, shutdown and logs.
	Server server.Settings
	// Guard policy
	// What the guard does on the routes that create connected accounts and
	// on Tool Router sessions. Sandbox tiers run from smallest to largest:
	// `standard` < `medium` < `large` < `xlarge`; with no `GUARD_SANDBOX_*`
	// set, every tier is allowed.
	Guard GuardSettings
	// The guard's lookup
	// The list call to Composio that asks, with the caller's own
	// credential, for the user's existing accounts.
	Lookup upstream.LookupSettings
	// Locks and leases
	// The per-key lock that serialises creates, and the pending-link
	// leases; shared through Redis between replicas. A Redis lock expires on
	// its own after lookup timeout + upstream response header timeout + 2 ×
	// Redis timeout + 5 s (71 s with the defaults); the guarded work runs
	// under a context that ends first. See docs/replicas.md.
	Lock lock.Settings
	// Transport to Composio
	// Where Composio is, and the connections to it.
	Transport upstream.TransportSettings
	// The periodic audit
	// Optional, off by default: the running proxy scans one project for
	// duplicate accounts that already exist (see docs/audit.md); with Redis,
	// one replica audits and all export its result.
	Audit audit.Settings

	// What LoadFrom changed so that the settings given fit together (see
	// fitTogether); Notes reports it.
	notes []string
	// Settings given that the others given leave without effect (Warnings).
	warnings []string
}

// Load reads the process environment, then validates.
func Load() (Config, error) { return LoadFrom(nil) }

// LoadFrom reads the given variables instead of the process environment
// (nil means the process environment), then validates. Parse and validation
// errors come back together, joined.
func LoadFrom(environ map[string]string) (Config, error) {
	var c Config
	opts := env.Options{Prefix: Prefix}
	if environ != nil {
		opts.Environment = environ
	}
	if _, bare := lookup(environ, Prefix); bare {
		// A variable named just GUARD_ names no setting (UnknownKeys warns of
		// it); the reader would take it for its nested sections.
		opts.Environment = withoutKey(environ, Prefix)
	}
	var errs []error
	if err := env.ParseWithOptions(&c, opts); err != nil {
		errs = append(errs, parseErrors(err)...)
	}
	c.normalize()
	c.fitTogether(func(name string) bool { return isSet(environ, name) })
	if err := c.Validate(); err != nil {
		// A variable that failed to parse holds its zero value: do not
		// report it a second time as out of range.
		for _, e := range unjoin(err) {
			if !mentionedFirst(errs, e) {
				errs = append(errs, e)
			}
		}
	}
	return c, errors.Join(errs...)
}

func lookup(environ map[string]string, name string) (string, bool) {
	if environ == nil {
		return os.LookupEnv(name)
	}
	v, ok := environ[name]
	return v, ok
}

// withoutKey is environ (the process environment when nil) without name.
func withoutKey(environ map[string]string, name string) map[string]string {
	out := make(map[string]string, len(environ))
	if environ == nil {
		for _, kv := range os.Environ() {
			if k, v, ok := strings.Cut(kv, "="); ok {
				out[k] = v
			}
		}
	} else {
		maps.Copy(out, environ)
	}
	delete(out, name)
	return out
}

// isSet reports whether the variable name (without the prefix) is given.
// An empty value is not (it reads as unset, as the settings reader takes it):
// a templated manifest's `GUARD_X: ""` must not count as a choice.
func isSet(environ map[string]string, name string) bool {
	return IsSet(environ, Prefix+name)
}

// IsSet reports whether the variable (full name) holds a value in environ,
// or in the process environment when environ is nil; empty is unset.
func IsSet(environ map[string]string, name string) bool {
	if environ == nil {
		return os.Getenv(name) != ""
	}
	return environ[name] != ""
}

// fitBodyBudget makes a default give way to the one of GUARD_MAX_BODY_BYTES
// and GUARD_BODY_BUDGET_BYTES that was set: the budget must hold one body of
// the largest size allowed, and a default must never make the only setting
// given invalid. When both are set and contradict, Validate refuses them.
func (c *Config) fitBodyBudget(set func(name string) bool) {
	g := &c.Guard
	if g.MaxBodyBytes <= 0 || g.BodyBudgetBytes <= 0 || g.BodyBudgetBytes >= g.MaxBodyBytes {
		return
	}
	switch maxSet, budgetSet := set("MAX_BODY_BYTES"), set("BODY_BUDGET_BYTES"); {
	case maxSet && !budgetSet:
		c.notes = append(c.notes, fmt.Sprintf("%sBODY_BUDGET_BYTES raised from its default %d to %sMAX_BODY_BYTES (%d), so that a body of the largest size allowed fits",
			Prefix, g.BodyBudgetBytes, Prefix, g.MaxBodyBytes))
		g.BodyBudgetBytes = g.MaxBodyBytes
	case budgetSet && !maxSet:
		c.notes = append(c.notes, fmt.Sprintf("%sMAX_BODY_BYTES lowered from its default %d to %sBODY_BUDGET_BYTES (%d), so that a body of the largest size allowed fits",
			Prefix, g.MaxBodyBytes, Prefix, g.BodyBudgetBytes))
		g.MaxBodyBytes = g.BodyBudgetBytes
	}
}

// Notes lists, one sentence each, the settings LoadFrom changed to make the
// ones given fit together; the proxy logs them at start-up.
func (c Config) Notes() []string { return c.notes }

// Warnings lists, one sentence each, settings given that have no effect with
// the others given; the proxy logs them at WARN at start-up.
func (c Config) Warnings() []string { return c.warnings }

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// mentionedFirst reports whether e concerns a variable already in errs.
func mentionedFirst(errs []error, e error) bool {
	name, _, _ := strings.Cut(e.Error(), ":")
	for _, p := range errs {
		if n, _, _ := strings.Cut(p.Error(), ":"); n == name {
			return true
		}
	}
	return false
}

// parseErrors names each parse failure by its variable, not its Go field.
func parseErrors(err error) []error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return []error{fmt.Errorf("config: %w", err)}
	}
	out := make([]error, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			out = append(out, fmt.Errorf("%s: cannot parse: %w", varName(pe.Name), pe.Err))
			continue
		}
		out = append(out, fmt.Errorf("config: %w", e))
	}
	return out
}

// varName maps a settings field name to its environment variable. Field
// names are unique across Config (TestFieldNamesUnique), so the name alone,
// all a parse error carries, says which variable it is.
func varName(field string) string {
	name := field
	walk(reflect.ValueOf(Config{}), func(key string, sf reflect.StructField, _ reflect.Value) {
		if sf.Name == field {
			name = Prefix + key
		}
	})
	return name
}

// walk calls fn for every env-tagged setting in v, nested settings structs
// included, in declaration order.
func walk(v reflect.Value, fn func(key string, sf reflect.StructField, f reflect.Value)) {
	walkOwned(v, func(key string, _ reflect.Type, sf reflect.StructField, f reflect.Value) { fn(key, sf, f) })
}

// walkOwned is walk that also names the struct declaring each setting.
func walkOwned(v reflect.Value, fn func(key string, owner reflect.Type, sf reflect.StructField, f reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		key := sf.Tag.Get("env")
		if key == "" && sf.Type.Kind() == reflect.Struct {
			walkOwned(v.Field(i), fn)
			continue
		}
		if key == "" || key == "-" {
			continue
		}
		fn(key, t, sf, v.Field(i))
	}
}

// Setting describes one variable, for the settings reference
// (docs/settings.md, generated by ./settingsdoc) and its drift test.
type Setting struct {
	Name    string              // the variable, GUARD_ included
	Section reflect.StructField // the field of Config that holds it
	Owner   reflect.Type        // the settings struct that declares it
	Field   reflect.StructField // its field there: env tags, doc comment by name
}

// Settings lists every variable the proxy reads, in declaration order.
func Settings() []Setting {
	var out []Setting
	v := reflect.ValueOf(Config{})
	t := v.Type()
	for i := range t.NumField() {
		sec := t.Field(i)
		if !sec.IsExported() {
			continue
		}
		walkOwned(v.Field(i), func(key string, owner reflect.Type, sf reflect.StructField, _ reflect.Value) {
			out = append(out, Setting{Name: Prefix + key, Section: sec, Owner: owner, Field: sf})
		})
	}
	return out
}

// normalize trims URLs and list members and drops empty members, so that
// "a, b," reads as meant. Enums fold their case as they are read (their
// UnmarshalText); auth config ids keep their case.
func (c *Config) normalize() {
	c.Transport.URL = strings.TrimSpace(c.Transport.URL)
	c.Lock.RedisURL = strings.TrimSpace(c.Lock.RedisURL)
	c.Audit.AuditAPIKey = strings.TrimSpace(c.Audit.AuditAPIKey)
	c.Audit.AuditAPIPrefix = strings.TrimSpace(c.Audit.AuditAPIPrefix)
	c.Guard.Normalize()
}

// Validate checks every setting and reports every problem at once: each
// package's own, then what spans packages.
func (c Config) Validate() error {
	var p settings.Problems
	p.Join(c.Server.Validate())
	p.Join(c.Guard.Validate())
	p.Join(c.Lookup.Validate())
	p.Join(c.Lock.Validate())
	p.Join(c.Transport.Validate())
	p.Join(c.Audit.Validate())
	return p.Err()
}

// GuardBudget bounds the work done under a guard lock: the lookup, then the
// forwarded create until its response headers arrive.
func (c Config) GuardBudget() time.Duration {
	return c.Lookup.Timeout + c.Transport.ResponseHeaderTimeout
}

// timing is the guard's timing, as intercept.Timing derives it from the
// lookup, upstream and lock settings.
func (c Config) timing() (wait, ttl time.Duration) {
	return intercept.Timing(c.Lookup.Timeout, c.Transport.ResponseHeaderTimeout, c.Lock.RedisTimeout, c.Lock.Wait)
}

// LockTTL is how long a self-expiring lock may live: longer than
// GuardBudget plus two Redis round trips, so the guarded work ends first.
func (c Config) LockTTL() time.Duration { _, ttl := c.timing(); return ttl }

// EffectiveLockWait is how long a guarded request waits for the per-key
// lock: GUARD_LOCK_WAIT, or GuardBudget when unset (the longest a holder can
// legitimately keep it).
func (c Config) EffectiveLockWait() time.Duration { wait, _ := c.timing(); return wait }

// GuardConfig is what the guard runs with: its own settings and the timing
// derived from the others.
func (c Config) GuardConfig() intercept.Config {
	g := c.Guard
	g.LookupTimeout = c.Lookup.Timeout
	g.LockWait, g.LockTTL = c.timing()
	return g
}

// String renders every setting as GUARD_NAME=value pairs, in declaration
// order, with secrets masked: safe to log at start-up.
func (c Config) String() string {
	var b strings.Builder
	walk(reflect.ValueOf(c), func(key string, _ reflect.StructField, f reflect.Value) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(Prefix + key)
		b.WriteByte('=')
		switch key {
		case "REDIS_URL":
			b.WriteString(lock.RedactURL(f.String())) // every password: data nodes' and sentinels'
		case "UPSTREAM_URL":
			b.WriteString(RedactURL(f.String()))
		case "AUDIT_API_KEY": // a secret: only whether it is set
			if f.String() != "" {
				b.WriteString("xxxxx")
			}
		default:
			b.WriteString(render(f))
		}
	})
	return b.String()
}

// RedactURL masks the user info of a URL ("redis://user:xxxxx@host"). A
// user name without password is masked too (some write the password
// there), and an unparseable URL is masked whole.
func RedactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "xxxxx"
	}
	if u.User != nil {
		if _, hasPass := u.User.Password(); hasPass {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx")
		}
	}
	return u.String()
}

func render(f reflect.Value) string {
	switch x := f.Interface().(type) {
	case time.Duration:
		return x.String()
	case []string:
		return strings.Join(x, ",")
	case []SandboxSize:
		parts := make([]string, len(x))
		for i, v := range x {
			parts[i] = string(v)
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(f.Interface())
}

// UnknownKeys returns the GUARD_* names in environ ("KEY=value" pairs, as
// from os.Environ) that no setting reads: most likely typos, worth a warning.
func UnknownKeys(environ []string) []string {
	known := map[string]bool{}
	walk(reflect.ValueOf(Config{}), func(key string, _ reflect.StructField, _ reflect.Value) {
		known[Prefix+key] = true
	})
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, Prefix) && !known[k] {
			out = append(out, k)
		}
	}
	return out
}
