// Package settings holds what every package's own settings share: the
// GUARD_ prefix, reading a settings struct from its env tags (whose
// envDefault tags are the one source of defaults), and the collector their
// Validate methods report problems to, one error per variable. It imports
// no package of the project, so every package can use it; internal/config
// composes the packages' settings.
package settings

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caarlos0/env/v10"
)

// Prefix starts every environment variable the proxy reads.
const Prefix = "GUARD_"

// Parse reads a settings struct T from environ ("GUARD_X" -> value; nil
// means the process environment): the variables set, and the envDefault of
// every other. It does not validate.
func Parse[T any](environ map[string]string) (T, error) {
	var s T
	opts := env.Options{Prefix: Prefix}
	if environ != nil {
		opts.Environment = environ
	}
	err := env.ParseWithOptions(&s, opts)
	return s, err
}

// Defaults returns T as its envDefault tags set it: the defaults of a
// package's settings, for constructors given a zero field and for tests.
func Defaults[T any]() T {
	s, err := Parse[T](map[string]string{})
	if err != nil { // only for a malformed envDefault tag: a programming error
		panic(fmt.Sprintf("settings: the defaults of %T do not parse: %v", s, err))
	}
	return s
}

// Problems collects what is wrong with settings, one error per problem,
// each starting with the variable's name ("GUARD_X: ...").
type Problems struct{ errs []error }

// Add records a problem with variable name (without the prefix).
func (p *Problems) Add(name, format string, a ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s%s: %s", Prefix, name, fmt.Sprintf(format, a...)))
}

// Join records every problem of err (an errors.Join of Problems.Err).
func (p *Problems) Join(err error) {
	if err == nil {
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		p.errs = append(p.errs, j.Unwrap()...)
		return
	}
	p.errs = append(p.errs, err)
}

// Positive wants d > 0.
func (p *Problems) Positive(name string, d time.Duration) {
	if d <= 0 {
		p.Add(name, "must be a positive duration, got %s", d)
	}
}

// OneOf wants got to be one of allowed.
func OneOf[E ~string](p *Problems, name string, got E, allowed ...E) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	p.Add(name, "%q is not one of %s", string(got), strings.Join(names, "|"))
}

// Err returns every problem joined, nil when there is none.
func (p *Problems) Err() error { return errors.Join(p.errs...) }

// Fold is what an enum setting reads: the value trimmed and lower-cased, so
// that "Enforce " reads as meant.
func Fold(b []byte) string { return strings.ToLower(strings.TrimSpace(string(b))) }
