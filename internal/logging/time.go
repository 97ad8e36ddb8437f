package logging

import (
	"sync"
	"time"

	"go.uber.org/zap/zapcore"
)

// iso8601Layout is zap's ISO8601TimeEncoder layout: what every line's ts has
// always looked like.
const iso8601Layout = "2006-01-02T15:04:05.000Z0700"

// tsBuffers recycles the bytes of one timestamp.
var tsBuffers = sync.Pool{New: func() any { return new([24]byte) }}

// iso8601 writes ts as iso8601Layout does. Every line has one, so UTC times
// of years 0 to 9999 (all of them, in practice) are formatted by hand in
// about half the time of the layout; anything else goes through the layout.
func iso8601(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
	if _, off := t.Zone(); off != 0 || t.Year() < 0 || t.Year() > 9999 {
		enc.AppendString(t.Format(iso8601Layout))
		return
	}
	// Pooled: the encoder copies the bytes, and a local array would escape.
	b := tsBuffers.Get().(*[24]byte)
	defer tsBuffers.Put(b)
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	ms := t.Nanosecond() / int(time.Millisecond)
	put := func(i, v, width int) {
		for j := i + width - 1; j >= i; j-- {
			b[j] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, year, 4)
	b[4] = '-'
	put(5, int(month), 2)
	b[7] = '-'
	put(8, day, 2)
	b[10] = 'T'
	put(11, hour, 2)
	b[13] = ':'
	put(14, minute, 2)
	b[16] = ':'
	put(17, sec, 2)
	b[19] = '.'
	put(20, ms, 3)
	b[23] = 'Z'
	enc.AppendByteString(b[:])
}
