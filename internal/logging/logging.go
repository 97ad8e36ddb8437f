// Package logging owns the process logger: zap, JSON lines, ISO 8601 times,
// never sampled (every guard decision must be on record), and the stable
// snake_case field names every package logs under.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Field names shared by the access log and the guard's own lines. Dashboards
// and alerts depend on them: add, never rename.
const (
	FieldRequestID        = "request_id"
	FieldRoute            = "route"
	FieldMethod           = "method"
	FieldPath             = "path" // URL path only, never the query (it may hold tokens)
	FieldStatus           = "status"
	FieldDuration         = "duration"          // seconds, float
	FieldUpstreamDuration = "upstream_duration" // seconds spent waiting on Composio
	FieldLookupDuration   = "lookup_duration"   // seconds of the guard's list call
	FieldDecision         = "decision"
	FieldReason           = "reason"
	FieldMode             = "mode"         // the guard's GUARD_MODE, with a decision
	FieldSandboxSize      = "sandbox_size" // the tier asked for or inserted, on the session routes
	FieldBytesIn          = "bytes_in"     // request Content-Length when known
	FieldBytesOut         = "bytes_out"    // response body bytes written
	FieldRemoteAddr       = "remote_addr"
	FieldUserAgent        = "user_agent"
	FieldError            = "error"
)

// New returns a JSON logger at level (debug, info, warn or error) writing to
// w, or to stderr when w is nil. There is no sampling and no caller
// annotation (runtime.Caller on every line costs more than the line). Each
// line is one write to w, except the INFO and DEBUG lines of a Held logger.
func New(level string, w io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	switch strings.ToLower(strings.TrimSpace(level)) {
	case "debug":
		lvl = zapcore.DebugLevel
	case "info", "":
		lvl = zapcore.InfoLevel
	case "warn":
		lvl = zapcore.WarnLevel
	case "error":
		lvl = zapcore.ErrorLevel
	default:
		return nil, fmt.Errorf("logging: unknown level %q (want debug, info, warn or error)", level)
	}
	if w == nil {
		w = os.Stderr
	}
	s := newSink(zapcore.AddSync(w))
	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{
		TimeKey:        "ts",
		LevelKey:       "level",
		NameKey:        "logger",
		MessageKey:     "msg",
		StacktraceKey:  "stacktrace",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     iso8601,
		EncodeDuration: zapcore.SecondsDurationEncoder,
		EncodeName:     zapcore.FullNameEncoder,
	})
	core := &splitCore{
		Core: zapcore.NewCore(enc, directWriter{s}, lvl),
		held: zapcore.NewCore(enc.Clone(), heldWriter{s}, lvl),
	}
	return zap.New(core, zap.ErrorOutput(directWriter{s})), nil
}

// Held returns a logger like l whose INFO and DEBUG lines may wait, at most
// MaxHold, for the next line l writes, and then leave with it in one write.
// The server gives it to each request: the guard's decision line then goes
// out together with the request's access line, one write(2) instead of two
// (each costs a few µs, and the reader of a pipe is woken each time).
// Warnings and errors are never held, and Sync writes what waits. For a
// logger New did not make, Held returns l.
func Held(l *zap.Logger) *zap.Logger {
	if _, ok := l.Core().(*splitCore); !ok {
		return l
	}
	return l.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		if sc, ok := c.(*splitCore); ok {
			return sc.held
		}
		return c
	}))
}
