package server

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/composio-guard/composio-guard/internal/metrics"
)

// seriesKey names one {route, method, code} request series.
type seriesKey struct {
	route, method string
	code          int
}

type series struct {
	requests prometheus.Counter
	duration prometheus.Observer
	overhead prometheus.Observer
}

// seriesCache keeps the handles of the request series already seen, so a
// request costs one map read instead of three label hashes and validations.
// Labels are closed sets, so the map stays small.
type seriesCache struct {
	m  *metrics.Metrics
	mu sync.RWMutex
	s  map[seriesKey]*series
}

func newSeriesCache(m *metrics.Metrics) *seriesCache {
	return &seriesCache{m: m, s: make(map[seriesKey]*series)}
}

func (c *seriesCache) get(route, method string, code int) *series {
	k := seriesKey{route, method, code}
	c.mu.RLock()
	s, ok := c.s[k]
	c.mu.RUnlock()
	if ok {
		return s
	}
	cl := codeLabel(code)
	s = &series{
		requests: c.m.HTTPRequests.WithLabelValues(route, method, cl),
		duration: c.m.HTTPDuration.WithLabelValues(route, method, cl),
		overhead: c.m.Overhead.WithLabelValues(route),
	}
	c.mu.Lock()
	c.s[k] = s
	c.mu.Unlock()
	return s
}
