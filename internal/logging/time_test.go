package logging

import (
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
)

// stringEncoder keeps what the time encoder appended.
type stringEncoder struct {
	zapcore.PrimitiveArrayEncoder
	got string
}

func (e *stringEncoder) AppendString(s string)     { e.got = s }
func (e *stringEncoder) AppendByteString(b []byte) { e.got = string(b) }

// Every line's ts stays exactly what zap's ISO 8601 layout writes.
func TestISO8601(t *testing.T) {
	est := time.FixedZone("EST", -5*3600)
	ist := time.FixedZone("IST", 5*3600+1800)
	for _, ts := range []time.Time{
		time.Date(2026, 11, 23, 21, 4, 5, 123456789, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 1e6, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 6, 1, 12, 0, 0, 5e8, est),
		time.Date(2026, 6, 1, 12, 0, 0, 5e8, ist),
		time.Date(2026, 6, 1, 12, 0, 0, 0, time.FixedZone("zero", 0)),
		time.Now(),
		time.Now().Local(),
	} {
		var e stringEncoder
		iso8601(ts, &e)
		if want := ts.Format(iso8601Layout); e.got != want {
			t.Errorf("%v: got %q, want %q", ts, e.got, want)
		}
	}
}

// discardEncoder keeps nothing, so the benchmark times the encoders only.
type discardEncoder struct{ zapcore.PrimitiveArrayEncoder }

func (discardEncoder) AppendString(string)     {}
func (discardEncoder) AppendByteString([]byte) {}

func BenchmarkISO8601(b *testing.B) {
	ts := time.Now().UTC()
	for _, enc := range []struct {
		name string
		f    zapcore.TimeEncoder
	}{{"ours", iso8601}, {"zap", zapcore.ISO8601TimeEncoder}} {
		b.Run(enc.name, func(b *testing.B) {
			e := &discardEncoder{}
			b.ReportAllocs()
			for b.Loop() {
				enc.f(ts, e)
			}
		})
	}
}
