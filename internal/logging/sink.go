package logging

import (
	"bytes"
	"sync"
	"time"

	"go.uber.org/zap/zapcore"
)

// maxBuffered bounds the bytes that wait; past it, they are written at once.
const maxBuffered = 64 << 10

// sink serialises every line onto out. With a flush interval, INFO and DEBUG
// lines wait in buf until the interval has passed since the first of them,
// until maxBuffered bytes wait, until a WARN or ERROR line comes (written
// together with them, in order), or until Sync. Without one, every line is
// one write.
type sink struct {
	mu       sync.Mutex
	out      zapcore.WriteSyncer
	interval time.Duration
	buf      []byte
	timer    *time.Timer
	armed    bool
}

func newSink(out zapcore.WriteSyncer, interval time.Duration) *sink {
	s := &sink{out: out, interval: interval}
	if interval > 0 {
		s.timer = time.AfterFunc(time.Hour, s.flushTimer)
		s.timer.Stop()
	}
	return s
}

var (
	infoPrefix  = []byte(`{"level":"info"`)
	debugPrefix = []byte(`{"level":"debug"`)
)

// Write takes one encoded line; the level is its first member (see the
// encoder configuration in NewBuffered).
func (s *sink) Write(p []byte) (int, error) {
	wait := s.interval > 0 && (bytes.HasPrefix(p, infoPrefix) || bytes.HasPrefix(p, debugPrefix))
	s.mu.Lock()
	defer s.mu.Unlock()
	if wait && len(s.buf)+len(p) <= maxBuffered {
		s.buf = append(s.buf, p...)
		if !s.armed {
			s.armed = true
			s.timer.Reset(s.interval)
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
	if cap(s.buf) > maxBuffered {
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

// Sync writes what waits, then syncs the output.
func (s *sink) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.flushLocked()
	if serr := s.out.Sync(); err == nil {
		err = serr
	}
	return err
}
