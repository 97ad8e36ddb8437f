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
// line is one write to w; writes are serialised, so w need not be safe for
// concurrent use.
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
	out := zapcore.Lock(zapcore.AddSync(w))
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
	return zap.New(zapcore.NewCore(enc, out, lvl), zap.ErrorOutput(out)), nil
}
