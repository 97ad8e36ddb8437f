package composiotest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// Request is one request the fake received on a Composio route.
type Request struct {
	Method   string
	Path     string
	RawQuery string
	Route    string // a Route* constant
	Header   http.Header
	Body     []byte
	Time     time.Time
}

type requestJSON struct {
	Method   string      `json:"method"`
	Path     string      `json:"path"`
	RawQuery string      `json:"raw_query"`
	Route    string      `json:"route"`
	Header   http.Header `json:"header"`
	Body     string      `json:"body"`
	Time     time.Time   `json:"time"`
}

// MarshalJSON writes the body as text, readable by non-Go test code.
func (q Request) MarshalJSON() ([]byte, error) {
	return json.Marshal(requestJSON{q.Method, q.Path, q.RawQuery, q.Route, q.Header, string(q.Body), q.Time})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (q *Request) UnmarshalJSON(b []byte) error {
	var j requestJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	*q = Request{j.Method, j.Path, j.RawQuery, j.Route, j.Header, []byte(j.Body), j.Time}
	return nil
}

type countKey struct{ method, route string }

func (f *Fake) record(r *http.Request, route string, body []byte) {
	q := Request{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Route: route,
		Header: r.Header.Clone(), Body: slices.Clone(body), Time: f.now(),
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[countKey{r.Method, route}]++
	if f.logLimit > 0 && len(f.log) >= f.logLimit {
		// Drop the oldest; copy so the backing array does not grow forever.
		f.log = append(f.log[:0:0], f.log[len(f.log)-f.logLimit+1:]...)
	}
	f.log = append(f.log, q)
}

// Requests returns the logged requests, oldest first (at most the log limit).
func (f *Fake) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

// RequestsFor returns the logged requests of one route ("" for all) and
// method ("" for all).
func (f *Fake) RequestsFor(method, route string) []Request {
	var out []Request
	for _, q := range f.Requests() {
		if (method == "" || q.Method == method) && (route == "" || q.Route == route) {
			out = append(out, q)
		}
	}
	return out
}

// Count returns how many requests came for a method ("" for any) and a route
// ("" for any) since the last Reset, including those dropped from the log.
func (f *Fake) Count(method, route string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for k, c := range f.counts {
		if (method == "" || k.method == method) && (route == "" || k.route == route) {
			n += c
		}
	}
	return n
}

// Counts returns the request counts keyed "METHOD route".
func (f *Fake) Counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.counts))
	for k, v := range f.counts {
		out[k.method+" "+k.route] = v
	}
	return out
}

// Reset empties the request log and its counts.
func (f *Fake) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = nil
	f.counts = map[countKey]int{}
}

// ResetAll forgets everything: accounts, sessions, faults, the request log
// and the rate-limit windows.
func (f *Fake) ResetAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clearAccountsLocked()
	f.sessions = map[string]*session{}
	f.faults = map[string]*faultState{}
	f.log = nil
	f.counts = map[countKey]int{}
	f.windows = map[string]*rateWindow{}
}
