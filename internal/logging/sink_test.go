package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// writes records every Write call separately.
type writes struct {
	mu    sync.Mutex
	calls []string
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, string(p))
	return len(p), nil
}

func (w *writes) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.calls...)
}

func msgs(t *testing.T, chunk string) []string {
	t.Helper()
	var out []string
	for line := range strings.Lines(chunk) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		out = append(out, m["msg"].(string))
	}
	return out
}

func TestHeldLines(t *testing.T) {
	tests := []struct {
		name  string
		log   func(base, held *zap.Logger)
		wantN int        // writes seen right after logging
		want  [][]string // messages of each write, once all is out
	}{
		{"info waits for the next direct line, then both leave in one write",
			func(base, held *zap.Logger) { held.Info("decision"); base.Info("request") },
			1, [][]string{{"decision", "request"}}},
		{"a held warning is written at once, with what waited",
			func(base, held *zap.Logger) { held.Info("a"); held.Warn("b") },
			1, [][]string{{"a", "b"}}},
		{"direct lines are one write each",
			func(base, held *zap.Logger) { base.Info("a"); base.Info("b") },
			2, [][]string{{"a"}, {"b"}}},
		{"a held line alone leaves after MaxHold",
			func(base, held *zap.Logger) { held.Info("alone") },
			0, [][]string{{"alone"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w writes
			base, err := New("info", &w)
			if err != nil {
				t.Fatal(err)
			}
			held := Held(base).With(zap.String(FieldRequestID, "r1"))
			tc.log(base, held)
			if n := len(w.get()); n != tc.wantN {
				t.Fatalf("%d writes right away, want %d: %q", n, tc.wantN, w.get())
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(w.get()) < len(tc.want) && time.Now().Before(deadline) {
				time.Sleep(MaxHold / 4)
			}
			got := w.get()
			if len(got) != len(tc.want) {
				t.Fatalf("writes %q, want %d", got, len(tc.want))
			}
			for i, chunk := range got {
				if m := msgs(t, chunk); strings.Join(m, ",") != strings.Join(tc.want[i], ",") {
					t.Errorf("write %d carries %v, want %v", i, m, tc.want[i])
				}
			}
		})
	}
}

func TestSyncWritesHeldLines(t *testing.T) {
	var w writes
	base, _ := New("info", &w)
	Held(base).Info("decision")
	_ = base.Sync()
	if got := w.get(); len(got) != 1 || !strings.Contains(got[0], `"msg":"decision"`) {
		t.Errorf("after Sync: %q", got)
	}
}

func TestHeldOfAnotherLogger(t *testing.T) {
	l := zap.NewNop()
	if Held(l) != l {
		t.Error("Held must hand back a logger New did not make")
	}
}

// Concurrent held and direct lines all arrive whole, each request's held
// line before its own direct line.
func TestHeldConcurrent(t *testing.T) {
	var buf lockedBuffer
	base, _ := New("info", &buf)
	held := Held(base)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				id := zap.Int("n", g*1000+i)
				held.Info("decision", id)
				base.Info("request", id)
			}
		})
	}
	wg.Wait()
	_ = base.Sync()
	seen := map[float64]string{}
	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("broken line %q", line)
		}
		n := m["n"].(float64)
		if m["msg"] == "request" && seen[n] != "decision" {
			t.Fatalf("request line %v before its decision line", n)
		}
		seen[n] = m["msg"].(string)
	}
	if len(seen) != 1600 {
		t.Errorf("%d requests logged, want 1600", len(seen))
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
