// Package logging owns the process logger: zap, JSON lines, ISO 8601 times,
// never sampled (every guard decision must be on record), and the stable
// snake_case field names every package logs under.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

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

// DefaultFlushInterval is how long INFO and DEBUG lines may wait to be
// written together (GUARD_LOG_FLUSH_INTERVAL).
const DefaultFlushInterval = 20 * time.Millisecond

// New returns a JSON logger at level (debug, info, warn or error) writing
// every line to w at once, or to stderr when w is nil. See NewBuffered.
func New(level string, w io.Writer) (*zap.Logger, error) {
	return NewBuffered(level, w, 0)
}

// NewBuffered returns a JSON logger at level (debug, info, warn or error)
// writing to w, or to stderr when w is nil. There is no sampling and no
// caller annotation (runtime.Caller on every line costs more than the line).
//
// With flush > 0, INFO and DEBUG lines wait, at most flush, to leave in one
// write together (at most 64 KiB): under load that is one write(2) for many
// access lines instead of one each, which costs a few µs and wakes the
// reader of a pipe every time. A WARN or ERROR line is written at once,
// after the lines that wait, so the order is kept; Sync writes what waits.
// With flush == 0 every line is one write.
func NewBuffered(level string, w io.Writer, flush time.Duration) (*zap.Logger, error) {
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
	s := newSink(zapcore.AddSync(w), flush)
	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{
		TimeKey:        "ts",
		LevelKey:       "level", // first member: the sink reads it
		NameKey:        "logger",
		MessageKey:     "msg",
		StacktraceKey:  "stacktrace",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     iso8601,
		EncodeDuration: zapcore.SecondsDurationEncoder,
		EncodeName:     zapcore.FullNameEncoder,
	})
	return zap.New(zapcore.NewCore(enc, s, lvl), zap.ErrorOutput(s)), nil
}
