package reqscope

import (
	"context"
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

type counter struct{ n int64 }

func (c *counter) Release(n int64) { c.n -= n }

// Only a scope whose owner ends it holds; End gives everything back, once.
func TestHoldEnd(t *testing.T) {
	budget := &counter{}
	take := func(s *Scope, n int64) bool {
		if !s.Hold(budget, n) {
			return false
		}
		budget.n += n
		return true
	}

	detached := From(context.Background())
	if detached.CanHold(budget) || take(detached, 10) || detached.Held() != 0 {
		t.Fatal("a scope nobody ends must not hold")
	}

	s := &Scope{}
	s.WillEnd()
	if !take(s, 512) || !take(s, 1024) || s.Held() != 1536 || budget.n != 1536 {
		t.Fatalf("held %d, budget %d", s.Held(), budget.n)
	}
	if other := (&counter{}); s.CanHold(other) || s.Hold(other, 1) {
		t.Fatal("a scope holding from one Releaser must refuse another")
	}
	s.End()
	s.End()
	if budget.n != 0 || s.Held() != 0 {
		t.Fatalf("after End: budget %d, held %d", budget.n, s.Held())
	}
}
