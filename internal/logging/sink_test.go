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

// flush is the interval of the tests: long enough that lines logged one
// after the other wait together, short enough to wait out.
const flush = 50 * time.Millisecond

func TestBufferedLines(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		log      func(l *zap.Logger)
		wantN    int        // writes seen right after logging
		want     [][]string // messages of each write, once all is out
	}{
		{"info lines wait and leave together",
			flush, func(l *zap.Logger) { l.Info("a"); l.Debug("b"); l.Info("c") },
			0, [][]string{{"a", "b", "c"}}},
		{"a warning is written at once, after what waited",
			flush, func(l *zap.Logger) { l.Info("a"); l.Warn("b"); l.Info("c") },
			1, [][]string{{"a", "b"}, {"c"}}},
		{"an error alone is one write at once",
			flush, func(l *zap.Logger) { l.Error("e") },
			1, [][]string{{"e"}}},
		{"without an interval every line is one write",
			0, func(l *zap.Logger) { l.Info("a"); l.Info("b") },
			2, [][]string{{"a"}, {"b"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w writes
			l, err := NewBuffered("debug", &w, tc.interval)
			if err != nil {
				t.Fatal(err)
			}
			l = l.With(zap.String(FieldRequestID, "r1"))
			tc.log(l)
			if n := len(w.get()); n != tc.wantN {
				t.Fatalf("%d writes right away, want %d: %q", n, tc.wantN, w.get())
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(w.get()) < len(tc.want) && time.Now().Before(deadline) {
				time.Sleep(flush / 4)
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

// Past 64 KiB, what waits is written without waiting for the interval.
func TestBufferedCap(t *testing.T) {
	var w writes
	l, _ := NewBuffered("info", &w, time.Hour)
	pad := strings.Repeat("x", 1000)
	for range 100 { // about 110 KiB
		l.Info("line", zap.String("pad", pad))
	}
	got := w.get()
	if len(got) == 0 {
		t.Fatal("nothing written after 110 KiB of lines")
	}
	for _, chunk := range got {
		if len(chunk) > maxBuffered+2048 {
			t.Errorf("one write of %d bytes, over the cap", len(chunk))
		}
		msgs(t, chunk) // whole lines only
	}
	_ = l.Sync()
	n := 0
	for _, chunk := range w.get() {
		n += len(msgs(t, chunk))
	}
	if n != 100 {
		t.Errorf("%d lines written after Sync, want 100", n)
	}
}

func TestSyncWritesWaitingLines(t *testing.T) {
	var w writes
	l, _ := NewBuffered("info", &w, time.Hour)
	l.Info("request")
	if got := w.get(); len(got) != 0 {
		t.Fatalf("written before Sync: %q", got)
	}
	_ = l.Sync()
	if got := w.get(); len(got) != 1 || !strings.Contains(got[0], `"msg":"request"`) {
		t.Errorf("after Sync: %q", got)
	}
}

// Concurrent lines all arrive whole, and each goroutine's lines in order.
func TestBufferedConcurrent(t *testing.T) {
	var buf lockedBuffer
	l, _ := NewBuffered("info", &buf, time.Millisecond)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				if i%50 == 49 {
					l.Warn("w", zap.Int("g", g), zap.Int("i", i))
					continue
				}
				l.Info("i", zap.Int("g", g), zap.Int("i", i))
			}
		})
	}
	wg.Wait()
	_ = l.Sync()
	last := map[float64]float64{}
	n := 0
	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("broken line %q", line)
		}
		g, i := m["g"].(float64), m["i"].(float64)
		if prev, ok := last[g]; ok && i != prev+1 {
			t.Fatalf("goroutine %v: line %v after %v", g, i, prev)
		}
		last[g] = i
		n++
	}
	if n != 1600 {
		t.Errorf("%d lines, want 1600", n)
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
