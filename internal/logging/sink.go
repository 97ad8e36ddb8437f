package logging

import (
	"bytes"
	"sync"
	"time"

	"go.uber.org/zap/zapcore"
)

// MaxHold bounds how long a held line waits for company (see Held).
const MaxHold = 20 * time.Millisecond

// maxHeld bounds the bytes held; past it, lines are written at once.
const maxHeld = 64 << 10

// sink serialises every line onto out. Held lines wait in buf until the
// next line written directly, the timer, or Sync; lines keep their order.
type sink struct {
	mu    sync.Mutex
	out   zapcore.WriteSyncer
	buf   []byte
	timer *time.Timer
	armed bool
}

func newSink(out zapcore.WriteSyncer) *sink {
	s := &sink{out: out}
	s.timer = time.AfterFunc(time.Hour, s.flushTimer)
	s.timer.Stop()
	return s
}

func (s *sink) write(p []byte, hold bool) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if hold && len(s.buf)+len(p) <= maxHeld {
		s.buf = append(s.buf, p...)
		if !s.armed {
			s.armed = true
			s.timer.Reset(MaxHold)
		}
		return len(p), nil
	}
	if len(s.buf) == 0 {
		return s.out.Write(p)
	}
	s.buf = append(s.buf, p...)
	err := s.flushLocked()
	return len(p), err
}

func (s *sink) flushLocked() error {
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.out.Write(s.buf)
	if cap(s.buf) > maxHeld {
		s.buf = nil // a burst's big buffer is not kept
	} else {
		s.buf = s.buf[:0]
	}
	return err
}

func (s *sink) flushTimer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed = false
	_ = s.flushLocked()
}

func (s *sink) sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.flushLocked()
	if serr := s.out.Sync(); err == nil {
		err = serr
	}
	return err
}

// directWriter writes a line at once, with whatever was held before it.
type directWriter struct{ s *sink }

func (w directWriter) Write(p []byte) (int, error) { return w.s.write(p, false) }
func (w directWriter) Sync() error                 { return w.s.sync() }

// heldWriter holds INFO and DEBUG lines; the level is the first member of
// every line (see the encoder configuration in New).
type heldWriter struct{ s *sink }

var (
	infoPrefix  = []byte(`{"level":"info"`)
	debugPrefix = []byte(`{"level":"debug"`)
)

func (w heldWriter) Write(p []byte) (int, error) {
	return w.s.write(p, bytes.HasPrefix(p, infoPrefix) || bytes.HasPrefix(p, debugPrefix))
}
func (w heldWriter) Sync() error { return w.s.sync() }

// splitCore is New's core: it writes directly, and carries the held twin
// Held hands out, fields included.
type splitCore struct {
	zapcore.Core
	held zapcore.Core
}

func (c *splitCore) With(fields []zapcore.Field) zapcore.Core {
	return &splitCore{Core: c.Core.With(fields), held: c.held.With(fields)}
}
