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

func TestLevels(t *testing.T) {
	tests := []struct {
		level             string
		debug, info, warn bool
	}{
		{"debug", true, true, true},
		{"info", false, true, true},
		{"", false, true, true},
		{"WARN", false, false, true},
		{"error", false, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.level, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := New(tc.level, &buf)
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("d")
			log.Info("i")
			log.Warn("w")
			out := buf.String()
			for _, c := range []struct {
				msg  string
				want bool
			}{{`"msg":"d"`, tc.debug}, {`"msg":"i"`, tc.info}, {`"msg":"w"`, tc.warn}} {
				if strings.Contains(out, c.msg) != c.want {
					t.Errorf("level %q: line %s present=%v, want %v", tc.level, c.msg, !c.want, c.want)
				}
			}
		})
	}
	if _, err := New("verbose", nil); err == nil {
		t.Error("an unknown level must be refused")
	}
}

func TestLineShape(t *testing.T) {
	var buf bytes.Buffer
	log, err := New("info", &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("request", zap.String(FieldRequestID, "r1"), zap.Duration(FieldDuration, 1500*time.Millisecond))
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("not one JSON line: %v: %s", err, buf.String())
	}
	if m["msg"] != "request" || m["level"] != "info" || m[FieldRequestID] != "r1" || m[FieldDuration] != 1.5 {
		t.Errorf("unexpected line %v", m)
	}
	ts, _ := m["ts"].(string)
	if _, err := time.Parse("2006-01-02T15:04:05.000Z0700", ts); err != nil {
		t.Errorf("ts %q is not ISO 8601: %v", ts, err)
	}
	if _, ok := m["caller"]; ok {
		t.Error("caller must not be annotated")
	}
}

// Decisions are never sampled: a burst of identical lines all arrive.
func TestNoSampling(t *testing.T) {
	var buf bytes.Buffer
	log, _ := New("info", &buf)
	for range 1000 {
		log.Info("decision", zap.String(FieldDecision, "rejected_duplicate"))
	}
	if n := strings.Count(buf.String(), "\n"); n != 1000 {
		t.Errorf("got %d lines of 1000", n)
	}
}

// Each line is one write, and lines logged at once from many goroutines
// arrive whole even on a writer that is not safe for concurrent use.
func TestOneWritePerLineConcurrent(t *testing.T) {
	var w countingBuffer
	log, err := New("info", &w)
	if err != nil {
		t.Fatal(err)
	}
	req := log.With(zap.String(FieldRequestID, "r1"))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				n := zap.Int("n", g*1000+i)
				req.Info("decision", n)
				log.Warn("request", n)
			}
		})
	}
	wg.Wait()
	if err := log.Sync(); err != nil {
		t.Fatal(err)
	}
	lines := 0
	for line := range strings.Lines(w.b.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("broken line %q", line)
		}
		lines++
	}
	if lines != 3200 || w.writes != 3200 {
		t.Errorf("%d lines in %d writes, want 3200 in 3200", lines, w.writes)
	}
}

// countingBuffer is a bytes.Buffer that counts writes; it has no lock of its
// own (the race detector would catch unserialised writes).
type countingBuffer struct {
	b      bytes.Buffer
	writes int
}

func (c *countingBuffer) Write(p []byte) (int, error) {
	c.writes++
	return c.b.Write(p)
}
