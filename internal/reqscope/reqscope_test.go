package reqscope

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// The request's logger carries request_id, and is not built for a line
// whose level is off.
func TestScopeLogger(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	s := &Scope{RequestID: "rid-1"}
	s.SetBaseLogger(zap.New(core))
	if ce := s.Check(zapcore.DebugLevel, "off"); ce != nil || s.Logger != nil {
		t.Fatalf("a DEBUG check at INFO built the logger (entry %v)", ce)
	}
	if ce := s.Check(zapcore.InfoLevel, "checked"); ce == nil {
		t.Fatal("an INFO check at INFO was refused")
	} else {
		ce.Write()
	}
	s.Log().Warn("direct")
	all := logs.All()
	if len(all) != 2 {
		t.Fatalf("%d lines, want 2", len(all))
	}
	for _, e := range all {
		if e.ContextMap()["request_id"] != "rid-1" {
			t.Errorf("line %q lacks request_id: %v", e.Message, e.ContextMap())
		}
	}
	var none Scope
	none.Log().Info("to nowhere") // no base: a no-op logger, no panic
}
